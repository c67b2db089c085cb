"""Explicit (forward-Euler stencil, sub-stepped) diffusion and decay of all cytokine fields.

Field layout, units and boundaries: :mod:`abm.kernels.diffusion_common`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from abm.kernels.diffusion_common import FieldStepper
from abm.kernels.jit import jit, pjit


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


class ExplicitStepper(FieldStepper):
    """Forward-Euler stencil with sub-stepping; see :func:`make_explicit_stepper`.

    Attributes (besides those of the base): ``n_sub`` sub-steps per call of
    ``dt_sub_s`` each, ``dt_stable_s = h^2 / (2 ndim D_max)``, ``safety``,
    weights ``A = e^{-k tau}(1 - 2 ndim r)`` and ``B = e^{-k tau} r`` per
    species. Owns a scratch array of the field's size: one call at a time.
    """

    def __init__(self, shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel, safety,
                 layered=False):
        super().__init__(shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel, layered)
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


def make_explicit_stepper(shape, h_um, dt_s, D_um2_s, decay_per_s, boundary="noflux",
                          parallel=True, safety=0.9, layered=False) -> ExplicitStepper:
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
        shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel, layered: as
            for :func:`make_implicit_stepper`.
        safety: fraction of the stability limit used, in (0, 1].

    Returns:
        An :class:`ExplicitStepper` (attributes ``n_sub``, ``dt_sub_s``,
        ``dt_stable_s``); call ``step(conc, boundary_values=None, out=None)``.
    """
    return ExplicitStepper(shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel, safety,
                           layered)


__all__ = ["ExplicitStepper", "make_explicit_stepper"]
