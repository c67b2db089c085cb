"""Kernel and end-to-end benchmarks, run by a command, never as unit tests.

``python -m benchmarks [names...] [--quick] [--out DIR]`` runs the modules in
:data:`REGISTRY` and writes ``<out>/<name>.json`` plus a markdown table to
stdout. To add a benchmark, write a module with

``def run(quick: bool) -> dict``

returning ``{"title": str, "columns": [str, ...], "rows": [dict, ...]}``
(optionally ``"notes": [str, ...]`` and any extra JSON-able keys) and add
one line to :data:`REGISTRY`. The helpers below time a callable (compile
apart from warm runs, median and spread of wall and CPU time) and describe
the machine. The runner also writes ``<out>/RESULTS.md`` with every table
and the machine (CPU, cores, versions, load average before and after).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

#: benchmark name -> module that defines ``run(quick) -> dict``
REGISTRY: dict[str, str] = {
    "agents": "benchmarks.bench_agents",
    "batch": "benchmarks.bench_batch",
    "cache": "benchmarks.bench_cache",
    "diffusion": "benchmarks.bench_diffusion",
    "patient": "benchmarks.bench_patient",
    "trial": "benchmarks.bench_trial",
}

#: Order of the default run (fast kernels first; the cold-compile benchmark last).
DEFAULT_ORDER = ("diffusion", "agents", "patient", "batch", "cache")

#: Run only when named (minutes per patient: ``python -m benchmarks trial --patients N``).
ON_REQUEST = frozenset({"trial"})


def time_call(fn: Callable[[], object], reps: int, warmup: int = 1) -> dict:
    """Time ``fn()``: the first call apart (compile or cache load), then ``reps`` warm calls.

    Returns seconds: ``first`` (first call), ``median``, ``mean``, ``min``, ``max``,
    ``q1``/``q3`` (quartiles) of the warm calls' wall time, ``cpu_median`` and
    ``cpu_min`` (process CPU time, all threads; unlike wall time it does not
    count time the process waited for a core held by someone else), and ``reps``.
    """
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        fn()
    times, cpu = [], []
    for _ in range(max(1, reps)):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    times.sort()
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {"first": first, "median": statistics.median(times), "mean": statistics.fmean(times),
            "min": times[0],
            "max": times[-1], "q1": q[0], "q3": q[2], "reps": len(times),
            "cpu_median": statistics.median(cpu), "cpu_min": min(cpu)}


def machine_info() -> dict:
    """CPU, core count, library versions, Numba threading, load average."""
    import numba
    import numpy

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = "not initialised"
    mem_gb = None
    try:
        with open("/proc/meminfo") as fh:
            mem_gb = int(fh.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    try:
        from abm.version import __version__ as abm_version
    except ImportError:  # pragma: no cover
        abm_version = None
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb,
        "platform": platform.platform(), "python": platform.python_version(),
        "numpy": numpy.__version__, "numba": numba.__version__, "abm": abm_version,
        "numba_threads_max": numba.config.NUMBA_NUM_THREADS, "threading_layer": layer,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def markdown_table(columns: list[str], rows: list[dict]) -> str:
    """Rows (dicts) as a GitHub markdown table over ``columns``; floats to 3 significant digits."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


__all__ = ["REGISTRY", "DEFAULT_ORDER", "ON_REQUEST", "time_call", "machine_info", "markdown_table"]
