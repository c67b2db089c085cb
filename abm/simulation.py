"""Simulation: steps a :class:`~abm.state.State` in a fixed, documented order.

Subsystems are :class:`~abm.process.Process` objects, each stepped in one
phase of the step; writers and recorders are callables fired by triggers.
The simulation is given its processes: it knows nothing of the model, the
configuration's sections or files. :func:`abm.build.build_simulation`
assembles the full model.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Callable

from abm.process import PHASES, Process
from abm.state import State
from abm.triggers import Trigger, as_trigger

_log = logging.getLogger(__name__)


def resolve_seed(seed: int | None) -> int:
    """Return ``seed``, or a fresh random 63-bit seed when it is None."""
    return int(seed) if seed is not None else secrets.randbits(63)


class Simulation:
    """One virtual patient.

    Args:
        config: resolved configuration.
        processes: the :class:`~abm.process.Process` classes to step, in
            registration order within each phase; each is built with this
            simulation.
        seed: overrides ``config.run.seed``; if both are absent a seed is drawn
            and recorded in ``self.seed``.
        initial_conditions: called as ``initial_conditions(state)`` on the new,
            empty state before the processes are built (None: leave it empty,
            e.g. to restore a checkpoint into it).
    """

    def __init__(self, config, processes, seed: int | None = None,
                 initial_conditions: Callable[[State], None] | None = None):
        self.config = config
        self.seed = resolve_seed(seed if seed is not None else config.run.seed)
        self.state = State(config, self.seed)
        if initial_conditions is not None:
            initial_conditions(self.state)
        self.processes: list[Process] = [cls(self) for cls in processes]
        for p in self.processes:
            if p.phase not in PHASES:
                raise ValueError(f"{type(p).__name__}.phase must be one of {PHASES}")
        self._writers: list[tuple[Trigger, Callable[["Simulation"], None]]] = []
        self.timings = {"simulate_s": 0.0, "write_s": 0.0, "first_step_s": 0.0}
        #: the processes in step order (phases, then registration order), sorted once
        self._in_order = [p for phase in PHASES for p in self.processes if p.phase == phase]
        self._count_keys: dict[tuple, tuple] = {}

    @property
    def n_steps(self) -> int:
        return self.config.run.n_steps

    def add_writer(self, trigger, fn: Callable[["Simulation"], None]) -> None:
        """Call ``fn(sim)`` after every step on which ``trigger`` fires (int: every N steps)."""
        self._writers.append((as_trigger(trigger), fn))

    def record_row(self) -> dict:
        """One time-series record: time, step, cell counts and every process's scalars."""
        s = self.state
        row = {"time": s.time_day, "step": s.step}
        counts = s.counts()
        keys = self._count_keys.get(tuple(counts))
        if keys is None:
            keys = self._count_keys[tuple(counts)] = tuple(f"n_{k}" for k in counts)
        row.update(zip(keys, counts.values()))
        for p in self.processes:
            p.record(s, row)
        return row

    def endpoints(self) -> dict:
        """Per-run endpoints: final cell counts and every process's :meth:`Process.endpoints`."""
        out = {f"final_n_{k}": v for k, v in self.state.counts().items()}
        for p in self.processes:
            p.endpoints(self.state, out)
        return out

    def step(self) -> None:
        """Advance one ``dt`` (see :meth:`run` for the order)."""
        s = self.state
        for p in self._in_order:
            p.step(s)
        s.step += 1

    def fire_writers(self) -> None:
        t0 = time.perf_counter()
        for trig, fn in self._writers:
            if trig(self.state.step):
                fn(self)
        self.timings["write_s"] += time.perf_counter() - t0

    def run(self, steps: int | None = None, progress: bool | str = False) -> None:
        """Advance ``steps`` steps (default: to ``run.end_day``).

        ``progress``: True for a tqdm bar on a terminal and log lines otherwise,
        ``"lines"`` for log lines only (see :mod:`abm.progress`).

        Order of one step of length ``dt``::

            for each step:
                1. blood_to_tissue: CAR-T and monocyte extravasation at vessel
                   sites; cytokine exchange with plasma at vessel sites
                2. agents: sense, decide, act for every cell (engage, kill,
                   divide, die, move, secrete, take up)
                3. fields: sources and sinks, then implicit diffusion-decay of
                   all species together
                4. tissue_to_blood: patch efflux scaled by S = B / n_T0; blood
                   ODEs (cytokines, myeloid pool, CAR-T, lymphocytes,
                   metabolites, drugs)
                5. patient: physiology, brain barrier, clinician decisions,
                   CRS and ICANS grading, event log
                step += 1
                6. writers whose trigger fires at the new step: time-series
                   record, snapshot, checkpoint

        Writers are also fired once before the first step when the run starts
        at step 0, so the initial state is recorded.
        """
        if steps is None:
            steps = self.n_steps - self.state.step
        if self.state.step == 0:
            self.fire_writers()
        prog = None
        if progress:
            from abm.progress import Progress
            prog = Progress(self.n_steps, done=self.state.step, describe=self._progress_line,
                            logger=_log, desc=self.config.run.name, unit="step",
                            bar=False if progress == "lines" else None)
        for i in range(steps):
            t0 = time.perf_counter()
            self.step()
            dt = time.perf_counter() - t0
            if self.state.step == 1:
                self.timings["first_step_s"] = dt
            self.timings["simulate_s"] += dt
            self.fire_writers()
            if prog is not None:
                prog.update(1, postfix=f"day={self.state.time_day:.1f}" if i % 24 == 0 else None)
        if prog is not None:
            prog.close()

    def _progress_line(self, prog) -> str:
        """One progress line: day, percent, steps/s and time left."""
        from abm.progress import format_eta
        r = self.config.run
        rate = prog.rate_per_s
        return (f"{r.name}: day {self.state.time_day:.2f} of {r.end_day:g} "
                f"({100 * prog.fraction:.0f} %, step {prog.done}/{prog.total}), "
                f"{'?' if rate != rate else f'{rate:.0f}'} steps/s, "
                f"ETA {format_eta(prog.eta_s)}")
