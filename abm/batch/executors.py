"""Where runs execute: a local process pool (default) or a Dask distributed cluster.

Both executors run the same function, :func:`abm.batch.worker.execute`, on
the same task dicts, so a run's file does not depend on the executor. They
share a small interface used by :func:`abm.batch.runner.run_batch`:

* ``capacity``: how many tasks to keep submitted at once;
* ``submit(task) -> future``; ``wait(futures, timeout) -> done futures``;
  ``result(future) -> dict`` (raises if the worker died);
* ``interrupt()``: ask running tasks to stop cleanly (Ctrl-C);
* ``close(kill=False)``; both are context managers.

Local pool: ``workers`` processes started with the ``spawn`` method (no
inherited threads or open HDF5 handles; default: all cores), each with its own
pipe, each running one run at a time with ``threads`` Numba threads (default:
the run config's ``run.threads``, 1 unless set; capped at ``cores // workers``
so that workers x threads never oversubscribe the cores). The workers live
for the whole batch: imports and the Numba cache load happen once per worker,
not per run (:meth:`LocalPool.warm_up` does both ahead of time). Exactly
``workers`` tasks are in flight, so a run marked ``running`` in the manifest
is really running. A worker that dies fails only its own run, and a fresh one
takes its place.

Each local worker starts its own session (``os.setsid``; ``own_session=False``
keeps them in the caller's). On Linux with ``sched_autogroup`` (the default of
most distributions) the scheduler shares the CPU fairly between *sessions*
first, so on a busy machine N workers in the terminal's session get together
the CPU share of one process, and a 2-worker pool is no faster (slower, by its
overheads) than a 1-worker one. In sessions of their own they get a share each,
as processes do without autogroup. Ctrl-C in the terminal then reaches the
batch process only, which passes it on to the workers (:meth:`interrupt`); a
worker whose batch process dies stops by itself (its watchdog).

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
import threading
import uuid

_log = logging.getLogger(__name__)


class WorkerDied(RuntimeError):
    """The worker process running a task died (killed, out of memory, crashed)."""


class _Worker:
    """One worker process and the pipe its tasks and results go through."""

    def __init__(self, ctx, threads, max_threads=None, own_session=True):
        from abm.batch.worker import serve
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child, threads, max_threads, own_session),
                                daemon=True, name="abm-batch-worker")
        self.proc.start()
        child.close()
        self.future: cf.Future | None = None

    def send(self, msg) -> None:
        self.conn.send(msg)

    def death(self) -> str:
        code = self.proc.exitcode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        return f"the worker process {self.proc.pid} died ({how})"

    def stop(self, kill: bool) -> None:
        if kill and self.proc.is_alive():
            self.proc.kill()
        elif self.proc.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.proc.join(None if not kill else 5.0)
        self.conn.close()


class LocalPool:
    """A local pool of worker processes, each with its own pipe.

    A worker that dies (SIGKILL, out of memory) fails only the run it was
    running (its future raises :class:`WorkerDied`) and is replaced; the other
    workers and their runs go on. (``concurrent.futures.ProcessPoolExecutor``
    instead breaks as a whole and fails every run in flight.)

    Args:
        workers: processes (default: the cores this process may use).
        threads: Numba threads per run (default: the run config's ``run.threads``);
            at most ``cores // workers`` (at least 1), whatever asks for more.
        context: multiprocessing start method (``"spawn"`` or ``"forkserver"``).
        own_session: start each worker in a session of its own (see the module
            docstring: on a busy Linux machine with autogroup scheduling the
            workers otherwise share one process's CPU share).
    """

    kind = "local"

    def __init__(self, workers: int | None = None, threads: int | None = None,
                 context: str = "spawn", own_session: bool = True):
        cores = usable_cores()
        self.workers = max(1, int(workers or cores))
        #: Numba threads a run may use in a worker (workers x threads <= cores)
        self.max_threads = max(1, cores // self.workers)
        self.threads = int(threads) if threads else None
        if self.threads and self.threads > self.max_threads:
            _log.info("%d Numba threads per run x %d workers would oversubscribe the %d cores: "
                      "%d thread%s per run", self.threads, self.workers, cores,
                      self.max_threads, "s" if self.max_threads != 1 else "")
            self.threads = self.max_threads
        self.own_session = bool(own_session)
        self._ctx = mp.get_context(context)
        self._procs: list[_Worker] = []   # started on first use

    def _fill(self) -> None:
        self._procs = [w for w in self._procs if w.proc.is_alive() or w.future is not None]
        while len(self._procs) < self.workers:
            self._procs.append(_Worker(self._ctx, self.threads, self.max_threads,
                                       self.own_session))

    def restart(self) -> None:
        """Replace every worker by a fresh one (after Ctrl-C reached them)."""
        _log.debug("restarting the %s", self.describe())
        self.close(kill=True)

    @property
    def capacity(self) -> int:
        return self.workers

    def describe(self) -> str:
        threads = f" x {self.threads} thread{'s' if self.threads != 1 else ''}" \
            if self.threads else ""
        return f"local pool of {self.workers} process{'es' if self.workers != 1 else ''}{threads}"

    def warm_up(self) -> None:
        """Start every worker process and load the compiled kernels in each (a tiny run), so
        that timing excludes process start-up and the Numba cache load."""
        self._fill()
        for w in self._procs:
            w.send(("ping", {"prime": True}))
        for w in self._procs:
            w.conn.recv()

    def submit(self, task: dict):
        self._fill()
        idle = [w for w in self._procs if w.future is None and w.proc.is_alive()]
        if not idle:
            raise RuntimeError(f"all {self.workers} workers are busy")
        w = idle[0]
        fut: cf.Future = cf.Future()
        fut.set_running_or_notify_cancel()
        w.future = fut
        try:
            w.send(("execute", task))
        except OSError as exc:   # died between the check and the send
            w.future = None
            fut.set_exception(WorkerDied(f"{w.death()}: {exc}"))
        return fut

    def _collect(self, timeout: float) -> None:
        from multiprocessing.connection import wait
        busy = [w for w in self._procs if w.future is not None]
        if not busy:
            return
        ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout))
        for w in busy:
            if w.conn in ready or w.proc.sentinel in ready:
                fut, result = w.future, None
                try:
                    if w.conn.poll():
                        result = w.conn.recv()
                except (EOFError, OSError):
                    result = None
                if result is not None:
                    w.future = None
                    if isinstance(result, dict) and result.pop("retire", False):
                        w.proc.join(10.0)   # it exits: _fill replaces it
                        self._procs.remove(w)
                        w.conn.close()
                    fut.set_result(result)
                elif not w.proc.is_alive():
                    w.proc.join()
                    w.future = None
                    fut.set_exception(WorkerDied(w.death()))

    def wait(self, futures, timeout: float):
        futures = list(futures)
        done = {f for f in futures if f.done()}
        if not done:
            self._collect(timeout)
            done = {f for f in futures if f.done()}
        return done

    def result(self, future) -> dict:
        return future.result()

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._procs if w.proc.is_alive()]

    def interrupt(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                pass

    def close(self, kill: bool = False) -> None:
        _log.debug("closing the %s%s", self.describe(), " (killing its workers)" if kill else "")
        procs, self._procs = self._procs, []
        for w in procs:
            if w.future is not None and not w.future.done():
                w.future.cancel() or w.future.set_exception(WorkerDied("the pool was closed"))
            w.stop(kill)

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
        self._finished = threading.Event()   # set by every task that ends

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
        self.client.run(ping, prime=True)

    def submit(self, task: dict):
        from abm.batch.worker import execute
        fut = self.client.submit(execute, task, pure=False, retries=0,
                                 key=f"abm-run-{task['run_id']}-{self._token}")
        fut.add_done_callback(lambda _: self._finished.set())
        return fut

    def wait(self, futures, timeout: float):
        """Futures of ``futures`` that are finished, waiting up to ``timeout`` for one
        (blocking on an event that every submitted future sets when it ends, not polling)."""
        futures = list(futures)
        self._finished.clear()
        done = {f for f in futures if f.done()}
        if done or not futures:
            return done
        self._finished.wait(timeout)
        return {f for f in futures if f.done()}

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


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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


__all__ = ["LocalPool", "WorkerDied", "InProcess", "DaskExecutor", "make_executor",
           "usable_cores"]
