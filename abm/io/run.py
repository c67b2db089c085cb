"""Run one simulation into one file, fresh or resumed (what ``abm run`` does).

>>> from abm.config import load_config
>>> from abm.io.run import run_to_file
>>> result = run_to_file(load_config("configs/default.toml"))   # doctest: +SKIP
>>> result.path                                                 # doctest: +SKIP
PosixPath('runs/default/default_seed20261121.h5')

Resume: ``run_to_file(config, resume=True)`` reopens ``<file>.part`` of an
interrupted run, truncates every group back to its latest checkpoint,
restores the state and continues; the finished file equals, dataset by
dataset, the file of an uninterrupted run with the same seed. With
``from_step=N`` it restarts from the checkpoint at step N instead (of the
``.part``, or of the completed file when there is no ``.part``; keep every
checkpoint with ``keep_checkpoints=True`` to be able to pick any).
"""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from abm.build import build_simulation
from abm.config import Config
from abm.errors import ConfigError, FileFormatError
from abm.io import checkpoint as ck
from abm.io.h5file import (PART_SUFFIX, is_storage_failure, part_path, quiet_failed_deallocs,
                           storage_error)
from abm.io.warmup import start as start_warmup
from abm.io.writer import DamagedRunError, RunWriter
from abm.kernels.jit import compile_stats
from abm.logs import Say

_log = logging.getLogger(__name__)

