"""Cytokine field solvers: diffusion, decay, secretion, uptake, exchange with blood.

All ``F`` species live in ONE C-contiguous ``float64`` array of shape
``(F, ny, nx)`` (2D) or ``(F, nz, ny, nx)`` (3D), species-major, in pg/mL, on
a lattice of edge ``h`` (um). Every species ``f`` obeys, between agent steps,

.. math::

    \\partial_t C_f = D_f \\nabla^2 C_f - k_f C_f
                     + S_f(x) - k^{up}_f(x) C_f
                     + k^{ex}_f\\,p(x)\\,(C^{blood}_f - C_f)

with ``D`` in um^2/s, decay ``k`` in 1/s, secretion ``S`` in pg/mL/s, uptake
rate constant ``k_up`` in 1/s, exchange rate ``k_ex`` in 1/s at a vessel site
of permeability ``p = 1`` (``p = 0`` away from vessels).

One agent step ``dt`` is split (Lie splitting) into

1. :func:`make_source_sink_stepper`: the pointwise ODE ``S - k_up C +
   k_ex p (C_blood - C)``, solved exactly per voxel (never negative), which
   also returns the mass exchanged with blood and taken up, in pg.
2. :func:`make_implicit_stepper` (default) or :func:`make_explicit_stepper`:
   diffusion and first-order decay.

Factories precompute all coefficients and return a stepper object; calling it
runs one compiled kernel over all species at once. 2D arrays are handled as
3D arrays with ``nz = 1`` (a free view), so one kernel serves both.

Boundaries: ``"noflux"`` (zero normal gradient, mass conserving: a mirrored
ghost voxel) or ``"fixed"`` (Dirichlet: a per-species value ``g_f`` held in the
ghost voxels just outside every face, passed to each step call).

Each agent step (field phase), with steppers built once::

    ss = make_source_sink_stepper(shape, h_um, dt_s, exchange_per_s)
    diffuse = make_implicit_stepper(shape, h_um, dt_s, D_um2_s, decay_per_s)
    ...
    mass = ss(conc, source, uptake, perm, plasma, mass)  # (3, F) pg moved
    diffuse(conc)                    # diffuse(conc, plasma) for boundary="fixed"

Threads: with ``parallel=True`` the species are shared among the Numba
threads (one work item = one species with all its sweeps or sub-steps), so
F = 6-7 species balance well on 2 threads. With one thread
(``numba.set_num_threads(1)``) or ``parallel=False`` the serial kernel runs.
Results do not depend on the number of threads (no reduction crosses a
``prange`` boundary; the source-sink masses are summed per fixed block of
sites, then serially) and are bit-identical with ``NUMBA_DISABLE_JIT=1``.
A parallel region wakes the other threads; on a busy machine that can cost a
scheduler tick (4-8 ms measured on 2 loaded cores), so processes running side
by side (batches) should use one thread each.
"""

from __future__ import annotations

import decimal
import math

import numba
import numpy as np

from abm.kernels.jit import jit, pjit

BOUNDARIES = ("noflux", "fixed")
SOURCE_SINK_METHODS = ("exact", "backward_euler")

#: Rows of the mass array returned by the source-sink stepper (pg, per species).
MASS_EXCHANGED = 0  # net tissue -> blood (negative: blood -> tissue)
MASS_UPTAKE = 1     # taken up by cells
MASS_DECAYED = 2    # first-order decay, only when decay is given to the source-sink stepper

#: Sites per block of the source-sink kernel; masses are summed per block then serially.
SITE_BLOCK = 4096

# --------------------------------------------------------------------------- #
# coefficients (plain NumPy, run once per factory call)
# --------------------------------------------------------------------------- #

def _as_species_vector(value, n_species: int, name: str) -> np.ndarray:
    arr = np.array(value, dtype=np.float64, ndmin=1)
    if arr.size == 1 and n_species > 1:
        arr = np.full(n_species, arr[0])
    if arr.shape != (n_species,):
        raise ValueError(f"{name} must have one value per species ({n_species}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {arr}")
    return arr


def _check_geometry(shape, h_um: float, dt_s: float, boundary: str):
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"shape must be (F, ny, nx) or (F, nz, ny, nx), got {shape}")
    if min(shape) < 1:
        raise ValueError(f"every dimension of shape must be >= 1, got {shape}")
    if not (h_um > 0 and math.isfinite(h_um)):
        raise ValueError(f"h_um must be > 0, got {h_um}")
    if not (dt_s >= 0 and math.isfinite(dt_s)):
        raise ValueError(f"dt_s must be >= 0, got {dt_s}")
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    return shape


def thomas_coefficients(n: int, r: float, scale: float, boundary: str):
    """Factorise the backward-Euler matrix of one axis for the Thomas algorithm.

    The matrix ``A = I - r Delta`` (``r = D dt / h^2``) has ``-r`` off the
    diagonal and ``1 + 2r`` on it, except that a no-flux end has ``1 + r``
    (mirrored ghost). The forward elimination of ``A x = scale * d + b`` is
    written as ``d'_0 = P_0 d_0``, ``d'_i = P_i d_i + Q_i d'_{i-1}`` and the
    back substitution as ``x_i = d'_i + Q_i x_{i+1}`` with

    ``inv_i = 1 / (b_i - r^2 inv_{i-1})``, ``P_i = scale * inv_i``,
    ``Q_i = r * inv_i``.

    Boundary data ``b = r g`` enter at ``i = 0`` and ``i = n-1`` as
    ``G_0 g`` and ``G_1 g`` added to ``d'_0`` and ``d'_{n-1}``.

    Args:
        n: number of voxels along the axis.
        r: ``D dt / h^2`` (dimensionless, >= 0).
        scale: factor applied to the right-hand side (decay ``exp(-k dt)``).
        boundary: "noflux" or "fixed".

    Returns:
        ``(P, Q, G)`` with ``P, Q`` of length ``n`` and ``G = (G_0, G_1)``.
    """
    # Exact-ish arithmetic (40 significant digits) then one rounding per
    # coefficient: float64 recurrences would leave errors of several ulp that
    # act the same way every step and make the mass drift (~1e-11 per 1000
    # steps at r ~ 100); correctly rounded coefficients keep it at rounding level.
    with decimal.localcontext() as ctx:
        ctx.prec = 40
        rd = decimal.Decimal(float(r))
        one = decimal.Decimal(1)
        diag = [one + 2 * rd] * n
        if boundary == "noflux":
            diag[0] -= rd
            diag[n - 1] -= rd
        inv = []
        prev = decimal.Decimal(0)
        for i in range(n):
            prev = one / (diag[i] - rd * rd * prev)
            inv.append(prev)
        sd = decimal.Decimal(float(scale))
        P = np.array([float(sd * v) for v in inv])
        Q = np.array([float(rd * v) for v in inv])
        if boundary == "fixed":
            G = np.array([float(rd * inv[0]), float(rd * inv[n - 1])])
        else:
            G = np.zeros(2)
    return P, Q, G


