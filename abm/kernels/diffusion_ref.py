"""Plain NumPy / SciPy reference implementations of the field solvers (:mod:`abm.kernels.diffusion_implicit`,
:mod:`abm.kernels.diffusion_explicit`, :mod:`abm.kernels.source_sink`).

Written for clarity, not speed: each scheme is the textbook formula, so the
compiled kernels can be checked against it (and it against exact solutions).
The implicit reference uses :func:`scipy.linalg.solve_banded` (LAPACK banded
LU with partial pivoting), an algorithm independent of the kernel's
precomputed Thomas factorisation. Arrays are ``(F, ny, nx)`` or
``(F, nz, ny, nx)`` in pg/mL; ``h`` in um, ``dt`` in s.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import solve_banded


def _species(value, n):
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()


def backward_euler_banded(n: int, r: float, boundary: str) -> np.ndarray:
    """Banded storage ``(3, n)`` of ``I - r Delta`` along one axis (see ``solve_banded``)."""
    ab = np.zeros((3, n))
    ab[0, 1:] = -r
    ab[2, :-1] = -r
    ab[1, :] = 1.0 + 2.0 * r
    if boundary == "noflux":
        ab[1, 0] -= r
        ab[1, -1] -= r
    return ab


def implicit_step_ref(conc, h_um, dt_s, D_um2_s, decay_per_s, boundary="noflux",
                      boundary_values=None):
    """One LOD backward-Euler step with exact decay (returns a new array).

    ``C <- exp(-k dt) C``, then for each axis x, y (, z):
    ``(I - r Delta) C_new = C + r g e_boundary`` with ``r = D dt / h^2``.
    """
    conc = np.asarray(conc, dtype=np.float64)
    F = conc.shape[0]
    ndim = conc.ndim - 1
    D = _species(D_um2_s, F)
    k = _species(decay_per_s, F)
    g = np.zeros(F) if boundary_values is None else _species(boundary_values, F)
    out = conc * np.exp(-k * dt_s).reshape((F,) + (1,) * ndim)
    for f in range(F):
        r = D[f] * dt_s / h_um ** 2
        u = out[f]
        for axis in range(ndim - 1, -1, -1):  # x (last) first, then y, then z
            v = np.moveaxis(u, axis, 0)
            n = v.shape[0]
            rhs = v.reshape(n, -1).copy()
            if boundary == "fixed":
                rhs[0] += r * g[f]
                rhs[-1] += r * g[f]
            sol = solve_banded((1, 1), backward_euler_banded(n, r, boundary), rhs)
            u = np.moveaxis(sol.reshape(v.shape), 0, axis)
        out[f] = u
    return out


def explicit_n_sub(ndim, h_um, dt_s, D_um2_s, safety=0.9) -> int:
    """Sub-steps of the explicit scheme: ``ceil(dt / (safety h^2 / (2 ndim D_max)))``."""
    d_max = float(np.max(D_um2_s))
    if d_max <= 0 or dt_s <= 0:
        return 1
    return max(1, math.ceil(dt_s / (safety * h_um ** 2 / (2 * ndim * d_max))))


def explicit_step_ref(conc, h_um, dt_s, D_um2_s, decay_per_s, boundary="noflux",
                      boundary_values=None, safety=0.9):
    """``n_sub`` forward-Euler sub-steps with exact decay per sub-step (returns a new array).

    ``C' = exp(-k tau) [C + r (sum of 2 ndim neighbours - 2 ndim C)]``; the
    neighbours outside the domain come from edge padding (no flux) or
    constant padding with ``g`` (fixed).
    """
    u = np.array(conc, dtype=np.float64)
    F = u.shape[0]
    ndim = u.ndim - 1
    D = _species(D_um2_s, F)
    k = _species(decay_per_s, F)
    g = np.zeros(F) if boundary_values is None else _species(boundary_values, F)
    n_sub = explicit_n_sub(ndim, h_um, dt_s, D, safety)
    tau = dt_s / n_sub
    for _ in range(n_sub):
        new = np.empty_like(u)
        for f in range(F):
            if boundary == "fixed":
                p = np.pad(u[f], 1, mode="constant", constant_values=g[f])
            else:
                p = np.pad(u[f], 1, mode="edge")
            core = tuple(slice(1, -1) for _ in range(ndim))
            nb = np.zeros_like(u[f])
            for axis in range(ndim):
                lo = list(core)
                hi = list(core)
                lo[axis] = slice(0, -2)
                hi[axis] = slice(2, None)
                nb = nb + (p[tuple(lo)] + p[tuple(hi)])
            r = D[f] * tau / h_um ** 2
            new[f] = math.exp(-k[f] * tau) * (u[f] + r * (nb - 2 * ndim * u[f]))
        u = new
    return u


def source_sink_ref(conc, h_um, dt_s, source, uptake, perm, exchange_per_s, blood,
                    decay_per_s=None, method="exact"):
    """Solution of ``dC/dt = S - (k_up + k_ex p + k_dec) C + k_ex p C_b`` per voxel.

    ``method="exact"``: the exponential solution; ``"backward_euler"``:
    ``C1 = (C0 + R dt) / (1 + lam dt)`` with masses ``rate * dt * C1``.

    Returns ``(new_conc, mass)`` with ``mass`` ``(3, F)`` in pg: exchanged
    (tissue -> blood), taken up, decayed; computed as the time integrals
    ``int C dt = (C0 + R dt - C1) / lam`` weighted by each loss rate.
    """
    conc = np.asarray(conc, dtype=np.float64)
    F = conc.shape[0]
    c0 = conc.reshape(F, -1)
    S = np.asarray(source, dtype=np.float64).reshape(F, -1)
    K = np.asarray(uptake, dtype=np.float64).reshape(F, -1)
    p = np.asarray(perm, dtype=np.float64).reshape(1, -1)
    kex = _species(exchange_per_s, F)[:, None]
    cb = _species(blood, F)[:, None]
    kd = _species(0.0 if decay_per_s is None else decay_per_s, F)[:, None]
    kp = kex * p
    lam = K + kp + kd
    rin = S + kp * cb
    vol = h_um ** 3 * 1e-12
    if method == "backward_euler":
        c1 = (c0 + rin * dt_s) / (1.0 + lam * dt_s)
        mass = np.stack([(kp * dt_s * (c1 - cb)).sum(axis=1), (K * dt_s * c1).sum(axis=1),
                         (kd * dt_s * c1).sum(axis=1)]) * vol
        return c1.reshape(conc.shape), mass
    with np.errstate(divide="ignore", invalid="ignore"):
        em1 = np.expm1(-lam * dt_s)
        phi = np.where(lam > 0, -em1 / lam, dt_s)
        c1 = c0 * (1.0 + em1) + rin * phi
        loss = (c0 + rin * dt_s) - c1
        w = np.where(lam > 0, 1.0 / lam, 0.0)
    exch = (kp * w * loss - kp * cb * dt_s).sum(axis=1) * vol
    upt = (K * w * loss).sum(axis=1) * vol
    dec = (kd * w * loss).sum(axis=1) * vol
    return c1.reshape(conc.shape), np.stack([exch, upt, dec])


__all__ = ["implicit_step_ref", "explicit_step_ref", "explicit_n_sub", "source_sink_ref",
           "backward_euler_banded"]