#: Config keys that may differ between a run and its resume (no effect on results).
RESUME_MAY_DIFFER = (("run", "threads"), ("output", "dir"))


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal at a step boundary, after writing a checkpoint."""

    def __init__(self, signum: int, step: int | None = None, day: float | None = None):
        super().__init__(signum)
        self.signum = int(signum)
        self.step = step
        self.day = day

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


#: The signal that asked the run in this process to stop (None: none).
_STOP: dict = {"signum": None}


def request_stop(signum: int = signal.SIGINT) -> None:
    """Ask the run in progress to stop after its current step (with a checkpoint)."""
    _STOP["signum"] = int(signum)


def clear_stop() -> None:
    _STOP["signum"] = None


def _on_signal(signum, frame):
    if _STOP["signum"] is not None:   # a second signal: stop at once
        raise KeyboardInterrupt
    request_stop(signum)


def install_stop_handlers(signals=(signal.SIGINT, signal.SIGTERM)) -> dict:
    """Let SIGINT and SIGTERM stop a run cleanly at the next step (main thread only).

    Returns the previous handlers, for :func:`restore_handlers`.
    """
    clear_stop()
    previous = {}
    for sig in signals:
        try:
            previous[sig] = signal.signal(sig, _on_signal)
        except ValueError:   # not the main thread: signals keep their handlers
            break
    return previous


def restore_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    clear_stop()


def stop_if_requested(sim) -> None:
    """Per-step writer: raise :class:`RunInterrupted` once a stop was requested."""
    if _STOP["signum"] is not None:
        raise RunInterrupted(_STOP["signum"], sim.state.step, sim.state.time_day)


@dataclass
class RunResult:
    path: Path
    sim: object
    timings: dict = field(default_factory=dict)
    resumed_from: int | None = None


def output_path(config: Config, seed: int, out_dir=None) -> Path:
    """``<out_dir>/<run.name>/<run.name>_seed<seed>.h5`` (out_dir defaults to ``output.dir``)."""
    base = Path(out_dir) if out_dir is not None else Path(config.output.dir)
    name = config.run.name
    return base / name / f"{name}_seed{seed}.h5"


def find_resumable(config: Config, out_dir=None, seed: int | None = None) -> Path:
    """The final path of the run to resume (its ``.part`` or, failing that, its ``.h5``)."""
    seed = seed if seed is not None else config.run.seed
    if seed is not None:
        return output_path(config, seed, out_dir)
    folder = output_path(config, 0, out_dir).parent
    name = config.run.name
    for pattern in (f"{name}_seed*.h5{PART_SUFFIX}", f"{name}_seed*.h5{ck.FILE_INFIX}*",
                    f"{name}_seed*.h5"):
        found = sorted({_final_name(p) for p in folder.glob(pattern)})
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ConfigError(f"{len(found)} runs named {name!r} in {folder} "
                              f"({', '.join(f.name for f in found[:3])}, ...); give --seed")
    raise FileFormatError(f"{folder}: no interrupted run named {name!r} to resume")


def _final_name(p: Path) -> Path:
    """The final ``.h5`` path of a ``.part`` or checkpoint file (or of itself)."""
    name = p.name
    if name.endswith(PART_SUFFIX):
        name = name[: -len(PART_SUFFIX)]
    elif ck.FILE_INFIX in name:
        name = name[: name.index(ck.FILE_INFIX)]
    return p.with_name(name)


def _check_same_config(given: Config, stored: Config, path: Path) -> None:
    a, b = given.to_dict(), stored.to_dict()
    if given.run.seed is None:
        a["run"]["seed"] = b["run"]["seed"]
    for sec, key in RESUME_MAY_DIFFER:
        a[sec].pop(key, None)
        b[sec].pop(key, None)
    if a == b:
        return
    diffs = [f"{s}.{k}" for s in b for k in b[s]
             if json.dumps(a.get(s, {}).get(k)) != json.dumps(b[s][k])]
    raise ConfigError(f"the config differs from the one of the run being resumed in {path} "
                      f"(keys: {', '.join(diffs[:5]) or 'sections'}); resume with the same config")


def _checkpoint_and_close(writer: RunWriter, sim) -> None:
    """On a stop request: a checkpoint at this step (unless one is there), then close."""
    try:
        if ck.checkpoint_name(sim.state.step) not in writer.h5["checkpoint"]:
            writer.checkpoint(sim, interrupt=True)
    except Exception as exc:
        writer.close(quiet=True)
        if is_storage_failure(exc):
            raise storage_error(exc, writer.tmp) from None
        raise
    writer.close()


def _open(config, *, out_dir, path, seed, resume, from_step, keep_checkpoints, processes,
          flush_every_s, say, write_thread=True):
    """``(writer, sim, final path, resumed_from)`` of a fresh or resumed run."""
    if resume:
        final = Path(path) if path is not None else find_resumable(config, out_dir, seed)
        try:
            writer, sim = RunWriter.resume(
                final, from_step=from_step, processes=processes, flush_every_s=flush_every_s,
                check_config=lambda stored, where: _check_same_config(config, stored, where),
                log=say.warning, write_thread=write_thread)
        except DamagedRunError as exc:
            if from_step is not None:
                raise
            # no checkpoint file: the run never got past its first checkpoint, or was
            # written by an older abm; starting again loses nothing that can be recovered
            say.warning(f"{exc}; starting the run again")
            path = final
        else:
            say.warning(f"resuming {writer.tmp} from step {sim.state.step} "
                        f"(day {sim.state.time_day:g}) of {sim.n_steps}")
            return writer, sim, final, sim.state.step
    elif from_step is not None:
        raise ConfigError("from_step needs resume=True (abm run --resume --from-step N)")
    sim = build_simulation(config, seed=seed, processes=processes)
    final = Path(path) if path is not None else output_path(config, sim.seed, out_dir)
    if part_path(final).exists() and not resume:
        say.warning(f"overwriting the interrupted run {part_path(final)} "
                    "(use --resume to continue it)")
    writer = RunWriter(final, sim, keep_checkpoints=keep_checkpoints,
                       flush_every_s=flush_every_s, write_thread=write_thread).create()
    return writer, sim, final, None


def run_to_file(config: Config, *, out_dir=None, path=None, seed: int | None = None,
                resume: bool = False, from_step: int | None = None,
                keep_checkpoints: bool = False, processes=None, progress: bool | str = False,
                flush_every_s: float = 10.0, extra_writers=(), log=None,
                warmup: bool | int = False, write_thread: bool = True) -> RunResult:
    """Simulate one run to ``path`` (default :func:`output_path`), or resume one.

    Args:
        config: resolved config.
        out_dir: output directory (default ``config.output.dir``).
        path: explicit output file (overrides ``out_dir``).
        seed: overrides ``config.run.seed``.
        resume: continue the interrupted run of this config from its latest
            checkpoint (or from ``from_step``).
        from_step: with ``resume``, the checkpoint step to restart from.
        keep_checkpoints: keep every checkpoint in the file, not only the latest.
        processes: process classes (default: the full model).
        progress: report progress: a bar on a terminal, else a log line every
            10 % of the run or 30 s; ``"lines"``: log lines only (see
            :mod:`abm.progress`).
        flush_every_s, write_thread: see :class:`~abm.io.writer.RunWriter`.
        extra_writers: ``(trigger, fn)`` pairs added after the file writers.
        log: callable for one-line messages (default: the ``abm.io.run`` logger).
        warmup: on an empty Numba cache, compile kernels in helper processes
            while this one builds the simulation and takes its first step
            (:mod:`abm.io.warmup`; `abm run` sets it): True for one helper per
            idle CPU beyond the first (at most 3), or the number of helpers.
    """
    say = Say(_log, log)
    t_start = time.perf_counter()
    quiet_failed_deallocs()
    # helpers end after the first step; if this call fails they finish their one step (or die
    # with this process: they are daemonic)
    warm = (start_warmup(config, seed, helpers=None if warmup is True else int(warmup))
            if warmup else None)
    try:
        writer, sim, final, resumed_from = _open(
            config, out_dir=out_dir, path=path, seed=seed, resume=resume, from_step=from_step,
            keep_checkpoints=keep_checkpoints, processes=processes, flush_every_s=flush_every_s,
            say=say, write_thread=write_thread)
    except OSError as exc:
        raise storage_error(exc, getattr(exc, "filename", None) or
                            (path or output_path(config, seed or 0, out_dir).parent)) from None
    writer.attach()
    for trigger, fn in extra_writers:
        sim.add_writer(trigger, fn)
    sim.add_writer(1, stop_if_requested)   # last: after every writer of the step
    t_setup = time.perf_counter() - t_start

    compile_s = 0.0
    try:
        if sim.state.step < sim.n_steps:
            if sim.state.step == 0:
                sim.fire_writers()
            t0 = time.perf_counter()
            sim.step()
            compile_s = time.perf_counter() - t0
            _log.debug("first step (Numba compile or cache load included) took %.1f s", compile_s)
            if warm is not None:
                warm.stop()
            sim.fire_writers()
            sim.run(progress=progress)
    except RunInterrupted:
        _checkpoint_and_close(writer, sim)
        raise
    except BaseException as exc:
        if warm is not None:
            warm.stop()
        writer.close(quiet=True)
        if isinstance(exc, Exception) and is_storage_failure(exc):
            raise storage_error(exc, writer.tmp) from None
        raise
    stats = compile_stats()
    timings = {
        "wall_setup_s": t_setup,
        "wall_compile_s": compile_s,
        "wall_simulate_s": sim.timings["simulate_s"],
        "wall_write_s": writer.write_s,
        "wall_write_background_s": writer.background_s,
        "wall_record_s": writer.record_s,
        "numba_cache_hits": int(stats["cache_hits"]),
        "numba_cache_misses": int(stats["cache_misses"]),
    }
    t_total_before_finish = time.perf_counter() - t_start
    t0 = time.perf_counter()
    try:
        out = writer.finish({**timings, "wall_total_s": t_total_before_finish})
    except Exception as exc:
        writer.close(quiet=True)
        if is_storage_failure(exc):
            raise storage_error(exc, writer.path) from None
        raise
    timings["wall_write_s"] += time.perf_counter() - t0
    timings["wall_total_s"] = time.perf_counter() - t_start
    return RunResult(out, sim, timings, resumed_from)
