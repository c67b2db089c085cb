"""The complete state of one virtual patient at one step.

Everything needed to continue a run exactly lives here as arrays and scalars:
the step counter, the cell table, the fields and the named scalars of the
well-mixed compartments (blood, physiology, brain, clinician). Random numbers
are pure functions of (seed, stream, step, cell id, draw), so no generator
state needs saving.
"""

from __future__ import annotations

import numpy as np

from abm.cells import CellTable
from abm.kernels.tallies import kind_counts
from abm.lattice import Lattice

#: The keys of :meth:`State.counts`, in order.
COUNT_NAMES = ("tumour", "cart", "myeloid", "endothelial")


class State:
    """State of one run.

    Attributes:
        config: the resolved configuration.
        seed: the run seed.
        step: steps taken since ``config.run.start_day``.
        lattice: geometry (rebuilt from config and seed, not stored).
        cells: the :class:`~abm.cells.CellTable`.
        species: names of the field species, in storage order (from
            ``config.fields``).
        fields: float64 array ``(F,) + lattice.shape`` of concentrations in pg/mL,
            species in the order of ``species``.
        scalars: named float scalars of the well-mixed compartments.
        events: event log of ``(time_day, kind, grade, detail)`` tuples.

    A new state is empty; the model's initial conditions
    (:func:`abm.model.initial.place_initial_cells`) fill it. Every attribute
    but ``config``, ``lattice`` and ``species`` is saved in checkpoints
    (:mod:`abm.io.checkpoint`), so all dynamic state of a run must live here.
    """

    def __init__(self, config, seed: int):
        self.config = config
        self.seed = int(seed)
        self.step = 0
        self.lattice = Lattice(config.lattice, self.seed)
        self.cells = CellTable(self.lattice.n_sites, capacity=2 * config.tumour.initial_cells + 1024)
        self.species: tuple[str, ...] = tuple(config.fields.names())
        self.fields = np.zeros((len(self.species),) + self.lattice.shape, dtype=np.float64)
        self.scalars: dict[str, float] = {}
        #: Event log, appended in step order: ``(time_day, kind, grade, detail)``
        #: tuples (written to the file's ``/events`` group).
        self.events: list[tuple[float, str, int, str]] = []
        n_f, n_s = len(self.species), self.lattice.n_sites
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
        return self.fields[self.species.index(name)]

    def counts(self) -> dict[str, int]:
        """Cells of each kind: ``tumour``, ``cart``, ``myeloid``, ``endothelial`` (one compiled pass)."""
        c = self.cells
        return dict(zip(COUNT_NAMES, kind_counts(c.kind, c.n)))
