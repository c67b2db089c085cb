"""Lattice geometry for 2D, 3D and layered 2D with flat site indexing.

Sites are numbered in C order: ``site = (z * ny + y) * nx + x`` (2D: ``z = 0``).
Kernels see only flat arrays: a neighbour table ``neighbours[site, k]`` (``-1``
outside the domain) serves every geometry, so one kernel handles 2D and 3D.
Vessel sites are laid out reproducibly from the run seed.

A layered lattice (``lattice.patches = K > 1``, 2D ``shape``) stacks K
independent 2D tissue patches as the planes ``z = 0 .. K-1`` of one
``(K, ny, nx)`` array: the neighbour table holds in-plane neighbours only, so
nothing moves, divides, engages or diffuses between patches, and each patch
gets its own vessel layout. ``K = 1`` is the plain 2D lattice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abm.schema import Section, param
from abm.kernels import rng, streams


@dataclass(frozen=True)
class LatticeParams(Section):
    """Shape, spacing, neighbourhood, boundaries and vessel layout of the tissue patch."""

    shape: tuple[int, ...] = param((128, 128), unit="sites", ge=4, le=4096, length=(2, 3),
                                   doc="(ny, nx) or (nz, ny, nx)")
    site_um: float = param(20.0, unit="um", gt=0, le=1000, doc="site edge h")
    neighbourhood: str = param("moore", unit="-", choices=("moore", "von_neumann"),
                               doc="moore: 8 (2D) / 26 (3D) neighbours; von_neumann: 4 / 6")
    boundary: str = param("noflux", unit="-", choices=("noflux", "fixed"),
                          doc="field boundary: zero flux, or held at plasma values")
    vessel_fraction: float = param(0.03, unit="1", ge=0, le=0.25,
                                   doc="fraction of sites that are vessel sites")
    vessel_layout: str = param("segments", unit="-", choices=("segments", "points"),
                               doc="random straight segments, or scattered single sites")
    vessel_segment_sites: int = param(10, unit="sites", ge=1, le=1000,
                                      doc="length of one straight vessel segment")
    patches: int = param(1, unit="patches", ge=1, le=64,
                         doc="independent 2D tissue patches per patient, stacked as "
                             "uncoupled layers (needs a 2D shape when > 1)")

    def check(self, fail):
        if self.patches > 1 and len(self.shape) != 2:
            fail("patches", f"needs a 2D lattice.shape (ny, nx) when > 1 "
                            f"(got patches = {self.patches} with shape {list(self.shape)})")
        n = int(np.prod(self.shape))
        if self.vessel_fraction > 0 and self.vessel_fraction * n < 1:
            fail("vessel_fraction", f"gives no vessel site on a lattice of {n} sites "
                                    f"(got {self.vessel_fraction}); raise it or enlarge the lattice")
        if self.vessel_segment_sites > max(self.shape):
            fail("vessel_segment_sites", f"must be <= the largest lattice extent {max(self.shape)} "
                                         f"(got {self.vessel_segment_sites})")


def _offsets(ndim: int, neighbourhood: str) -> np.ndarray:
    offs = []
    rng_ = (-1, 0, 1)
    if ndim == 2:
        cand = [(0, dy, dx) for dy in rng_ for dx in rng_]
    else:
        cand = [(dz, dy, dx) for dz in rng_ for dy in rng_ for dx in rng_]
    for d in cand:
        if d == (0, 0, 0):
            continue
        if neighbourhood == "von_neumann" and sum(abs(c) for c in d) != 1:
            continue
        offs.append(d)
    return np.array(offs, dtype=np.int64)


class Lattice:
    """Geometry of the tissue: shape, spacing, neighbour table, vessel sites.

    Attributes:
        shape: array shape of one field: (ny, nx), (nz, ny, nx), or
            (K, ny, nx) for K > 1 layered patches.
        ndim: dimensionality of the neighbourhood and of diffusion: 2 or 3
            (2 for a layered lattice).
        n_patches: number of independent patches K (1 unless layered).
        layered: True for K > 1 (``shape`` then has one more axis than ``ndim``).
        axis_names: names of the ``shape`` axes: ("y", "x"), ("z", "y", "x")
            or ("patch", "y", "x").
        n_sites: number of sites (all patches).
        h_um: site edge in um.
        offsets: (K, 3) array of (dz, dy, dx) neighbour displacements.
        neighbours: (n_sites, K) int64 table of neighbour site indices, -1 outside.
        vessel: bool array (n_sites,) marking vessel sites.
        vessel_sites: sorted int64 array of vessel site indices.
    """

    def __init__(self, params: LatticeParams, seed: int):
        self.params = params
        plane = tuple(int(s) for s in params.shape)
        self.n_patches = int(params.patches)
        self.layered = self.n_patches > 1
        self.shape = (self.n_patches,) + plane if self.layered else plane
        self.ndim = len(plane)
        self.axis_names = ("patch", "y", "x") if self.layered else ("z", "y", "x")[3 - self.ndim:]
        self.n_sites = int(np.prod(self.shape))
        self.h_um = float(params.site_um)
        self.offsets = _offsets(self.ndim, params.neighbourhood)
        self.neighbours = self._neighbour_table()
        self.vessel = self._vessel_layout(seed)
        self.vessel_sites = np.flatnonzero(self.vessel).astype(np.int64)

    @property
    def zyx_shape(self) -> tuple[int, int, int]:
        """(nz, ny, nx): (1, ny, nx) in 2D, (K, ny, nx) for K layered patches."""
        return (1,) + self.shape if len(self.shape) == 2 else self.shape

    @property
    def patch_sites(self) -> int:
        """Sites of one patch (all sites unless layered)."""
        return self.n_sites // self.n_patches

    def patch_of(self, sites) -> np.ndarray:
        """Patch (layer) index of flat site indices (0 unless layered)."""
        return np.asarray(sites, dtype=np.int64) // self.patch_sites

    @property
    def voxel_ml(self) -> float:
        """Volume of one site in mL (h^3 um^3; a 2D patch is one site thick)."""
        return self.h_um ** 3 * 1e-12

    def coords(self, sites: np.ndarray) -> np.ndarray:
        """(n, 3) array of (z, y, x) for flat site indices."""
        nz, ny, nx = self.zyx_shape
        sites = np.asarray(sites, dtype=np.int64)
        return np.stack([sites // (ny * nx), (sites // nx) % ny, sites % nx], axis=1)

    def site(self, z, y, x) -> np.ndarray:
        nz, ny, nx = self.zyx_shape
        return (np.asarray(z) * ny + np.asarray(y)) * nx + np.asarray(x)

    def _neighbour_table(self) -> np.ndarray:
        nz, ny, nx = self.zyx_shape
        zz, yy, xx = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
        zz, yy, xx = zz.ravel(), yy.ravel(), xx.ravel()
        table = np.empty((self.n_sites, len(self.offsets)), dtype=np.int64)
        for k, (dz, dy, dx) in enumerate(self.offsets):
            z, y, x = zz + dz, yy + dy, xx + dx
            inside = (z >= 0) & (z < nz) & (y >= 0) & (y < ny) & (x >= 0) & (x < nx)
            table[:, k] = np.where(inside, (z * ny + y) * nx + x, -1)
        return table

    def _vessel_layout(self, seed: int) -> np.ndarray:
        """Reproducible vessel sites from the run seed (stream VESSEL_LAYOUT), patch by patch.

        ``segments``: straight segments of ``vessel_segment_sites`` along a random
        axis from random starts, until the target count is reached; ``points``:
        single sites chosen by hash priority. Each patch of a layered lattice
        gets ``vessel_fraction`` of its sites from its own draws (patch ``k``
        uses step ``1 + k`` for segments, and hashes its own site indices for
        points), so patch 0 has the layout of a single 2D patch.
        """
        if not self.layered:
            return self._patch_vessels(seed, self.zyx_shape, 0, 0)
        plane = (1,) + self.shape[1:]
        return np.concatenate([self._patch_vessels(seed, plane, k, k * self.patch_sites)
                               for k in range(self.n_patches)])

    def _patch_vessels(self, seed: int, dims, patch: int, first_site: int) -> np.ndarray:
        """Vessel mask of one patch of shape ``dims`` = (nz, ny, nx), sites from ``first_site``."""
        p = self.params
        n = int(np.prod(dims))
        target = int(round(p.vessel_fraction * n))
        vessel = np.zeros(n, dtype=bool)
        if target == 0:
            return vessel
        s = streams.VESSEL_LAYOUT
        if p.vessel_layout == "points":
            keys = rng.uniform_array(seed, s, 0, np.arange(first_site, first_site + n, dtype=np.int64), 0)
            vessel[np.argsort(keys, kind="stable")[:target]] = True
            return vessel
        nz, ny, nx = dims
        axes = [a for a in range(3) if dims[a] > 1]
        count, k = 0, 0
        while count < target:
            u = [rng.uniform(seed, s, 1 + patch, k, d) for d in range(4)]
            k += 1
            axis = axes[int(u[0] * len(axes))]
            start = [int(u[1 + a] * dims[a]) for a in range(3)]
            for i in range(p.vessel_segment_sites):
                pos = list(start)
                pos[axis] = start[axis] + i
                if pos[axis] >= dims[axis]:
                    break
                site = (pos[0] * ny + pos[1]) * nx + pos[2]
                if not vessel[site]:
                    vessel[site] = True
                    count += 1
                    if count >= target:
                        break
        return vessel
