"""Virtual-trial throughput: N patients of ``configs/trial_cd28.toml`` on a local pool, projected
to a 1000-patient trial.

``python -m benchmarks trial --patients 20 --workers 2`` (default 10 patients on 2
workers; ``--quick``: 2 patients with the runs cut to day 1, a smoke run whose
projection means nothing). Not part of a plain ``python -m benchmarks`` (it takes
minutes per patient pair): name it.

Method. The batch is the trial file with its population size set to N (and
its own name), so its runs are the trial's first N virtual patients (the
covariate draws and seeds are keyed by the patient's index, not by the
population size). The Numba cache is filled and the workers started and
primed before the clock starts (``start (s)``, once per batch whatever its
size). Then the N runs go through ``run_batch`` on ``LocalPool(workers, threads=1)``
and three rates are projected to 1000 patients:

* ``measured``: 60 N / wall, the batch as it ran (on a small N the end, when
  some workers have no run left, weighs more than in a large batch);
* ``steady``: 60 x workers / mean run wall time: the pool never short of runs,
  as over most of a 1000-patient batch, at the machine's load of this call;
* ``CPU-bound``: 60 x min(workers, cores) / mean run CPU time: the rate with the
  cores to the pool alone (an idle machine), from CPU time, which other jobs
  hardly change.

``1000 patients (h)`` is 1000 / rate / 60; ``+- (h)`` is the 95 % range of that
from the spread of run times between patients (1.96 x CV / sqrt(N)), which a
small N leaves wide: the patients differ (tumour burden over two decades).
The load average beside it says how busy the machine was.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TRIAL = Path(__file__).resolve().parents[1] / "configs" / "trial_cd28.toml"
COLUMNS = ["estimate", "runs/min", "1000 patients (h)", "+- (h)", "how"]
PROJECT = 1000


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _say(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def run(quick: bool, patients: int | None = None, workers: int | None = None) -> dict:
    from abm.batch import load_batch
    from abm.batch.executors import LocalPool
    from abm.batch.runner import run_batch
    from abm.batch.worker import prime_kernels

    n = int(patients or (2 if quick else 10))
    w = int(workers or 2)
    if n < 1 or w < 1:
        raise ValueError(f"--patients and --workers must be >= 1 (got {n}, {w})")
    overrides = {"batch": {"name": "trial_bench", "population": {"size": n}}}
    if quick:
        overrides["run"] = {"end_day": 1.0}
    batch = load_batch(TRIAL, overrides=overrides)
    cfg = batch.base_config()
    load0 = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="abm-bench-trial-") as tmp:
        t0 = time.perf_counter()
        prime_kernels()   # compiles into the Numba cache if it is cold, so workers only load
        with LocalPool(workers=w, threads=1) as pool:
            pool.warm_up()
            start = time.perf_counter() - t0
            _say(f"{n} patients of {TRIAL.name} on {pool.describe()} "
                 f"(load average {load0[0]:.1f})")
            res = run_batch(batch, out=Path(tmp), executor=pool, log=_say, verbose=True)
        with open(res.manifest, newline="") as fh:
            done = [r for r in csv.DictReader(fh) if r["status"] == "done"]
    load1 = list(os.getloadavg())
    if not done:
        raise RuntimeError(f"no run finished ({res.failed} failed: {res.failures[:1]})")
    dur = np.array([float(r["duration_s"]) for r in done])
    cpu = np.array([float(r["cpu_s"]) for r in done])

    def spread(x) -> float:   # relative 95 % half-width of the mean of x
        return 1.96 * float(np.std(x, ddof=1) / np.mean(x)) / math.sqrt(len(x)) \
            if len(x) > 1 else float("nan")

    def row(name, rate, rel, how):
        hours = PROJECT / rate / 60.0 if rate > 0 else float("inf")
        return {"estimate": name, "runs/min": rate, "1000 patients (h)": hours,
                "+- (h)": hours * rel if rel == rel else None, "how": how}

    rows = [
        row("measured", 60.0 * len(done) / res.wall_s, spread(dur),
            f"60 x {len(done)} runs / {res.wall_s:.0f} s wall"),
        row("steady", 60.0 * w / float(dur.mean()), spread(dur),
            f"60 x {w} workers / {dur.mean():.1f} s mean run wall"),
        row("CPU-bound", 60.0 * min(w, _cores()) / float(cpu.mean()), spread(cpu),
            f"60 x {min(w, _cores())} cores / {cpu.mean():.1f} s mean run CPU"),
    ]
    r = cfg.run
    return {
        "title": f"Virtual trial projection ({len(done)} of {n} patients of {TRIAL.name} on "
                 f"{w} local workers, projected to {PROJECT})",
        "columns": COLUMNS,
        "rows": rows,
        "patients": n, "workers": w, "finished": len(done), "failed": res.failed,
        "start_s": start, "wall_s_batch": res.wall_s,
        "run_wall_s": dur.tolist(), "run_cpu_s": cpu.tolist(),
        "loadavg_start": load0, "loadavg_end": load1,
        "run": {"lattice": list(cfg.lattice.shape), "days": [r.start_day, r.end_day],
                "steps": r.n_steps, "tumour_cells": cfg.tumour.initial_cells},
        "notes": [
            f"{TRIAL.name} with batch.population.size = {n}: the trial's first {n} patients; "
            f"each run {list(cfg.lattice.shape)} lattice, day {r.start_day:g} to "
            f"{r.end_day:g} ({r.n_steps} steps), one Numba thread"
            + (" (--quick: cut to day 1, not a trial run)" if quick else ""),
            f"run wall {dur.mean():.1f} s mean ({dur.min():.1f}-{dur.max():.1f}), run CPU "
            f"{cpu.mean():.1f} s mean ({cpu.min():.1f}-{cpu.max():.1f}); start (workers, "
            f"kernel load) {start:.1f} s, not in the rates",
            f"load average (1 min) {load0[0]:.1f} at the start, {load1[0]:.1f} at the end, on "
            f"{_cores()} cores: measured and steady are for that load, CPU-bound for an idle "
            "machine",
            "+- (h): 95 % range from the patient-to-patient spread of run times "
            "(1.96 CV / sqrt(N)); method in benchmarks/bench_trial.py",
        ],
    }
