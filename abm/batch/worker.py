"""What a worker does with one run: :func:`execute` (any executor) plus local-pool set-up.

:func:`execute` takes a task dict (from :meth:`RunSpec.task`: config tables,
seed, output path, resume flag, Numba threads), calls
:func:`abm.io.run.run_to_file` and returns a small result dict; it never
raises for a failing run: the error becomes one line of text. Runs in one
process are serialised by a lock, so a Dask worker with several threads
stays correct (use one thread per worker process for speed).

Local process-pool workers also get :func:`init_local_worker`:

* a session of their own (``os.setsid``, unless the pool says otherwise), so
  that Linux's autogroup scheduling gives each worker its own CPU share on a
  busy machine instead of one share for the whole pool (see
  :mod:`abm.batch.executors`);
* a cap on Numba threads (``cores // workers``), whatever a task asks for;
* SIGINT (Ctrl-C in the terminal, which reaches the workers through the batch
  process, or the whole process group without their own session) only sets a
  stop flag; the run in progress checks it after every step (a writer added
  through ``run_to_file(extra_writers=...)``) and stops there, so the writer
  closes the ``.part`` cleanly and ``--resume`` continues it from its last
  checkpoint; an idle worker stops taking runs. Raising from the signal
  handler itself could land in a garbage-collector callback, where Python
  prints and swallows it.
* a watchdog thread notices when the parent process has died (``kill -9``),
  stops the run the same way and exits, so no orphan keeps writing a file
  that a resumed batch is about to write.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

from abm.batch.manifest import one_line

_log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_STATE = {"active": False, "stop": False, "max_threads": None}

#: Seconds to keep retrying a file that another (dying) process still holds open.
LOCK_RETRY_S = 20.0


def _error_text(exc: BaseException) -> str:
    from abm.errors import AbmError
    msg = str(exc).strip()
    if isinstance(exc, AbmError):
        return one_line(f"{type(exc).__name__}: {msg}")
    return one_line(f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__)


def _utc() -> str:
    import datetime as dt
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def execute(task: dict) -> dict:
    """Run one task; return ``{index, run_id, status, error, duration_s, cpu_s, ...}``.

    ``status`` is ``"done"``, ``"failed"`` (with ``error``) or
    ``"interrupted"`` (Ctrl-C or parent death; the ``.part`` is kept).
    """
    with _LOCK:
        return _execute(task)


def _execute(task: dict) -> dict:
    started = _utc()
    t0 = time.perf_counter()
    c0 = time.process_time()
    out = {"index": task["index"], "run_id": task["run_id"], "status": "failed", "error": "",
           "duration_s": 0.0, "cpu_s": 0.0, "file": Path(task["path"]).name, "started": started,
           "finished": "", "worker": f"{socket.gethostname()}:{os.getpid()}",
           "resumed_from": None, "messages": []}
    if _STATE["stop"]:
        out.update(status="interrupted", error="interrupted before it started")
        return out
    _STATE["active"] = True
    _log.debug("%s started on %s", task["run_id"], out["worker"])
    try:
        out.update(_run(task, out["messages"]))
        out["status"] = "done"
    except KeyboardInterrupt:
        out.update(status="interrupted", error="interrupted; the .part file is kept and "
                                               "'abm batch CONFIG --resume' continues it")
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, the batch goes on
        out.update(status="failed", error=_error_text(exc))
    finally:
        _STATE["active"] = False
    out["duration_s"] = time.perf_counter() - t0
    out["cpu_s"] = time.process_time() - c0   # CPU of this worker process during the run
    out["finished"] = _utc()
    return out


def _run(task: dict, messages: list) -> dict:
    from abm.config import config_from_dict
    from abm.errors import FileFormatError
    from abm.io.run import run_to_file
    from abm.io.checkpoint import checkpoint_files
    from abm.io.h5file import part_path
    from abm.kernels.jit import set_threads

    cfg = config_from_dict(task["config"], file=f"run {task['run_id']}")
    if cfg.run.seed != task["seed"]:
        raise RuntimeError(f"task seed {task['seed']} differs from config run.seed {cfg.run.seed}")
    threads = task.get("threads") or cfg.run.threads
    if _STATE["max_threads"]:   # a local pool worker: workers x threads <= cores
        threads = min(threads, _STATE["max_threads"])
    set_threads(threads)
    path = Path(task["path"])
    log = messages.append
    stop = [(1, _stop_if_asked)]   # checked after every step
    deadline = time.monotonic() + LOCK_RETRY_S
    while True:
        try:
            if task.get("resume") and (part_path(path).exists() or checkpoint_files(path)):
                try:
                    res = run_to_file(cfg, path=path, resume=True, log=log, extra_writers=stop)
                    return {"resumed_from": res.resumed_from}
                except FileFormatError as exc:
                    if "lock" in str(exc).lower():
                        raise
                    log(f"could not resume {part_path(path).name} ({one_line(exc)}); "
                        "starting it again")
                except Exception as exc:  # noqa: BLE001 - a fresh run gives the same result
                    log(f"could not resume {part_path(path).name} ({_error_text(exc)}); "
                        "starting it again")
            run_to_file(cfg, path=path, log=log, extra_writers=stop)
            return {}
        except FileFormatError as exc:
            # a killed batch's orphaned worker may still hold the .part for a moment
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# ----------------------------------------------------------------------------
# local process-pool workers
# ----------------------------------------------------------------------------


def _stop_if_asked(sim) -> None:
    """Per-step writer: end the run (with a checkpoint, through run_to_file) once a stop was
    asked."""
    if _STATE["stop"]:
        from abm.io.run import RunInterrupted
        raise RunInterrupted(signal.SIGINT, sim.state.step, sim.state.time_day)


def _on_sigint(signum, frame):
    _STATE["stop"] = True


def _watch_parent(ppid: int, poll_s: float = 0.2) -> None:
    while os.getppid() == ppid:
        time.sleep(poll_s)
    _STATE["stop"] = True
    if _STATE["active"]:
        deadline = time.monotonic() + 30.0
        while _STATE["active"] and time.monotonic() < deadline:
            time.sleep(0.05)
    os._exit(1)


def init_local_worker(threads: int | None = None, max_threads: int | None = None,
                      own_session: bool = False) -> None:
    """Initializer of local pool processes: session, SIGINT handling, parent watchdog,
    threads (``threads`` now, at most ``max_threads`` for every run)."""
    if own_session and hasattr(os, "setsid"):
        try:
            os.setsid()
        except OSError:   # already a session or group leader: keep the caller's
            pass
    _STATE["max_threads"] = int(max_threads) if max_threads else None
    if threads and max_threads:
        threads = min(int(threads), int(max_threads))
    signal.signal(signal.SIGINT, _on_sigint)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True,
                     name="abm-parent-watchdog").start()
    if threads:
        from abm.kernels.jit import set_threads
        set_threads(threads)


def serve(conn, threads: int | None = None, max_threads: int | None = None,
          own_session: bool = False) -> None:
    """Main loop of a local pool worker: ``("execute", task)`` / ``("ping", options)``
    messages in, results out, until ``None`` or the pipe closes."""
    init_local_worker(threads, max_threads, own_session)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if msg is None:
            return
        kind, arg = msg
        result = execute(arg) if kind == "execute" else ping(**(arg or {}))
        # after a failed write HDF5 may hold the file it could not flush in a broken
        # state: this process retires and the pool starts a fresh one
        retire = kind == "execute" and "StorageError" in str(result.get("error", ""))
        if retire:
            result["retire"] = True
        conn.send(result)
        if retire:
            os._exit(0)


#: The run :func:`prime_kernels` makes: a few steps over day 0 (infusion) on a tiny
#: patch, with snapshots and checkpoints, so that every kernel of a full run is loaded.
_PRIME_RUN = {
    "run": {"seed": 1, "start_day": -0.05, "end_day": 0.05, "snapshot_every_h": 1.0,
            "checkpoint_every_h": 1.0},
    "lattice": {"shape": [16, 16]},
    "tumour": {"initial_cells": 20},
}


def prime_kernels() -> float:
    """Load the compiled kernels (from the Numba cache) with a tiny run; return its seconds.

    A fresh process loads each kernel on its first call, about a second of
    CPU in all; doing it here keeps that out of the first real run. Best
    effort: a failure only means the first run pays instead.
    """
    import tempfile
    t0 = time.perf_counter()
    try:
        from abm.config import config_from_dict
        from abm.io.run import run_to_file
        from abm.kernels.jit import set_threads
        before = set_threads(None)
        set_threads(1)
        try:
            with tempfile.TemporaryDirectory(prefix="abm-prime-") as tmp:
                run_to_file(config_from_dict(_PRIME_RUN), path=Path(tmp) / "prime.h5",
                            log=lambda m: None)
        finally:
            set_threads(before)
    except Exception as exc:  # noqa: BLE001 - best effort
        _log.debug("priming the kernels failed: %s", _error_text(exc))
    return time.perf_counter() - t0


def ping(_=None, prime: bool = False) -> int:
    """Import what a run needs (``prime``: and load its kernels) and return the pid
    (executors use it to start workers)."""
    import abm.io.run  # noqa: F401
    import abm.simulation  # noqa: F401
    if prime:
        prime_kernels()
    time.sleep(0.2)   # so that each of several pings lands on its own worker
    return os.getpid()


__all__ = ["execute", "init_local_worker", "ping", "prime_kernels", "serve"]
