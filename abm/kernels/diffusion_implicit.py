"""Implicit (LOD backward-Euler) diffusion and decay of all cytokine fields.

Field layout, units and boundaries: :mod:`abm.kernels.diffusion_common`.
"""

from __future__ import annotations

import decimal
from collections import namedtuple

import numba
import numpy as np

from abm.kernels.diffusion_common import FieldStepper, check_field, check_geometry
from abm.kernels.jit import jit, pjit, resolved
from abm.kernels.source_sink import (MASS_DECAYED, SiteTerms, SourceSinkStepper, _ss_sparse_block,
                                     _ss_sum)

#: The Thomas coefficients of the three sweeps, ``(F, n)`` / ``(F, 2)`` arrays
#: per axis (:func:`thomas_coefficients`); ``Px`` carries the decay factor.
LodCoefficients = namedtuple("LodCoefficients", ["Px", "Qx", "Gx", "Py", "Qy", "Gy",
                                                 "Pz", "Qz", "Gz"])


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


@jit(inline="always")   # one call site; saves compiling (and re-optimising) a level
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
def _lod_species(src, dst, f, coef, gval, fixed, three_d):
    """All sweeps of species ``f``: x (rows, with the decay factor), y (per plane), z.

    ``coef``: :class:`LodCoefficients`.
    """
    Px = coef.Px
    Qx = coef.Qx
    Gx = coef.Gx
    Py = coef.Py
    Qy = coef.Qy
    Gy = coef.Gy
    Pz = coef.Pz
    Qz = coef.Qz
    Gz = coef.Gz
    F, nz, ny, nx = src.shape
    g = gval[f] if fixed else 0.0
    _x_sweep(src[f].reshape(nz * ny, nx), dst[f].reshape(nz * ny, nx), Px[f], Qx[f],
             Gx[f, 0] * g, Gx[f, 1] * g)
    for z in range(nz):
        _row_sweep(dst[f, z], Py[f], Qy[f], Gy[f, 0] * g, Gy[f, 1] * g)
    if three_d:
        _row_sweep(dst[f].reshape(nz, ny * nx), Pz[f], Qz[f], Gz[f, 0] * g, Gz[f, 1] * g)


@jit
def _lod_ser(src, dst, coef, gval, fixed, three_d):
    for f in range(src.shape[0]):
        _lod_species(src, dst, f, coef, gval, fixed, three_d)


@pjit
def _lod_par(src, dst, coef, gval, fixed, three_d):
    for f in numba.prange(src.shape[0]):
        _lod_species(src, dst, f, coef, gval, fixed, three_d)


# --------------------------------------------------------------------------- #
# compiled kernels: the source-sink step and the implicit step in one call
# --------------------------------------------------------------------------- #

@jit
def _field_ser(src, coef, gval, fixed, three_d, sites, rates, blood, dt, clear, vol_ml, partial,
               mass):
    """The ``decay_after`` source-sink step (block by block) then the LOD step, serially."""
    for blk in range(partial.shape[2]):
        _ss_sparse_block(sites, rates, blood, dt, clear, blk, partial)
    _ss_sum(partial, vol_ml, mass)
    for f in range(src.shape[0]):
        _lod_species(src, src, f, coef, gval, fixed, three_d)


@pjit
def _field_par(src, coef, gval, fixed, three_d, sites, rates, blood, dt, clear, vol_ml, partial,
               mass):
    """:func:`_field_ser` with the blocks, then the species, shared among threads."""
    for blk in numba.prange(partial.shape[2]):
        _ss_sparse_block(sites, rates, blood, dt, clear, blk, partial)
    _ss_sum(partial, vol_ml, mass)
    for f in numba.prange(src.shape[0]):
        _lod_species(src, src, f, coef, gval, fixed, three_d)


class ImplicitStepper(FieldStepper):
    """LOD backward-Euler diffusion with exact decay; see :func:`make_implicit_stepper`.

    Attributes (besides those of the base): ``Px, Qx, Gx`` (and ``y``, ``z``)
    the precomputed Thomas coefficients per species (:func:`thomas_coefficients`);
    ``Px`` carries the decay factor. Holds no scratch: safe to call from
    several threads on different arrays.
    """

    def __init__(self, shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel, layered=False):
        super().__init__(shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel, layered)
        (self.Px, self.Qx, self.Gx), (self.Py, self.Qy, self.Gy), (self.Pz, self.Qz, self.Gz) = (
            _lod_coefficients(self.shape4, self.h_um, self.dt_s, self.D_um2_s, self.decay_per_s, boundary))
        self.coefficients = LodCoefficients(self.Px, self.Qx, self.Gx, self.Py, self.Qy, self.Gy,
                                            self.Pz, self.Qz, self.Gz)

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
               self.coefficients, g, self.fixed, self.ndim == 3)
        return dst