def _lod_coefficients(shape4, h_um, dt_s, D, k, boundary):
    F, nz, ny, nx = shape4
    scale = np.exp(-k * dt_s)
    r = D * dt_s / (h_um * h_um)
    out = []
    for axis_n, first in ((nx, True), (ny, False), (nz, False)):
        P = np.empty((F, axis_n))
        Q = np.empty((F, axis_n))
        G = np.empty((F, 2))
        for f in range(F):
            P[f], Q[f], G[f] = thomas_coefficients(axis_n, r[f], scale[f] if first else 1.0, boundary)
        out.append((P, Q, G))
    return out


def _n_threads() -> int:
    return 1 if numba.config.DISABLE_JIT else numba.get_num_threads()


# --------------------------------------------------------------------------- #
# compiled kernels: implicit LOD
# --------------------------------------------------------------------------- #

@jit
def _x_block8(src, dst, r0, P, Q, g0, g1):
    """Thomas solve of 8 consecutive rows of ``src[r0:r0+8, :]`` into ``dst`` (x direction).

    Eight independent recurrences are interleaved so the CPU overlaps their
    latencies; the rows are read and written in place (``src`` may be ``dst``).
    """
    nx = src.shape[1]
    p = P[0]
    a0 = p * src[r0, 0] + g0
    a1 = p * src[r0 + 1, 0] + g0
    a2 = p * src[r0 + 2, 0] + g0
    a3 = p * src[r0 + 3, 0] + g0
    a4 = p * src[r0 + 4, 0] + g0
    a5 = p * src[r0 + 5, 0] + g0
    a6 = p * src[r0 + 6, 0] + g0
    a7 = p * src[r0 + 7, 0] + g0
    for i in range(1, nx):
        dst[r0, i - 1] = a0
        dst[r0 + 1, i - 1] = a1
        dst[r0 + 2, i - 1] = a2
        dst[r0 + 3, i - 1] = a3
        dst[r0 + 4, i - 1] = a4
        dst[r0 + 5, i - 1] = a5
        dst[r0 + 6, i - 1] = a6
        dst[r0 + 7, i - 1] = a7
        p = P[i]
        q = Q[i]
        a0 = p * src[r0, i] + q * a0
        a1 = p * src[r0 + 1, i] + q * a1
        a2 = p * src[r0 + 2, i] + q * a2
        a3 = p * src[r0 + 3, i] + q * a3
        a4 = p * src[r0 + 4, i] + q * a4
        a5 = p * src[r0 + 5, i] + q * a5
        a6 = p * src[r0 + 6, i] + q * a6
        a7 = p * src[r0 + 7, i] + q * a7
    a0 += g1
    a1 += g1
    a2 += g1
    a3 += g1
    a4 += g1
    a5 += g1
    a6 += g1
    a7 += g1
    j = nx - 1
    dst[r0, j] = a0
    dst[r0 + 1, j] = a1
    dst[r0 + 2, j] = a2
    dst[r0 + 3, j] = a3
    dst[r0 + 4, j] = a4
    dst[r0 + 5, j] = a5
    dst[r0 + 6, j] = a6
    dst[r0 + 7, j] = a7
    for i in range(nx - 2, -1, -1):
        q = Q[i]
        a0 = dst[r0, i] + q * a0
        a1 = dst[r0 + 1, i] + q * a1
        a2 = dst[r0 + 2, i] + q * a2
        a3 = dst[r0 + 3, i] + q * a3
        a4 = dst[r0 + 4, i] + q * a4
        a5 = dst[r0 + 5, i] + q * a5
        a6 = dst[r0 + 6, i] + q * a6
        a7 = dst[r0 + 7, i] + q * a7
        dst[r0, i] = a0
        dst[r0 + 1, i] = a1
        dst[r0 + 2, i] = a2
        dst[r0 + 3, i] = a3
        dst[r0 + 4, i] = a4
        dst[r0 + 5, i] = a5
        dst[r0 + 6, i] = a6
        dst[r0 + 7, i] = a7


@jit
def _x_row(src, dst, r, P, Q, g0, g1):
    """Thomas solve of one row (x direction); same arithmetic as :func:`_x_block8`."""
    nx = src.shape[1]
    a = P[0] * src[r, 0] + g0
    for i in range(1, nx):
        dst[r, i - 1] = a
        a = P[i] * src[r, i] + Q[i] * a
    a += g1
    dst[r, nx - 1] = a
    for i in range(nx - 2, -1, -1):
        a = dst[r, i] + Q[i] * a
        dst[r, i] = a


@jit
def _x_sweep(src, dst, P, Q, g0, g1):
    """x solve of every row of ``src`` (``(rows, nx)``) into ``dst``: blocks of 8 rows, then the rest."""
    nrows = src.shape[0]
    nfull = nrows - nrows % 8
    for r0 in range(0, nfull, 8):
        _x_block8(src, dst, r0, P, Q, g0, g1)
    for r in range(nfull, nrows):
        _x_row(src, dst, r, P, Q, g0, g1)


