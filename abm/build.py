"""Composition root: assembles a full-model simulation from a configuration.

The only module that knows both the configuration and the model's list of
processes; everything below it (core, model, config) stays unaware of the
others' assembly, and io, batch and the command line build runs through it.

>>> from abm.config import load_config
>>> from abm.build import build_simulation
>>> sim = build_simulation(load_config("configs/default.toml"), seed=7)
>>> sim.run(240)           # one day at dt = 6 min
"""

from __future__ import annotations

from abm.config import Config
from abm.model.agents import AGENT_PROCESSES
from abm.model.field_process import FieldProcess
from abm.model.initial import place_initial_cells
from abm.model.patient import PATIENT_PROCESSES
from abm.model.relift import PatchRelift
from abm.process import Process
from abm.simulation import Simulation


def default_processes(config: Config) -> list[type[Process]]:
    """The processes of a full model run, in registration order within each phase."""
    return [PatchRelift, *AGENT_PROCESSES, FieldProcess, *PATIENT_PROCESSES]


def build_simulation(config: Config, seed: int | None = None, processes=None,
                     initialise: bool = True) -> Simulation:
    """A simulation of ``config``: its state, initial conditions and processes.

    Args:
        config: resolved configuration.
        seed: overrides ``config.run.seed``; drawn and recorded when both are absent.
        processes: process classes to use instead of :func:`default_processes`.
        initialise: place the initial cells (False: an empty state, e.g. to
            restore a checkpoint into it).
    """
    classes = processes if processes is not None else default_processes(config)
    return Simulation(config, classes, seed=seed,
                      initial_conditions=place_initial_cells if initialise else None)
