"""The complete state of one virtual patient at one step.

Everything needed to continue a run exactly lives here as arrays and scalars:
the step counter, the cell table, the fields and the named scalars of the
well-mixed compartments (blood, physiology, brain, clinician). Random numbers
are pure functions of (seed, stream, step, cell id, draw), so no generator
state needs saving.
"""

from __future__ import annotations

import numpy as np

from abm.cells import (CART, ENDOTHELIAL, MYELOID, TUMOUR, TUMOUR_ALIVE, CellTable)
from abm.config import Config
from abm.kernels import rng, streams
from abm.lattice import Lattice
from abm.model.fields import SPECIES


class State:
    """State of one run.

    Attributes:
        config: the resolved configuration.
        seed: the run seed.
        step: steps taken since ``config.run.start_day``.
        lattice: geometry (rebuilt from config and seed, not stored).
        cells: the :class:`~abm.cells.CellTable`.
        fields: float64 array ``(F,) + lattice.shape`` of concentrations in pg/mL,
            species in the order of :data:`abm.model.fields.SPECIES`.
        scalars: named float scalars of the well-mixed compartments.
        events: event log of ``(time_day, kind, grade, detail)`` tuples.

    Every attribute but ``config`` and ``lattice`` is saved in checkpoints
    (:mod:`abm.io.checkpoint`), so all dynamic state of a run must live here.
    """

    def __init__(self, config: Config, seed: int):
        self.config = config
        self.seed = int(seed)
        self.step = 0
        self.lattice = Lattice(config.lattice, self.seed)
        self.cells = CellTable(self.lattice.n_sites, capacity=2 * config.tumour.initial_cells + 1024)
        self.fields = np.zeros((len(SPECIES),) + self.lattice.shape, dtype=np.float64)
        self.scalars: dict[str, float] = {}
        #: Event log, appended in step order: ``(time_day, kind, grade, detail)``
        #: tuples (written to the file's ``/events`` group).
        self.events: list[tuple[float, str, int, str]] = []
        n_f, n_s = len(SPECIES), self.lattice.n_sites
        #: Secretion into each field this step, pg/mL/s, ``(F, n_sites)``; cells add, fields consume.
        self.sources = np.zeros((n_f, n_s), dtype=np.float64)
        #: First-order uptake by cells this step, 1/s, ``(F, n_sites)``.
        self.uptake = np.zeros((n_f, n_s), dtype=np.float64)
        #: Vessel permeability per site (0 away from vessels; 1 = resting endothelium).
        self.perm = np.zeros(n_s, dtype=np.float64)

    @property
    def dt_s(self) -> float:
        return self.config.run.dt_s

    @property
    def time_day(self) -> float:
        """Day relative to infusion (day 0) at the current step."""
        r = self.config.run
        return r.start_day + self.step * r.dt_min / 1440.0

    def field(self, name: str) -> np.ndarray:
        return self.fields[SPECIES.index(name)]

    # -- initial conditions ---------------------------------------------------
    def initialise(self) -> None:
        """Place endothelium on vessel sites and the tumour as a compact mass.

        Tumour cells fill the ``tumour.initial_cells`` non-vessel sites closest
        to the patch centre (ties broken by a hash of the site). Antigen density
        per cell: 0 with probability ``antigen_negative_fraction``, else
        log-normal with median ``antigen_median_molecules`` and log-sd
        ``antigen_log_sd`` (stream TUMOUR_ANTIGEN, keyed by cell id).
        """
        lat, cfg, seed = self.lattice, self.config, self.seed
        self.cells.add(ENDOTHELIAL, lat.vessel_sites, store=1.0)
        self.perm[lat.vessel_sites] = 1.0
        all_sites = np.arange(lat.n_sites, dtype=np.int64)
        zyx = lat.coords(all_sites).astype(np.float64)
        centre = (np.array(lat.zyx_shape, dtype=np.float64) - 1.0) / 2.0
        dist2 = ((zyx - centre) ** 2).sum(axis=1)
        tie = rng.uniform_array(seed, streams.TUMOUR_INIT, 0, all_sites, 0)
        order = np.lexsort((tie, dist2))
        order = order[~lat.vessel[order]]
        sites = np.sort(order[: cfg.tumour.initial_cells])
        rows = self.cells.add(TUMOUR, sites, phenotype=TUMOUR_ALIVE)
        ids = self.cells.id[rows]
        t = cfg.tumour
        u = rng.uniform_array(seed, streams.TUMOUR_ANTIGEN, 0, ids, 0)
        z = rng.normal_array(seed, streams.TUMOUR_ANTIGEN, 0, ids, 1)
        antigen = t.antigen_median_molecules * np.exp(t.antigen_log_sd * z)
        self.cells.antigen[rows] = np.where(u < t.antigen_negative_fraction, 0.0, antigen)
        from abm.model.myeloid import place_residents
        place_residents(self)

    def counts(self) -> dict[str, int]:
        c = self.cells
        return {"tumour": c.count(TUMOUR), "cart": c.count(CART), "myeloid": c.count(MYELOID),
                "endothelial": c.count(ENDOTHELIAL)}