@jit
def _row_sweep(u, P, Q, g0, g1):
    """Solve along axis 0 of ``u`` (``(n, m)``) in place, each row updated as one vector.

    The recurrence runs down the rows while the arithmetic is vectorised
    across the ``m`` columns (contiguous), so no strided column is walked.
    """
    n = u.shape[0]
    a = u[0]
    p = P[0]
    for j in range(a.size):
        a[j] = p * a[j] + g0
    for i in range(1, n):
        a = u[i]
        b = u[i - 1]
        p = P[i]
        q = Q[i]
        for j in range(a.size):
            a[j] = p * a[j] + q * b[j]
    a = u[n - 1]
    for j in range(a.size):
        a[j] = a[j] + g1
    for i in range(n - 2, -1, -1):
        a = u[i]
        b = u[i + 1]
        q = Q[i]
        for j in range(a.size):
            a[j] = a[j] + q * b[j]


@jit
def _lod_species(src, dst, f, Px, Qx, Gx, Py, Qy, Gy, Pz, Qz, Gz, gval, fixed, three_d):
    """All sweeps of species ``f``: x (rows, with the decay factor), y (per plane), z."""
    F, nz, ny, nx = src.shape
    g = gval[f] if fixed else 0.0
    _x_sweep(src[f].reshape(nz * ny, nx), dst[f].reshape(nz * ny, nx), Px[f], Qx[f],
             Gx[f, 0] * g, Gx[f, 1] * g)
    for z in range(nz):
        _row_sweep(dst[f, z], Py[f], Qy[f], Gy[f, 0] * g, Gy[f, 1] * g)
    if three_d:
        _row_sweep(dst[f].reshape(nz, ny * nx), Pz[f], Qz[f], Gz[f, 0] * g, Gz[f, 1] * g)


@jit
def _lod_ser(src, dst, Px, Qx, Gx, Py, Qy, Gy, Pz, Qz, Gz, gval, fixed, three_d):
    for f in range(src.shape[0]):
        _lod_species(src, dst, f, Px, Qx, Gx, Py, Qy, Gy, Pz, Qz, Gz, gval, fixed, three_d)


@pjit
def _lod_par(src, dst, Px, Qx, Gx, Py, Qy, Gy, Pz, Qz, Gz, gval, fixed, three_d):
    for f in numba.prange(src.shape[0]):
        _lod_species(src, dst, f, Px, Qx, Gx, Py, Qy, Gy, Pz, Qz, Gz, gval, fixed, three_d)


# --------------------------------------------------------------------------- #
# compiled kernels: explicit stencil
# --------------------------------------------------------------------------- #

@jit
def _expl_point(cp, dp, upp, op, y, j, ny, nx, a, b, g, fixed, three_d):
    """One voxel ``(y, j)`` of a plane with the full boundary logic (edges only).

    ``cp``/``op`` are the flat source/destination planes, ``dp``/``upp`` the
    planes below/above (the plane itself for a no-flux z face, a plane of
    ``g`` for a fixed one).
    """
    i = y * nx + j
    cc = cp[i]
    out = g if fixed else cc
    wl = cp[i - 1] if j > 0 else out
    er = cp[i + 1] if j < nx - 1 else out
    vn = cp[i - nx] if y > 0 else out
    vs = cp[i + nx] if y < ny - 1 else out
    if three_d:
        op[i] = a * cc + b * (((wl + er) + (vn + vs)) + (dp[i] + upp[i]))
    else:
        op[i] = a * cc + b * ((wl + er) + (vn + vs))


@jit
def _expl_plane(s3, d3, gz, f, z, nz, ny, nx, a, b, g, fixed, three_d):
    """Plane ``z`` of species ``f``: one forward-Euler sub-step ``s3 -> d3``.

    ``d = a C + b ((C_w + C_e) + (C_n + C_s) [+ (C_d + C_u)])`` where a
    neighbour outside the domain is the voxel itself (no flux) or ``g``
    (fixed). ``s3``/``d3`` are ``(F*nz, ny*nx)`` views. The rows that are
    not on a y face are done as ONE vectorised loop over the flattened
    plane, every neighbour being a shifted view (no per-row overhead, which
    matters for short 3D rows); the x-edge voxels (which that loop gets
    wrong by wrapping to the next row) and the two y-face rows are then
    redone by :func:`_expl_point`.
    """
    fz = f * nz + z
    cp = s3[fz]
    op = d3[fz]
    dp = cp
    upp = cp
    if three_d:
        if z > 0:
            dp = s3[fz - 1]
        elif fixed:
            dp = gz[f]
        if z < nz - 1:
            upp = s3[fz + 1]
        elif fixed:
            upp = gz[f]
    ya = 1
    yb = ny - 1
    if yb > ya:
        lo = ya * nx
        hi = yb * nx
        c = cp[lo:hi]
        w = cp[lo - 1:hi - 1]
        e = cp[lo + 1:hi + 1]
        nn = cp[lo - nx:hi - nx]
        ss = cp[lo + nx:hi + nx]
        o = op[lo:hi]
        if three_d:
            dd = dp[lo:hi]
            uu = upp[lo:hi]
            for i in range(hi - lo):
                o[i] = a * c[i] + b * (((w[i] + e[i]) + (nn[i] + ss[i])) + (dd[i] + uu[i]))
        else:
            for i in range(hi - lo):
                o[i] = a * c[i] + b * ((w[i] + e[i]) + (nn[i] + ss[i]))
        for y in range(ya, yb):
            _expl_point(cp, dp, upp, op, y, 0, ny, nx, a, b, g, fixed, three_d)
            if nx > 1:
                _expl_point(cp, dp, upp, op, y, nx - 1, ny, nx, a, b, g, fixed, three_d)
    for j in range(nx):
        _expl_point(cp, dp, upp, op, 0, j, ny, nx, a, b, g, fixed, three_d)
    if ny > 1:
        for j in range(nx):
            _expl_point(cp, dp, upp, op, ny - 1, j, ny, nx, a, b, g, fixed, three_d)


