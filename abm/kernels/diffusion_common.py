"""Cytokine field solvers: the shared part (geometry checks, the field stepper base).

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

1. :func:`abm.kernels.source_sink.make_source_sink_stepper`: the pointwise ODE ``S - k_up C +
   k_ex p (C_blood - C)``, solved exactly per voxel (never negative), which
   also returns the mass exchanged with blood and taken up, in pg.
2. :func:`abm.kernels.diffusion_implicit.make_implicit_stepper` (default) or
   :func:`abm.kernels.diffusion_explicit.make_explicit_stepper`: diffusion and first-order decay.

Factories precompute all coefficients and return a stepper object; calling it
runs one compiled kernel over all species at once. 2D arrays are handled as
3D arrays with ``nz = 1`` (a free view), so one kernel serves both.

Layered fields (``layered=True``): a ``(F, K, ny, nx)`` array holds K
independent 2D patches. Nothing crosses between layers (the z sweep and the z
terms of the stencil are skipped, the stability limit is the 2D one), so each
layer steps exactly as a ``(F, ny, nx)`` field would.

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

The solvers live in one module each: :mod:`abm.kernels.source_sink` (step 1),
:mod:`abm.kernels.diffusion_implicit` and :mod:`abm.kernels.diffusion_explicit`
(step 2); :mod:`abm.kernels.diffusion_ref` holds plain NumPy / SciPy references.
"""

from __future__ import annotations

import math

import numba
import numpy as np

BOUNDARIES = ("noflux", "fixed")


def as_species_vector(value, n_species: int, name: str) -> np.ndarray:
    arr = np.array(value, dtype=np.float64, ndmin=1)
    if arr.size == 1 and n_species > 1:
        arr = np.full(n_species, arr[0])
    if arr.shape != (n_species,):
        raise ValueError(f"{name} must have one value per species ({n_species}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {arr}")
    return arr


def check_geometry(shape, h_um: float, dt_s: float, boundary: str, layered: bool = False):
    shape = tuple(int(s) for s in shape)
    if layered and len(shape) != 4:
        raise ValueError(f"a layered shape must be (F, K, ny, nx), got {shape}")
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


def numba_threads() -> int:
    """Threads a parallel kernel would use (1 with the JIT off)."""
    return 1 if numba.config.DISABLE_JIT else numba.get_num_threads()


def check_field(arr, shape, name="conc"):
    """Raise ValueError unless ``arr`` is a C-contiguous float64 array of ``shape``."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float64:
        raise ValueError(f"{name} must be a float64 ndarray")
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, stepper was built for {shape}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")


class FieldStepper:
    """Shared geometry, validation and boundary-value handling.

    Attributes:
        shape: the field shape ``(F, ny, nx)``, ``(F, nz, ny, nx)`` or
            ``(F, K, ny, nx)`` (layered).
        ndim: 2 or 3 (2 when layered: the dimensionality of the stencil).
        n_species: ``F``. layered: K uncoupled 2D layers.
        h_um, dt_s: lattice edge (um) and step (s).
        D_um2_s, decay_per_s: ``(F,)`` arrays.
        boundary: "noflux" or "fixed". parallel: whether threads may be used.
    """

    def __init__(self, shape, h_um, dt_s, D_um2_s, decay_per_s, boundary, parallel, layered=False):
        self.shape = check_geometry(shape, h_um, dt_s, boundary, layered)
        self.layered = bool(layered)
        self.ndim = 2 if self.layered else len(self.shape) - 1
        self.n_species = self.shape[0]
        self.shape4 = self.shape if len(self.shape) == 4 else (self.shape[0], 1) + self.shape[1:]
        self.h_um = float(h_um)
        self.dt_s = float(dt_s)
        self.D_um2_s = as_species_vector(D_um2_s, self.n_species, "D_um2_s")
        self.decay_per_s = as_species_vector(decay_per_s, self.n_species, "decay_per_s")
        self.boundary = boundary
        self.fixed = boundary == "fixed"
        self.parallel = bool(parallel)
        self._zeros = np.zeros(self.n_species)

    def _use_threads(self) -> bool:
        """Threads pay off only with >= 2 species (the unit of parallel work) and >= 2 threads."""
        return self.parallel and self.n_species > 1 and numba_threads() > 1

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
        check_field(conc, self.shape)
        if out is None:
            return conc
        check_field(out, self.shape, "out")
        return out


__all__ = ["BOUNDARIES", "FieldStepper", "as_species_vector", "check_field", "check_geometry",
           "numba_threads"]