def make_implicit_stepper(shape, h_um, dt_s, D_um2_s, decay_per_s, boundary="noflux",
                          parallel=True, layered=False) -> ImplicitStepper:
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
        layered: ``shape`` is ``(F, K, ny, nx)``, K uncoupled 2D layers (no z sweep).

    Returns:
        An :class:`ImplicitStepper`; call ``step(conc, boundary_values=None,
        out=None)``.
    """
    return ImplicitStepper(shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel, layered)


class FieldStep:
    """A source-sink step and the implicit step after it, in one compiled call; see :func:`make_field_step`."""

    def __init__(self, source_sink: SourceSinkStepper, diffuse: ImplicitStepper):
        if not isinstance(source_sink, SourceSinkStepper) or not source_sink.decay_after:
            raise ValueError("make_field_step needs a source-sink stepper built with decay_after=True")
        if not isinstance(diffuse, ImplicitStepper):
            raise ValueError("make_field_step needs an implicit stepper")
        if (source_sink.shape != diffuse.shape or source_sink.dt_s != diffuse.dt_s
                or not np.array_equal(source_sink.decay_per_s, diffuse.decay_per_s)):
            raise ValueError("the source-sink and implicit steppers must share shape, dt and decay")
        self.source_sink = source_sink
        self.diffuse = diffuse
        self._entries = {}

    def __call__(self, conc, source, uptake, perm, blood, mass=None, clear=False, decayed=True,
                 boundary_values=None):
        """``source_sink(conc, source, uptake, perm, blood, mass, clear, decayed)`` then
        ``diffuse(conc, boundary_values)``: the same fields, masses and cleared arrays, bit for
        bit, with ``conc`` updated in place; returns ``mass``."""
        ss, d = self.source_sink, self.diffuse
        check_field(conc, ss.shape)
        c2 = conc.reshape(ss.n_species, ss.n_sites)
        sites = SiteTerms(c2, ss._site_array(source, "source", True),
                          ss._site_array(uptake, "uptake", True),
                          ss._site_array(perm, "perm", False))
        cb = np.ascontiguousarray(blood, dtype=np.float64).reshape(-1)
        if cb.shape != (ss.n_species,):
            raise ValueError(f"blood must have {ss.n_species} values, got {cb.shape}")
        if mass is None:
            mass = np.empty((3, ss.n_species))
        else:
            check_field(mass, (3, ss.n_species), "mass")
        g = d._bvals(boundary_values) if d.fixed else d._zeros
        total = c2.sum(axis=1) if decayed else None   # before the update; deterministic
        kernel = _field_par if d._use_threads() else _field_ser
        args = (conc.reshape(d.shape4), d.coefficients, g, d.fixed, d.ndim == 3, sites, ss._rates,
                cb, ss.dt_s, bool(clear), ss.voxel_volume_ml, ss._partial, mass)
        if not (conc.flags.writeable and sites.source.flags.writeable
                and sites.uptake.flags.writeable and mass.flags.writeable):
            raise ValueError("conc, source, uptake and mass must be writeable")
        # the compiled entry for these argument types (typing the bundles costs ~20 us a call);
        # after the checks above they can differ only in read-only inputs, which it reads alike
        entry = self._entries.get(kernel)
        if entry is None:
            kernel(*args)   # compiled, or loaded from the cache, on first use
            self._entries[kernel] = resolved(kernel, args)
        else:
            entry(*args)
        if decayed:
            mass[MASS_DECAYED] += (1.0 - ss._edec) * total * ss.voxel_volume_ml
        else:
            mass[MASS_DECAYED] = np.nan
        return mass


def make_field_step(source_sink: SourceSinkStepper, diffuse: ImplicitStepper) -> FieldStep:
    """Fuse a ``decay_after`` source-sink stepper and the implicit stepper that follows it.

    ``step = make_field_step(ss, diffuse)``; ``step(conc, source, uptake,
    perm, blood, mass, clear=..., decayed=..., boundary_values=...)`` gives
    bit for bit what ``ss(conc, source, uptake, perm, blood, mass, clear,
    decayed)`` then ``diffuse(conc, boundary_values)`` give (fields, masses,
    cleared sources and uptakes), in one compiled call: the same kernels run
    back to back, with no Python between them and no per-call typing of
    their argument bundles. The two steppers must share shape, ``dt`` and
    decay (``ss`` built with ``decay_after=True``); ``conc`` is updated in
    place.

    Applying each species' sources and sinks inside the first (x) sweep of
    the LOD step, row block by row block, also gives identical numbers but
    was measured slower (~6 %) than the two passes back to back: the
    source-sink step's cost is the pass that finds the active sites (it
    reads every species' source and uptake) and one ``expm1`` per active
    voxel and species, neither of which the sweep can share, while the
    block-by-block pass keeps a block's sources and uptakes in cache for
    all species.
    """
    return FieldStep(source_sink, diffuse)


__all__ = ["ImplicitStepper", "LodCoefficients", "make_implicit_stepper", "thomas_coefficients",
           "FieldStep", "make_field_step"]