@jit
def _expl_copy(dst, src):
    for i in range(dst.size):
        dst[i] = src[i]


@jit
def _expl_species(u, tmp, gz, f, A, B, gval, fixed, three_d, n_sub):
    """All ``n_sub`` sub-steps of species ``f`` (serial), result in ``u``."""
    F, nz, ny, nx = u.shape
    s3 = u.reshape(F * nz, ny * nx)
    t3 = tmp.reshape(F * nz, ny * nx)
    for k in range(n_sub):
        for z in range(nz):
            if k % 2 == 0:
                _expl_plane(s3, t3, gz, f, z, nz, ny, nx, A[f], B[f], gval[f], fixed, three_d)
            else:
                _expl_plane(t3, s3, gz, f, z, nz, ny, nx, A[f], B[f], gval[f], fixed, three_d)
    if n_sub % 2 == 1:
        _expl_copy(u[f].reshape(-1), tmp[f].reshape(-1))


@jit
def _expl_ser(u, tmp, gz, A, B, gval, fixed, three_d, n_sub):
    for f in range(u.shape[0]):
        _expl_species(u, tmp, gz, f, A, B, gval, fixed, three_d, n_sub)


@pjit
def _expl_par(u, tmp, gz, A, B, gval, fixed, three_d, n_sub):
    for f in numba.prange(u.shape[0]):
        _expl_species(u, tmp, gz, f, A, B, gval, fixed, three_d, n_sub)


# --------------------------------------------------------------------------- #
# compiled kernels: sources and sinks
# --------------------------------------------------------------------------- #

@jit
def _ss_block(c2, S2, K2, perm, kex, blood, kdec, edec, phidec, dt, exact, blk, partial):
    """Pointwise update of the sites of block ``blk``, all species; masses into ``partial``.

    Per voxel and species, with ``lam = k_up + k_ex p + k_dec`` and
    ``R = S + k_ex p C_b``:

    * exact: ``C1 = C0 exp(-lam dt) + R (1 - exp(-lam dt)) / lam``; the mass
      removed by the first-order terms, ``L = C0 + R dt - C1``, is shared as
      uptake ``k_up/lam L``, decay ``k_dec/lam L`` and exchange
      ``k_ex p / lam L - k_ex p C_b dt`` (net tissue -> blood);
    * backward Euler: ``C1 = (C0 + R dt) / (1 + lam dt)``; uptake
      ``k_up dt C1``, decay ``k_dec dt C1``, exchange ``k_ex p dt (C1 - C_b)``.

    Either way ``C1 - C0 = S dt - uptake - decay - exchange`` per voxel.
    """
    F = c2.shape[0]
    n = c2.shape[1]
    lo = blk * SITE_BLOCK
    hi = min(lo + SITE_BLOCK, n)
    for f in range(F):
        c = c2[f]
        S = S2[f]
        K = K2[f]
        kx = kex[f]
        cb = blood[f]
        kd = kdec[f]
        ed = edec[f]
        pd = phidec[f]
        exch = 0.0
        upt = 0.0
        dec = 0.0
        if exact:
            for i in range(lo, hi):
                c0 = c[i]
                ku = K[i]
                kp = kx * perm[i]
                if ku == 0.0 and kp == 0.0:
                    if kd == 0.0:
                        c[i] = c0 + S[i] * dt
                    else:
                        tot = c0 + S[i] * dt
                        c1 = c0 * ed + S[i] * pd
                        c[i] = c1
                        dec += tot - c1
                else:
                    lam = ku + kp + kd
                    rin = S[i] + kp * cb
                    em1 = math.expm1(-lam * dt)  # exp(-lam dt) - 1, accurate for small lam dt
                    c1 = c0 * (1.0 + em1) + rin * (-em1 / lam)
                    c[i] = c1
                    loss = (c0 + rin * dt) - c1
                    upt += ku / lam * loss
                    dec += kd / lam * loss
                    exch += kp / lam * loss - kp * cb * dt
        else:
            for i in range(lo, hi):
                ku = K[i]
                kp = kx * perm[i]
                c1 = (c[i] + (S[i] + kp * cb) * dt) / (1.0 + (ku + kp + kd) * dt)
                c[i] = c1
                upt += ku * dt * c1
                dec += kd * dt * c1
                exch += kp * dt * (c1 - cb)
        partial[0, f, blk] = exch
        partial[1, f, blk] = upt
        partial[2, f, blk] = dec


@jit
def _ss_sum(partial, vol_ml, mass):
    for q in range(partial.shape[0]):
        for f in range(partial.shape[1]):
            tot = 0.0
            for b in range(partial.shape[2]):
                tot += partial[q, f, b]
            mass[q, f] = tot * vol_ml


@pjit
def _ss_par(c2, S2, K2, perm, kex, blood, kdec, edec, phidec, dt, exact, vol_ml, partial, mass):
    for blk in numba.prange(partial.shape[2]):
        _ss_block(c2, S2, K2, perm, kex, blood, kdec, edec, phidec, dt, exact, blk, partial)
    _ss_sum(partial, vol_ml, mass)


@jit
def _ss_ser(c2, S2, K2, perm, kex, blood, kdec, edec, phidec, dt, exact, vol_ml, partial, mass):
    for blk in range(partial.shape[2]):
        _ss_block(c2, S2, K2, perm, kex, blood, kdec, edec, phidec, dt, exact, blk, partial)
    _ss_sum(partial, vol_ml, mass)


