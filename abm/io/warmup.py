"""Compile a run's kernels in parallel when the Numba cache is empty.

The first run after installing the package, or after any kernel edit (the
cache folder is keyed by a hash of the kernel sources, see
:mod:`abm.kernels.jit`), compiles every kernel its first step needs before
that step can start. :func:`start` lets helper processes share that work:
each builds the same simulation and steps every process once on its own
throwaway state, in an order of its own (the first helper starts with the
agent phase, the others go through the phases in reverse, from different
places), so the helpers start on other kernels than the main process, which
runs its first step as usual. In the helpers the agent step only compiles
its tile update (most of its code) and leaves the rest of the agent step to
the main process, so that the largest compile is split in two. Everything
compiled lands in the shared on-disk cache, and no kernel is compiled twice:
a process that reaches a kernel another one is compiling waits for it and
loads it (the kernel's file lock in :mod:`abm.kernels.jit`).

Helpers start only when the cache folder holds no compiled kernel yet, the
JIT is on and another CPU is idle (:func:`default_helpers`); they use the
main process's thread count, so they compile the same kernel variants. A
helper that fails (for example a process whose step needs the state of an
earlier phase) just stops: its kernels are then compiled by whoever needs
them. :meth:`Warmup.stop` ends the helpers once the main process has taken
its first step.
"""

from __future__ import annotations

import atexit
import glob
import logging
import os
import pickle
import subprocess
import sys

from abm.kernels.jit import CACHE_DIR, JIT_DISABLED, set_threads

_log = logging.getLogger(__name__)

#: Most helper processes (the largest kernel, the agent pass, bounds the gain).
MAX_HELPERS = 3


def cache_is_empty(cache_dir: str = CACHE_DIR) -> bool:
    """Whether the Numba cache folder holds no compiled kernel (no index file) yet."""
    return not glob.glob(os.path.join(glob.escape(cache_dir), "*.nbi"))


def available_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def default_helpers() -> int:
    """Helper processes for this machine: one per idle CPU beyond the first, at most :data:`MAX_HELPERS`.

    Idle CPUs are the CPUs less the 1-minute load average (rounded): on a
    machine whose cores are all busy, a helper would only take CPU time from
    the main process (measured: no gain at a load of 9 on 2 CPUs).
    """
    cpus = available_cpus()
    try:
        idle = cpus - os.getloadavg()[0]
    except (AttributeError, OSError):   # no load average (Windows)
        idle = cpus
    return max(0, min(MAX_HELPERS, cpus - 1, round(idle)))


def phase_order(processes) -> list:
    """The processes in the order one step runs them (by phase, then registration order)."""
    from abm.process import PHASES
    return [p for phase in PHASES for p in processes if p.phase == phase]


def helper_order(processes, helper: int, helpers: int) -> list:
    """The order in which helper ``helper`` (0-based) of ``helpers`` steps the processes.

    The first helper takes the agent phase first (its kernels are the
    largest, and the main process needs them early), then the phases after
    it in step order, then those before it. The others go through the
    reverse of the phase order (the main process goes forward, so they meet
    in the middle), rotated by ``helper / helpers`` of its length.
    """
    order = phase_order(processes)
    if helper == 0:
        first = next((i for i, p in enumerate(order) if p.phase == "agents"), 0)
        return order[first:] + order[:first]
    rev = order[::-1]
    k = (helper * len(rev)) // max(1, helpers)
    return rev[k:] + rev[:k]


class _TileUpdateOnly:
    """Stands in for the agent-step kernel in a helper: compiles the tile update, runs nothing.

    The tile update holds most of the agent step's code; the main process
    compiles the rest of the agent step meanwhile and finds it in the cache
    (:func:`abm.kernels.cells_step.compile_tile_update`).
    """

    def __call__(self, *args):
        from abm.kernels import cells_step
        cells_step.compile_tile_update(args)
        return args[2]   # the row count, unchanged


def _helper(config, seed, threads: int, helper: int, helpers: int) -> None:
    """Body of one helper process: build the simulation, step each process once."""
    from abm.build import build_simulation
    from abm.kernels import cells_step

    set_threads(threads)
    stand_in = _TileUpdateOnly()
    cells_step.agent_step_kernel = lambda threads=None: stand_in   # this process only
    sim = build_simulation(config, seed=seed)
    # from step 1: the agent phase then skips its periodic table sort (done at step 0), whose
    # kernels the main process compiles while this one compiles the tile update
    sim.state.step = 1
    for proc in helper_order(sim.processes, helper, helpers):
        try:
            proc.step(sim.state)
        except Exception as exc:  # noqa: BLE001 - a helper only fills the cache
            _log.debug("warm-up helper %d: %s.step failed (%s)", helper, type(proc).__name__, exc)


#: What a helper process runs: its arguments come pickled on stdin, after the
#: parent's import path (so it imports the same package).
_CHILD = ("import pickle, sys; path, args = pickle.loads(sys.stdin.buffer.read()); "
          "sys.path[:0] = [p for p in path if p not in sys.path]; "
          "from abm.io.warmup import _helper; _helper(*pickle.loads(args))")


class Warmup:
    """Running helper processes; :meth:`stop` ends them."""

    def __init__(self, procs: list):
        self.procs = procs
        atexit.register(self.stop)

    def stop(self) -> None:
        """End the helpers that are still running (their finished work stays in the cache)."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        atexit.unregister(self.stop)


def start(config, seed=None, helpers: int | None = None) -> Warmup | None:
    """Start helper processes compiling ``config``'s kernels if the cache is empty, else None.

    ``helpers``: how many (default :func:`default_helpers`).
    """
    if JIT_DISABLED or not cache_is_empty():
        return None
    n = default_helpers() if helpers is None else int(helpers)
    if n <= 0:
        return None
    threads = set_threads(None)
    procs = []
    for i in range(n):
        payload = pickle.dumps((list(sys.path), pickle.dumps((config, seed, threads, i, n))))
        p = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.stdin.write(payload)
        p.stdin.close()
        procs.append(p)
    _log.debug("empty Numba cache: %d helper process(es) compiling kernels", n)
    return Warmup(procs)


def compile_kernels(config, threads: int = 1, helpers: int | None = None) -> dict:
    """Compile (or load) every kernel a run of ``config`` calls into the on-disk cache.

    What ``abm compile`` does, and ``make`` at installation: a throwaway
    simulation of ``config`` takes one step and assembles its time-series
    record before and after it (nothing is written), with :func:`start`'s
    helpers compiling alongside when the cache is empty. A later run of a
    config of the same kind (lattice dimension, thread count) then loads its
    kernels instead of compiling them. Returns the cache misses (compiled
    here) and hits (already compiled) of this call.
    """
    from abm.build import build_simulation
    from abm.kernels.jit import compile_stats

    set_threads(threads)
    before = compile_stats()
    helpers_running = start(config, helpers=helpers)
    try:
        sim = build_simulation(config)
        sim.record_row()     # the record's tallies are kernels of their own
        sim.step()
        sim.record_row()
    finally:
        if helpers_running is not None:
            helpers_running.stop()
    after = compile_stats()
    return {"compiled": after["cache_misses"] - before["cache_misses"],
            "loaded": after["cache_hits"] - before["cache_hits"]}


__all__ = ["Warmup", "start", "compile_kernels", "cache_is_empty", "default_helpers", "available_cpus",
           "phase_order", "helper_order", "MAX_HELPERS"]
