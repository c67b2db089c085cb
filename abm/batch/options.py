"""What every command that runs a batch shares: executor options and SIGTERM as Ctrl-C.

``abm batch``, ``abm sensitivity`` and ``abm calibrate`` all take
``--workers / --scheduler / --dask-local`` and ``--threads`` and stop cleanly
when a cluster's scheduler sends SIGTERM, exactly as on Ctrl-C (exit 143
instead of 130).
"""

from __future__ import annotations

import contextlib
import signal

from abm.errors import AbmError


def add_executor_options(parser) -> None:
    """``--workers / --scheduler / --dask-local`` (mutually exclusive) and ``--threads``."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="local worker processes (default: all cores; 0: run in this "
                            "process, for debugging)")
    where.add_argument("--scheduler", metavar="ADDR",
                       help="run on the Dask scheduler at ADDR (tcp://host:port), e.g. a "
                            "dask-jobqueue SLURMCluster's")
    where.add_argument("--dask-local", type=int, metavar="N",
                       help="start a Dask LocalCluster of N worker processes and run on it")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="Numba threads per run (default: the config's run.threads, 1)")


def check_executor_args(args) -> None:
    """A one-line error for a negative ``--workers`` or a ``--dask-local`` / ``--threads`` below 1."""
    if args.workers is not None and args.workers < 0:
        raise AbmError(f"--workers must be >= 0 (got {args.workers})")
    for name, v in (("--dask-local", args.dask_local), ("--threads", args.threads)):
        if v is not None and v < 1:
            raise AbmError(f"{name} must be >= 1 (got {v})")


def executor_from_args(args):
    """The executor the options ask for (None: run_batch's default local pool)."""
    from abm.batch.executors import make_executor
    check_executor_args(args)
    if args.workers is not None or args.scheduler or args.dask_local or args.threads:
        return make_executor(workers=args.workers, scheduler=args.scheduler,
                             dask_local=args.dask_local, threads=args.threads)
    return None


def close_quietly(executor) -> None:
    """Close an executor that may already be closed (after Ctrl-C)."""
    if executor is not None:
        try:
            executor.close()
        except Exception:  # noqa: BLE001 - already closed after Ctrl-C
            pass


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a cluster stopping the job) raises KeyboardInterrupt, as Ctrl-C does.

    Yields a list that holds the signal number once SIGTERM came; the previous
    handler is restored on exit. Outside the main thread nothing is installed.
    """
    terminated: list[int] = []

    def on_sigterm(signum, frame):
        terminated.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:   # not the main thread (called from Python)
        previous = None
    try:
        yield terminated
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


__all__ = ["add_executor_options", "check_executor_args", "executor_from_args", "close_quietly",
           "sigterm_as_interrupt"]