@jit
def _ss_sparse_block(c2, S2, K2, perm, kex, blood, kdec, edec, phidec, dt, clear, blk, partial):
    """Block ``blk`` of the ``decay_after`` mode: visit only sites with a source, uptake or exchange.

    At such a site the update is that of :func:`_ss_block` (exact), divided
    by ``edec = exp(-k_dec dt)``: the diffusion step that follows multiplies
    every voxel by that factor, so the pair gives the same ``C1`` (to
    rounding) while the other sites, where only decay acts, are not touched
    here at all. Uptake and exchange are summed in site order as in
    :func:`_ss_block` (with ``1 / lam`` computed once, so they agree to
    rounding rather than bit for bit). The decayed-mass partial holds the visited
    sites' decay minus ``(1 - edec) C0`` of the visited sites: the caller adds
    ``(1 - edec) sum(C0)`` over all sites (a vectorised NumPy sum), which
    leaves the decay of the sites not visited. With ``clear`` the visited
    sources and uptakes are reset to 0, which leaves both arrays all zero.
    """
    F = c2.shape[0]
    n = c2.shape[1]
    lo = blk * SITE_BLOCK
    hi = min(lo + SITE_BLOCK, n)
    nb = hi - lo
    # OR of the bit patterns: nonzero where any species has S != 0 or K != 0, or perm != 0
    # (integer ORs vectorise; -0.0 counts as nonzero, which only costs a visit)
    bits = perm[lo:hi].view(np.uint64).copy()
    for f in range(F):
        Sb = S2[f, lo:hi].view(np.uint64)
        Kb = K2[f, lo:hi].view(np.uint64)
        for i in range(nb):
            bits[i] |= Sb[i] | Kb[i]
    idx = np.empty(nb, dtype=np.int64)
    m = 0
    for i in range(nb):
        idx[m] = lo + i
        m += bits[i] != 0
    for f in range(F):
        c = c2[f]
        S = S2[f]
        K = K2[f]
        kx = kex[f]
        cb = blood[f]
        kd = kdec[f]
        ed = edec[f]
        inv_ed = 1.0 / ed
        pd = phidec[f]
        visited = 0.0
        exch = 0.0
        upt = 0.0
        dec = 0.0
        for j in range(m):
            i = idx[j]
            ku = K[i]
            kp = kx * perm[i]
            si = S[i]
            if ku == 0.0 and kp == 0.0:
                if si == 0.0:
                    continue   # only decay acts here: left to the diffusion step
                c0 = c[i]
                visited += c0
                tot = c0 + si * dt
                c1 = c0 * ed + si * pd
                dec += tot - c1
            else:
                c0 = c[i]
                visited += c0
                lam = ku + kp + kd
                inv = 1.0 / lam   # one division instead of four (divisions dominate here)
                rin = si + kp * cb
                em1 = math.expm1(-lam * dt)
                c1 = c0 * (1.0 + em1) - rin * em1 * inv
                loss = (c0 + rin * dt) - c1
                upt += ku * inv * loss
                dec += kd * inv * loss
                exch += kp * inv * loss - kp * cb * dt
            c[i] = c1 * inv_ed
        partial[0, f, blk] = exch
        partial[1, f, blk] = upt
        partial[2, f, blk] = dec - (1.0 - ed) * visited   # the caller adds (1 - ed) sum(C0)
        if clear:
            for j in range(m):
                i = idx[j]
                S[i] = 0.0
                K[i] = 0.0


@pjit
def _ss_sparse_par(c2, S2, K2, perm, kex, blood, kdec, edec, phidec, dt, clear, vol_ml, partial,
                   mass):
    for blk in numba.prange(partial.shape[2]):
        _ss_sparse_block(c2, S2, K2, perm, kex, blood, kdec, edec, phidec, dt, clear, blk, partial)
    _ss_sum(partial, vol_ml, mass)


@jit
def _ss_sparse_ser(c2, S2, K2, perm, kex, blood, kdec, edec, phidec, dt, clear, vol_ml, partial,
                   mass):
    for blk in range(partial.shape[2]):
        _ss_sparse_block(c2, S2, K2, perm, kex, blood, kdec, edec, phidec, dt, clear, blk, partial)
    _ss_sum(partial, vol_ml, mass)


# --------------------------------------------------------------------------- #
# steppers (thin Python objects around the compiled kernels)
# --------------------------------------------------------------------------- #

def _check_field(arr, shape, name="conc"):
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float64:
        raise ValueError(f"{name} must be a float64 ndarray")
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, stepper was built for {shape}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")


class _FieldStepper:
    """Shared geometry, validation and boundary-value handling.

    Attributes:
        shape: the field shape ``(F, ny, nx)`` or ``(F, nz, ny, nx)``.
        ndim: 2 or 3. n_species: ``F``.
        h_um, dt_s: lattice edge (um) and step (s).
        D_um2_s, decay_per_s: ``(F,)`` arrays.
        boundary: "noflux" or "fixed". parallel: whether threads may be used.
    """

    def __init__(self, shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel):
        self.shape = _check_geometry(shape, h_um, dt_s, boundary)
        self.ndim = len(self.shape) - 1
        self.n_species = self.shape[0]
        self.shape4 = self.shape if self.ndim == 3 else (self.shape[0], 1) + self.shape[1:]
        self.h_um = float(h_um)
        self.dt_s = float(dt_s)
        self.D_um2_s = _as_species_vector(D_um2_s, self.n_species, "D_um2_s")
        self.decay_per_s = _as_species_vector(decay_per_s, self.n_species, "decay_per_s")
        self.boundary = boundary
        self.fixed = boundary == "fixed"
        self.parallel = bool(parallel)
        self._zeros = np.zeros(self.n_species)

    def _use_threads(self) -> bool:
        """Threads pay off only with >= 2 species (the unit of parallel work) and >= 2 threads."""
        return self.parallel and self.n_species > 1 and _n_threads() > 1

    def _bvals(self, boundary_values):
        if boundary_values is None:
            if self.fixed:
                raise ValueError('boundary="fixed" needs boundary_values (one per species, pg/mL)')
            return self._zeros
        g = np.ascontiguousarray(boundary_values, dtype=np.float64).reshape(-1)
        if g.shape != (self.n_species,):
            raise ValueError(f"boundary_values must have {self.n_species} values, got {g.shape}")
        return g

    def _target(self, conc, out):
        _check_field(conc, self.shape)
        if out is None:
            return conc
        _check_field(out, self.shape, "out")
        return out


