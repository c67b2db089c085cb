"""Kernel and end-to-end benchmarks, run by a command, never as unit tests.

``python -m benchmarks [names...] [--quick] [--out DIR]`` runs the modules in
:data:`REGISTRY` and writes ``<out>/<name>.json`` plus a markdown table to
stdout. To add a benchmark, write a module with

``def run(quick: bool) -> dict``

returning ``{"title": str, "columns": [str, ...], "rows": [dict, ...]}``
(optionally ``"notes": [str, ...]`` and any extra JSON-able keys) and add
one line to :data:`REGISTRY`. The helpers below time a callable (compile
apart from warm runs, median and spread) and describe the machine.
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
    "diffusion": "benchmarks.bench_diffusion",
}


def time_call(fn: Callable[[], object], reps: int, warmup: int = 1) -> dict:
    """Time ``fn()``: the first call apart (compile or cache load), then ``reps`` warm calls.

    Returns seconds: ``first`` (first call), ``median``, ``min``, ``max``,
    ``q1``/``q3`` (quartiles) of the warm calls, and ``reps``.
    """
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        fn()
    times = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {"first": first, "median": statistics.median(times), "min": times[0],
            "max": times[-1], "q1": q[0], "q3": q[2], "reps": len(times)}


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
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": numpy.__version__, "numba": numba.__version__,
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


__all__ = ["REGISTRY", "time_call", "machine_info", "markdown_table"]
