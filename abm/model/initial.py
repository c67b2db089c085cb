"""Initial conditions of the tissue: endothelium, the tumour mass, resident myeloid cells.

A layered lattice (``lattice.patches = K``) is filled patch by patch: every
patch holds ``tumour.initial_cells`` tumour cells and its own residents, so
the tissue starts with ``K * tumour.initial_cells`` tumour cells in all.
"""

from __future__ import annotations

import numpy as np

from abm.cells import ENDOTHELIAL, TUMOUR, TUMOUR_ALIVE
from abm.kernels import rng, streams
from abm.model import endothelium
from abm.model.myeloid import place_residents


def tumour_sites(lat, n_cells: int, seed: int) -> np.ndarray:
    """Sorted sites of the compact initial tumour mass: ``n_cells`` per patch.

    In each patch the ``n_cells`` non-vessel sites closest to the patch centre
    (ties broken by a hash of the site, stream TUMOUR_INIT).
    """
    per_patch = lat.patch_sites
    dims = np.array((1,) + lat.shape[1:] if lat.layered else lat.zyx_shape, dtype=np.float64)
    centre = (dims - 1.0) / 2.0
    chosen = []
    for k in range(lat.n_patches):
        sites = np.arange(k * per_patch, (k + 1) * per_patch, dtype=np.int64)
        zyx = lat.coords(sites).astype(np.float64)
        if lat.layered:
            zyx[:, 0] = 0.0   # distance within the patch
        dist2 = ((zyx - centre) ** 2).sum(axis=1)
        tie = rng.uniform_array(seed, streams.TUMOUR_INIT, 0, sites, 0)
        order = sites[np.lexsort((tie, dist2))]
        order = order[~lat.vessel[order]]
        chosen.append(order[:n_cells])
    return np.sort(np.concatenate(chosen))


def initial_antigen(t, seed: int, ids: np.ndarray) -> np.ndarray:
    """Antigen densities of new tumour cells ``ids`` (stream TUMOUR_ANTIGEN, keyed by cell id).

    0 with probability ``t.antigen_negative_fraction``, else log-normal with
    median ``t.antigen_median_molecules`` and log-sd ``t.antigen_log_sd``.
    """
    u = rng.uniform_array(seed, streams.TUMOUR_ANTIGEN, 0, ids, 0)
    z = rng.normal_array(seed, streams.TUMOUR_ANTIGEN, 0, ids, 1)
    antigen = t.antigen_median_molecules * np.exp(t.antigen_log_sd * z)
    return np.where(u < t.antigen_negative_fraction, 0.0, antigen)


def place_initial_cells(state) -> None:
    """Fill an empty state: endothelium on vessel sites, the tumour as a compact mass, residents.

    Tumour cells fill the ``tumour.initial_cells`` non-vessel sites closest
    to the centre of each patch (:func:`tumour_sites`), with antigen
    densities from :func:`initial_antigen`. Resident
    macrophages are then placed in each patch by
    :func:`abm.model.myeloid.place_residents`.
    """
    lat, cfg, seed, cells = state.lattice, state.config, state.seed, state.cells
    e0, w0 = endothelium.resting_state(cfg.endothelium, cfg.patient.baseline_endothelial_activation,
                                       cfg.run.dt_s)
    cells.add(ENDOTHELIAL, lat.vessel_sites, store=w0, activation=e0)
    state.perm[lat.vessel_sites] = 1.0 + cfg.endothelium.perm_activation_gain * e0   # the rule's, no ANG-2 yet
    sites = tumour_sites(lat, cfg.tumour.initial_cells, seed)
    rows = cells.add(TUMOUR, sites, phenotype=TUMOUR_ALIVE)
    cells.antigen[rows] = initial_antigen(cfg.tumour, seed, cells.id[rows])
    if lat.layered:
        for k in range(lat.n_patches):
            place_residents(state, patch=k)
    else:
        place_residents(state)