class ImplicitStepper(_FieldStepper):
    """LOD backward-Euler diffusion with exact decay; see :func:`make_implicit_stepper`.

    Attributes (besides those of the base): ``Px, Qx, Gx`` (and ``y``, ``z``)
    the precomputed Thomas coefficients per species (:func:`thomas_coefficients`);
    ``Px`` carries the decay factor. Holds no scratch: safe to call from
    several threads on different arrays.
    """

    def __init__(self, shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel):
        super().__init__(shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel)
        (self.Px, self.Qx, self.Gx), (self.Py, self.Qy, self.Gy), (self.Pz, self.Qz, self.Gz) = (
            _lod_coefficients(self.shape4, self.h_um, self.dt_s, self.D_um2_s, self.decay_per_s, boundary))

    def __call__(self, conc, boundary_values=None, out=None):
        """Advance ``conc`` by one step ``dt`` (in place, or into ``out``).

        Args:
            conc: field array ``(F, ny, nx)`` or ``(F, nz, ny, nx)``, pg/mL,
                float64, C-contiguous.
            boundary_values: ``(F,)`` pg/mL held outside the domain (only
                ``boundary="fixed"``; ignored otherwise).
            out: optional array like ``conc`` for the result; ``conc`` is then
                left unchanged.

        Returns:
            The array holding the result (``out`` or ``conc``).
        """
        dst = self._target(conc, out)
        g = self._bvals(boundary_values) if self.fixed else self._zeros
        kernel = _lod_par if self._use_threads() else _lod_ser
        kernel(conc.reshape(self.shape4), dst.reshape(self.shape4),
               self.Px, self.Qx, self.Gx, self.Py, self.Qy, self.Gy,
               self.Pz, self.Qz, self.Gz, g, self.fixed, self.ndim == 3)
        return dst


class ExplicitStepper(_FieldStepper):
    """Forward-Euler stencil with sub-stepping; see :func:`make_explicit_stepper`.

    Attributes (besides those of the base): ``n_sub`` sub-steps per call of
    ``dt_sub_s`` each, ``dt_stable_s = h^2 / (2 ndim D_max)``, ``safety``,
    weights ``A = e^{-k tau}(1 - 2 ndim r)`` and ``B = e^{-k tau} r`` per
    species. Owns a scratch array of the field's size: one call at a time.
    """

    def __init__(self, shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel, safety):
        super().__init__(shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel)
        if not 0 < safety <= 1:
            raise ValueError(f"safety must be in (0, 1], got {safety}")
        self.safety = float(safety)
        d_max = float(self.D_um2_s.max())
        if d_max > 0 and self.dt_s > 0:
            self.dt_stable_s = self.h_um ** 2 / (2 * self.ndim * d_max)
            self.n_sub = max(1, math.ceil(self.dt_s / (self.safety * self.dt_stable_s)))
        else:
            self.dt_stable_s = math.inf
            self.n_sub = 1
        self.dt_sub_s = self.dt_s / self.n_sub
        r = self.D_um2_s * self.dt_sub_s / self.h_um ** 2
        s = np.exp(-self.decay_per_s * self.dt_sub_s)
        self.A = s * (1.0 - 2 * self.ndim * r)
        self.B = s * r
        self._tmp = np.empty(self.shape4)
        F, nz, ny, nx = self.shape4
        # planes of g_f: the z-neighbour outside a fixed z face (3D only)
        self._gz = np.zeros((F, ny * nx if (self.fixed and self.ndim == 3) else 1))
        F, nz, ny, nx = self.shape4

    def __call__(self, conc, boundary_values=None, out=None):
        """Advance ``conc`` by ``dt`` in ``n_sub`` sub-steps (in place, or into ``out``).

        Args:
            conc: field array ``(F, ny, nx)`` or ``(F, nz, ny, nx)``, pg/mL.
            boundary_values: ``(F,)`` pg/mL held outside (``"fixed"`` only).
            out: optional array like ``conc`` for the result.

        Returns:
            The array holding the result.
        """
        dst = self._target(conc, out)
        if dst is not conc:
            np.copyto(dst, conc)
        g = self._bvals(boundary_values) if self.fixed else self._zeros
        if self.fixed and self.ndim == 3:
            self._gz[:] = g[:, None]
        args = (dst.reshape(self.shape4), self._tmp, self._gz, self.A, self.B, g, self.fixed,
                self.ndim == 3, self.n_sub)
        kernel = _expl_par if self._use_threads() else _expl_ser
        kernel(*args)
        return dst


