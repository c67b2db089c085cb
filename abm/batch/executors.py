"""Where runs execute: a local process pool (default) or a Dask distributed cluster.

Both executors run the same function, :func:`abm.batch.worker.execute`, on
the same task dicts, so a run's file does not depend on the executor. They
share a small interface used by :func:`abm.batch.runner.run_batch`:

* ``capacity``: how many tasks to keep submitted at once;
* ``submit(task) -> future``; ``wait(futures, timeout) -> done futures``;
  ``result(future) -> dict`` (raises if the worker died);
* ``interrupt()``: ask running tasks to stop cleanly (Ctrl-C);
* ``close(kill=False)``; both are context managers.

Local pool: ``concurrent.futures.ProcessPoolExecutor`` with the ``spawn``
start method (no inherited threads or open HDF5 handles), ``workers`` processes
(default: all cores), each running one run at a time with ``threads`` Numba
threads (default: the run config's ``run.threads``, 1 unless set). Exactly ``workers`` tasks are
in flight, so a run marked ``running`` in the manifest is really running.

Dask: ``DaskExecutor(address="tcp://host:8786")`` connects to a running
scheduler (a SLURM cluster from dask-jobqueue, Kubernetes, ``dask scheduler`` +
``dask worker`` by hand); ``DaskExecutor(local_workers=N)`` starts a
``LocalCluster`` of N single-threaded worker processes on the loopback
interface. Every task is submitted at once (so adaptive clusters see the
whole queue and scale); ``running`` then means "submitted".
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import signal
import time
import uuid

_log = logging.getLogger(__name__)


class LocalPool:
    """A local process pool.

    Args:
        workers: processes (default: ``os.cpu_count()``).
        threads: Numba threads per run (default: the run config's ``run.threads``).
        context: multiprocessing start method (``"spawn"`` or ``"forkserver"``).
    """

    kind = "local"

    def __init__(self, workers: int | None = None, threads: int | None = None,
                 context: str = "spawn"):
        from abm.batch.worker import init_local_worker
        cores = os.cpu_count() or 1
        self.workers = max(1, int(workers or cores))
        self.threads = int(threads) if threads else None
        self._context = context
        self._init = init_local_worker
        self._pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.workers,
                                      mp_context=mp.get_context(self._context),
                                      initializer=self._init, initargs=(self.threads,))

    def restart(self) -> None:
        """Replace a broken pool (a worker process died) by a fresh one."""
        _log.debug("restarting the %s", self.describe())
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    @property
    def capacity(self) -> int:
        return self.workers

    def describe(self) -> str:
        threads = f" x {self.threads} thread{'s' if self.threads != 1 else ''}" \
            if self.threads else ""
        return f"local pool of {self.workers} process{'es' if self.workers != 1 else ''}{threads}"

    def warm_up(self) -> None:
        """Start every worker process (so that timing excludes process start-up)."""
        from abm.batch.worker import ping
        list(self._pool.map(ping, range(self.workers)))

    def submit(self, task: dict):
        from abm.batch.worker import execute
        return self._pool.submit(execute, task)

    def wait(self, futures, timeout: float):
        done, _ = cf.wait(list(futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return done

    def result(self, future) -> dict:
        return future.result()

    def pids(self) -> list[int]:
        procs = getattr(self._pool, "_processes", None) or {}
        return [p for p in procs]

    def interrupt(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                pass

    def close(self, kill: bool = False) -> None:
        _log.debug("closing the %s%s", self.describe(), " (killing its workers)" if kill else "")
        if kill:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self._pool.shutdown(wait=not kill, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class InProcess:
    """Runs each task in the calling process, one at a time (``abm batch --workers 0``).

    For debugging (breakpoints, profilers) and tiny batches: no process start-up,
    and Ctrl-C interrupts the run in progress directly.
    """

    kind = "inprocess"
    capacity = 1

    def __init__(self, threads: int | None = None):
        self.threads = int(threads) if threads else None

    def describe(self) -> str:
        return "this process (no worker pool)"

    def warm_up(self) -> None:
        pass

    def submit(self, task: dict):
        import threading
        from abm.batch import worker
        fut: cf.Future = cf.Future()
        worker._STATE["stop"] = False
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, worker._on_sigint) if main else None
        try:   # Ctrl-C stops the run at the next step: an "interrupted" result
            fut.set_result(worker.execute(task))
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        return fut

    def wait(self, futures, timeout: float):
        return {f for f in futures if f.done()}

    def result(self, future) -> dict:
        return future.result()

    def interrupt(self) -> None:
        pass

    def close(self, kill: bool = False) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DaskExecutor:
    """Runs on a Dask distributed cluster.

    Args:
        address: scheduler address (``tcp://host:port``); or
        local_workers: start a ``LocalCluster`` of this many worker processes
            (one thread each) on 127.0.0.1.
        client: an existing ``distributed.Client`` (not closed by :meth:`close`).
        threads: Numba threads per run (default: the run config's ``run.threads``).
    """

    kind = "dask"

    def __init__(self, address: str | None = None, local_workers: int | None = None,
                 client=None, threads: int | None = None, timeout_s: float = 30.0):
        import distributed
        self._distributed = distributed
        self.threads = int(threads) if threads else None
        self._cluster = None
        self._own_client = client is None
        if client is not None:
            self.client = client
        elif local_workers:
            _log.debug("starting a Dask LocalCluster of %d workers", int(local_workers))
            self._cluster = distributed.LocalCluster(
                n_workers=int(local_workers), threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
            self.client = distributed.Client(self._cluster, set_as_default=False)
        elif address:
            _log.debug("connecting to the Dask scheduler at %s", address)
            try:
                self.client = distributed.Client(address, timeout=timeout_s,
                                                 set_as_default=False)
            except (OSError, TimeoutError) as exc:
                from abm.errors import AbmError
                raise AbmError(f"cannot reach the Dask scheduler at {address} "
                               f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                               ) from None
        else:
            raise ValueError("DaskExecutor needs address, local_workers or client")
        self._token = uuid.uuid4().hex[:8]

    @property
    def capacity(self) -> int:
        return 1 << 30

    def n_threads(self) -> int:
        return int(sum(self.client.nthreads().values()))

    def describe(self) -> str:
        where = "LocalCluster" if self._cluster is not None else "Dask scheduler"
        return (f"{where} {self.client.scheduler.address} ({len(self.client.nthreads())} "
                f"workers, {self.n_threads()} threads)")

    def warm_up(self) -> None:
        from abm.batch.worker import ping
        self.client.run(ping)

    def submit(self, task: dict):
        from abm.batch.worker import execute
        return self.client.submit(execute, task, pure=False, retries=0,
                                  key=f"abm-run-{task['run_id']}-{self._token}")

    def wait(self, futures, timeout: float):
        """Futures of ``futures`` that are finished, waiting up to ``timeout`` for one."""
        futures = list(futures)
        deadline = time.monotonic() + timeout
        while True:
            done = {f for f in futures if f.done()}
            if done or not futures or time.monotonic() >= deadline:
                return done
            time.sleep(0.02)

    def result(self, future) -> dict:
        return future.result()

    def interrupt(self) -> None:
        """Dask cannot stop a running task: queued runs are cancelled in :meth:`close`."""

    def close(self, kill: bool = False, futures=()) -> None:
        _log.debug("closing the Dask client%s",
                   f" ({len(futures)} runs cancelled)" if futures else "")
        try:
            if futures:
                self.client.cancel(list(futures))
        finally:
            if self._own_client:
                self.client.close()
            if self._cluster is not None:
                self._cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_executor(workers: int | None = None, scheduler: str | None = None,
                  dask_local: int | None = None, threads: int | None = None):
    """The executor for CLI-style options (a local pool unless a Dask option is given)."""
    if scheduler:
        return DaskExecutor(address=scheduler, threads=threads)
    if dask_local:
        return DaskExecutor(local_workers=dask_local, threads=threads)
    if workers == 0:
        return InProcess(threads=threads)
    return LocalPool(workers=workers, threads=threads)


__all__ = ["LocalPool", "InProcess", "DaskExecutor", "make_executor"]
