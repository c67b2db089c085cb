"""Initial conditions of a patch: endothelium, the tumour mass, resident myeloid cells."""

from __future__ import annotations

import numpy as np

from abm.cells import ENDOTHELIAL, TUMOUR, TUMOUR_ALIVE
from abm.kernels import rng, streams
from abm.model.myeloid import place_residents


def place_initial_cells(state) -> None:
    """Fill an empty state: endothelium on vessel sites, the tumour as a compact mass, residents.

    Tumour cells fill the ``tumour.initial_cells`` non-vessel sites closest
    to the patch centre (ties broken by a hash of the site). Antigen density
    per cell: 0 with probability ``antigen_negative_fraction``, else
    log-normal with median ``antigen_median_molecules`` and log-sd
    ``antigen_log_sd`` (stream TUMOUR_ANTIGEN, keyed by cell id). Resident
    macrophages are then placed by :func:`abm.model.myeloid.place_residents`.
    """
    lat, cfg, seed, cells = state.lattice, state.config, state.seed, state.cells
    cells.add(ENDOTHELIAL, lat.vessel_sites, store=1.0)
    state.perm[lat.vessel_sites] = 1.0
    all_sites = np.arange(lat.n_sites, dtype=np.int64)
    zyx = lat.coords(all_sites).astype(np.float64)
    centre = (np.array(lat.zyx_shape, dtype=np.float64) - 1.0) / 2.0
    dist2 = ((zyx - centre) ** 2).sum(axis=1)
    tie = rng.uniform_array(seed, streams.TUMOUR_INIT, 0, all_sites, 0)
    order = np.lexsort((tie, dist2))
    order = order[~lat.vessel[order]]
    sites = np.sort(order[: cfg.tumour.initial_cells])
    rows = cells.add(TUMOUR, sites, phenotype=TUMOUR_ALIVE)
    ids = cells.id[rows]
    t = cfg.tumour
    u = rng.uniform_array(seed, streams.TUMOUR_ANTIGEN, 0, ids, 0)
    z = rng.normal_array(seed, streams.TUMOUR_ANTIGEN, 0, ids, 1)
    antigen = t.antigen_median_molecules * np.exp(t.antigen_log_sd * z)
    cells.antigen[rows] = np.where(u < t.antigen_negative_fraction, 0.0, antigen)
    place_residents(state)