class SourceSinkStepper:
    """Pointwise secretion / uptake / blood exchange; see :func:`make_source_sink_stepper`.

    Attributes: ``shape``, ``n_species``, ``n_sites``, ``h_um``, ``dt_s``,
    ``voxel_volume_ml`` (``h^3 1e-12``), ``exchange_per_s``, ``decay_per_s``
    (zeros unless given), ``method``, ``parallel``, ``decay_after``. Owns the
    per-block partial sums: one call at a time.
    """

    def __init__(self, shape, h_um, dt_s, exchange_per_s, decay_per_s, parallel, method,
                 decay_after=False):
        if method not in SOURCE_SINK_METHODS:
            raise ValueError(f"method must be one of {SOURCE_SINK_METHODS}, got {method!r}")
        if decay_after and method != "exact":
            raise ValueError("decay_after=True needs method='exact'")
        self.method = method
        self.decay_after = bool(decay_after)
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f"shape must be (F, ny, nx) or (F, nz, ny, nx), got {shape}")
        if not (h_um > 0 and dt_s >= 0 and math.isfinite(dt_s)):
            raise ValueError(f"need h_um > 0 and dt_s >= 0, got {h_um}, {dt_s}")
        self.shape = shape
        self.n_species = shape[0]
        self.n_sites = int(np.prod(shape[1:]))
        self.h_um = float(h_um)
        self.dt_s = float(dt_s)
        self.voxel_volume_ml = self.h_um ** 3 * 1e-12
        self.exchange_per_s = _as_species_vector(exchange_per_s, self.n_species, "exchange_per_s")
        dec = 0.0 if decay_per_s is None else decay_per_s
        self.decay_per_s = _as_species_vector(dec, self.n_species, "decay_per_s")
        x = self.decay_per_s * self.dt_s
        self._edec = np.exp(-x)
        with np.errstate(divide="ignore", invalid="ignore"):
            self._phidec = np.where(self.decay_per_s > 0, -np.expm1(-x) / self.decay_per_s, self.dt_s)
        self.parallel = bool(parallel)
        nblk = -(-self.n_sites // SITE_BLOCK)
        self._partial = np.zeros((3, self.n_species, nblk))

    def _site_array(self, arr, name, per_species):
        want = (self.n_species, self.n_sites) if per_species else (self.n_sites,)
        if (type(arr) is np.ndarray and arr.shape == want and arr.dtype == np.float64
                and arr.flags.c_contiguous):
            return arr   # the common case, checked cheaply
        a = np.asarray(arr)
        if a.dtype != np.float64 or a.size != int(np.prod(want)) or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous float64 array of {want} values, "
                             f"got {a.dtype} {a.shape}")
        return a.reshape(want)

    def __call__(self, conc, source, uptake, perm, blood, mass=None, clear=False, decayed=True):
        """Advance ``conc`` in place by the pointwise ODE over ``dt``; return the masses moved.

        Args:
            conc: ``(F, ny, nx)`` / ``(F, nz, ny, nx)`` pg/mL, updated in place.
            source: ``(F, nsites)`` (or the lattice shape) secretion, pg/mL/s, >= 0.
            uptake: ``(F, nsites)`` first-order uptake rate constants, 1/s, >= 0.
            perm: ``(nsites,)`` vessel permeability (0 away from vessels), >= 0.
            blood: ``(F,)`` plasma concentrations, pg/mL.
            mass: optional ``(3, F)`` float64 output.
            clear: set ``source`` and ``uptake`` to 0 once read (saves the
                caller two passes over them).
            decayed: with ``decay_after``, False skips the decayed mass (row
                :data:`MASS_DECAYED` is then NaN), which saves a pass over ``conc``.

        Returns:
            ``mass`` ``(3, F)`` in pg: row :data:`MASS_EXCHANGED` net tissue ->
            blood, :data:`MASS_UPTAKE` taken up by cells, :data:`MASS_DECAYED`
            lost to decay (zero unless decay was given to this stepper).
        """
        _check_field(conc, self.shape)
        c2 = conc.reshape(self.n_species, self.n_sites)
        S2 = self._site_array(source, "source", True)
        K2 = self._site_array(uptake, "uptake", True)
        p1 = self._site_array(perm, "perm", False)
        cb = np.ascontiguousarray(blood, dtype=np.float64).reshape(-1)
        if cb.shape != (self.n_species,):
            raise ValueError(f"blood must have {self.n_species} values, got {cb.shape}")
        if mass is None:
            mass = np.empty((3, self.n_species))
        else:
            _check_field(mass, (3, self.n_species), "mass")
        threads = self.parallel and _n_threads() > 1 and self._partial.shape[2] > 1
        if self.decay_after:
            total = c2.sum(axis=1) if decayed else None   # before the update; deterministic
            kernel = _ss_sparse_par if threads else _ss_sparse_ser
            kernel(c2, S2, K2, p1, self.exchange_per_s, cb, self.decay_per_s, self._edec,
                   self._phidec, self.dt_s, bool(clear), self.voxel_volume_ml, self._partial, mass)
            if decayed:
                mass[MASS_DECAYED] += (1.0 - self._edec) * total * self.voxel_volume_ml
            else:
                mass[MASS_DECAYED] = np.nan
            return mass
        kernel = _ss_par if threads else _ss_ser
        kernel(c2, S2, K2, p1, self.exchange_per_s, cb, self.decay_per_s, self._edec,
               self._phidec, self.dt_s, self.method == "exact", self.voxel_volume_ml,
               self._partial, mass)
        if clear:
            S2.fill(0.0)
            K2.fill(0.0)
        return mass


# --------------------------------------------------------------------------- #
# factories
# --------------------------------------------------------------------------- #

def make_implicit_stepper(shape, h_um, dt_s, D_um2_s, decay_per_s, boundary="noflux",
                          parallel=True) -> ImplicitStepper:
    """Build an unconditionally stable LOD backward-Euler diffusion-decay stepper.

    One call advances every species by ``dt``:

    .. math::

        C^{n+1} = S_z S_y S_x \\left(e^{-k\\,dt} C^n\\right),\\qquad
        S_a v = (I - r_a \\Delta_a)^{-1}(v + r_a\\,g\\,e_{\\partial})

    with ``r_a = D dt / h^2`` and ``Delta_a`` the 3-point second difference
    along axis ``a`` (x, then y, then z in 3D). Decay is the exact factor
    ``exp(-k dt)``, folded into the first (x) solve at no cost, so a uniform
    field decays exactly as ``exp(-k t)``; with no-flux boundaries it commutes
    with diffusion, so the splitting adds no error there. Each 1-D solve is the
    Thomas algorithm with coefficients precomputed here
    (:func:`thomas_coefficients`). The x sweep runs 8 rows at once; y and z
    sweeps advance row by row (plane by plane) vectorised across columns.

    Properties: mass conserving for "noflux" and ``k = 0`` (column sums of
    ``I - r Delta`` are 1); positivity preserving (``(I - r Delta)^{-1} >= 0``);
    the variance of a spreading peak grows by exactly ``2 D dt`` per axis per
    step on an unbounded lattice; error ``O(dt) + O(h^2)``.

    Args:
        shape: ``(F, ny, nx)`` or ``(F, nz, ny, nx)``.
        h_um: lattice edge, um.
        dt_s: time step, s.
        D_um2_s: ``(F,)`` (or scalar) diffusion coefficients, um^2/s.
        decay_per_s: ``(F,)`` (or scalar) first-order decay rates, 1/s.
        boundary: "noflux" or "fixed".
        parallel: use Numba threads (results identical for any thread count).

    Returns:
        An :class:`ImplicitStepper`; call ``step(conc, boundary_values=None,
        out=None)``.
    """
    return ImplicitStepper(shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel)


