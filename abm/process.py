"""The process interface: what a subsystem plugged into a simulation provides.

This module sits below the model: model modules subclass :class:`Process`
without importing the simulation core, and the core steps whatever
processes it is given (:mod:`abm.build` assembles the full model's list).
"""

from __future__ import annotations

#: Phases of one step, in order (see :meth:`abm.simulation.Simulation.run`).
PHASES = ("blood_to_tissue", "agents", "fields", "tissue_to_blood", "patient")


class Process:
    """A rule or subsystem advanced once per step in one phase.

    Subclasses set ``phase`` (one of :data:`PHASES`), implement :meth:`step`,
    and may add named scalars to each time-series record in :meth:`record`.
    A process is built with the simulation it belongs to and may read its
    ``config``, ``seed`` and ``state`` then; all dynamic state it changes
    must live on the :class:`~abm.state.State` (this is what makes exact
    restart possible).
    """

    phase: str = "agents"
    #: Units and long names of the keys this process records or reports:
    #: ``{"key": ("pg/mL", "long name")}`` (used by the file writer).
    meta: dict[str, tuple[str, str]] = {}

    def __init__(self, sim):
        #: the :class:`~abm.simulation.Simulation` this process belongs to
        self.sim = sim

    def step(self, state) -> None:  # pragma: no cover - interface
        """Advance ``state`` (an :class:`~abm.state.State`) by one step of this process's phase."""
        raise NotImplementedError

    def record(self, state, row: dict) -> None:
        """Add this subsystem's recorded scalars to ``row``."""

    def endpoints(self, state, out: dict) -> None:
        """Add this subsystem's per-run endpoints to ``out`` (called once, at the end)."""