def make_explicit_stepper(shape, h_um, dt_s, D_um2_s, decay_per_s, boundary="noflux",
                          parallel=True, safety=0.9) -> ExplicitStepper:
    """Build a forward-Euler 5-point (2D) / 7-point (3D) stepper with sub-stepping.

    ``n_sub = ceil(dt / (safety * dt_stable))`` with ``dt_stable = h^2 / (2
    ndim D_max)``; each sub-step of length ``tau = dt / n_sub`` is

    .. math::

        C' = e^{-k\\tau}\\left[(1 - 2\\,\\mathrm{ndim}\\,r) C + r \\sum_{nb} C_{nb}\\right],
        \\qquad r = D\\tau/h^2,

    i.e. explicit diffusion with the exact decay factor per sub-step (so decay
    of a uniform field is exact). With ``safety <= 1`` every weight is >= 0:
    positive and maximum-principle preserving. Error ``O(tau) + O(h^2)``.

    Args:
        shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel: as for
            :func:`make_implicit_stepper`.
        safety: fraction of the stability limit used, in (0, 1].

    Returns:
        An :class:`ExplicitStepper` (attributes ``n_sub``, ``dt_sub_s``,
        ``dt_stable_s``); call ``step(conc, boundary_values=None, out=None)``.
    """
    return ExplicitStepper(shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel, safety)


def make_source_sink_stepper(shape, h_um, dt_s, exchange_per_s, decay_per_s=None,
                             parallel=True, method="exact", decay_after=False) -> SourceSinkStepper:
    """Build the pointwise secretion / uptake / blood-exchange stepper (exact in time by default).

    Per voxel and species, over one ``dt`` with all rates frozen,

    .. math::

        \\frac{dC}{dt} = S - (k_{up} + k_{ex} p + k_{dec}) C + k_{ex} p C_b

    is solved exactly: ``C1 = C0 e^{-lam dt} + (S + k_ex p C_b)(1 - e^{-lam
    dt})/lam``, ``lam = k_up + k_ex p + k_dec`` (``C1 = C0 + S dt`` when
    ``lam = 0``). Every term is >= 0 for ``C0, S, C_b >= 0``, so no uptake,
    however large, can make a concentration negative. Masses (pg, volume
    ``h^3 * 1e-12`` mL per voxel) are the exact time integrals over the step:
    exchanged ``= V sum k_ex p (int C dt - C_b dt)`` (positive: tissue ->
    blood), taken up ``= V sum k_up int C dt``; they close the balance
    ``sum(C1 - C0) V = V sum S dt - exchanged - uptake - decayed`` to rounding.
    Sums are formed per block of :data:`SITE_BLOCK` sites, then serially, so
    they do not depend on the thread count.

    ``method="backward_euler"`` instead takes ``C1 = (C0 + (S + k_ex p C_b)
    dt) / (1 + lam dt)`` (also never negative, mass balance also closed,
    with ``int C dt ~ C1 dt``): first order in ``lam dt`` but branch-free and
    free of ``expm1``, several times faster where most sites take up
    (the exact path costs one ``expm1`` per voxel and species with uptake or
    exchange, ~10-15 ns).

    Decay normally belongs to the diffusion stepper (``decay_per_s=None``
    here). Passing it here instead (and ``decay_per_s=0`` to the diffusion
    stepper) removes the ``~k dt / 2`` splitting bias of steady states, e.g. a
    uniform source then settles exactly at ``S / k``.

    ``decay_after=True`` (exact method only) is the same scheme, computed
    sparsely for a caller whose next step applies the decay factor
    ``exp(-k_dec dt)`` to every voxel (the implicit stepper built with the
    same ``decay_per_s``): sites with a source, uptake or exchange get the
    exact ``C1`` divided by that factor, all other sites -- where only decay
    acts -- are left alone, so the cost scales with the number of such sites
    instead of the lattice. ``C1`` after the decay factor, and the uptake and
    exchange masses, agree with the default mode to rounding.

    Args:
        shape: ``(F, ny, nx)`` or ``(F, nz, ny, nx)``.
        h_um: lattice edge, um (2D lattices are slabs of thickness ``h``).
        dt_s: time step, s.
        exchange_per_s: ``(F,)`` exchange rate at permeability 1, 1/s.
        decay_per_s: optional ``(F,)`` decay, 1/s (see above).
        parallel: use Numba threads (one block of sites per work item).
        method: "exact" (default) or "backward_euler".
        decay_after: see above.

    Returns:
        A :class:`SourceSinkStepper`; call ``step(conc, source, uptake, perm,
        blood, mass=None) -> mass``.
    """
    return SourceSinkStepper(shape, h_um, dt_s, exchange_per_s, decay_per_s, parallel, method,
                             decay_after)


__all__ = [
    "BOUNDARIES", "SOURCE_SINK_METHODS", "MASS_EXCHANGED", "MASS_UPTAKE", "MASS_DECAYED", "SITE_BLOCK",
    "ImplicitStepper", "ExplicitStepper", "SourceSinkStepper",
    "make_implicit_stepper", "make_explicit_stepper", "make_source_sink_stepper",
    "thomas_coefficients",
]
