"""Batch throughput: runs per minute for 16 short runs on 1 and 2 local workers and on Dask.

The batch is a virtual population of 16 patients (tumour burden and product
drawn per patient) on a small patch, each run short, so the figure measures
what the batch layer adds (process start, Numba cache load, HDF5 output,
scheduling) as much as the simulation itself. Per executor row:

* ``start (s)``: starting the worker processes (imports; before timing);
* ``wall (s)``: the batch, from the first submission to the last result (the
  median of 3 repetitions on the same workers; 1 with ``--quick``);
* ``runs/min``: 60 x runs / wall;
* ``x 1 worker``: runs/min over that of the 1-worker pool;
* ``best runs/min``: from the fastest repetition (less disturbed by other
  jobs on a shared machine);
* ``mean run (s)``: mean of the per-run wall durations in the manifest;
* ``CPU/run (s)``: mean CPU time of a run (manifest ``cpu_s``), which other
  jobs on the machine hardly change;
* ``CPU %``: sum of run CPU times / (workers x wall): the share of the
  workers' cores the runs actually got (100 % on an otherwise idle machine);
* ``CPU-bound runs/min``: 60 x min(workers, cores) / CPU per run, the rate
  the pool would reach with its cores to itself (an estimate for a busy
  machine; compare with ``runs/min``).

Every executor writes its own folder; the files of all executors are
compared bit for bit with those of the 1-worker pool (``identical``).
"""

from __future__ import annotations

import copy
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np

COLUMNS = ["executor", "workers", "runs", "start (s)", "wall (s)", "runs/min", "x 1 worker",
           "best runs/min", "mean run (s)", "CPU/run (s)", "CPU %", "CPU-bound runs/min",
           "identical"]

RUN = {
    "run": {"start_day": 0.0, "end_day": 2.0, "snapshot_every_h": 12.0,
            "checkpoint_every_h": 12.0},
    "lattice": {"shape": [32, 32]},
    "tumour": {"initial_cells": 300},
}
POPULATION = {
    "size": 16,
    "patient.tumour_burden_cells": {"dist": "loguniform", "low": 1e9, "high": 1e11},
    "product.preset": {"dist": "choice", "values": ["cd28", "4-1bb"]},
}


def _batch(quick: bool):
    from abm.batch import batch_from_dict
    data = copy.deepcopy(RUN)
    if quick:
        data["run"]["end_day"] = 0.5
        data["lattice"]["shape"] = [24, 24]
        data["tumour"]["initial_cells"] = 100
    data["batch"] = {"name": "bench", "root_seed": 2026, "population": POPULATION}
    return batch_from_dict(data)


def _same(a: Path, b: Path) -> bool:
    import h5py

    def read(p):
        out = {}
        with h5py.File(p, "r") as h5:
            h5.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset)
                          else None)
        return out

    x, y = read(a), read(b)
    if sorted(x) != sorted(y):
        return False
    for k in x:
        u, v = np.asarray(x[k]), np.asarray(y[k])
        if u.dtype.kind == "O":
            if u.tolist() != v.tolist():
                return False
        elif u.dtype != v.dtype or u.shape != v.shape or u.tobytes() != v.tobytes():
            return False
    return True


def source_hash() -> str:
    """Hash of the simulator's sources (worker processes import them when they start)."""
    import hashlib
    import abm.version
    h = hashlib.sha256()
    for p in sorted(Path(abm.version.__file__).parent.rglob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _warm_cache(batch, tmp: Path) -> None:
    """Compile or load every kernel once, so no worker pays a cold compile."""
    from abm.batch import expand_batch
    from abm.io.run import run_to_file
    run_to_file(expand_batch(batch, [0])[0].resolve(), path=tmp / "warm.h5", log=lambda m: None)


def run(quick: bool) -> dict:
    from abm.batch.executors import DaskExecutor, LocalPool
    from abm.batch.runner import run_batch

    batch = _batch(quick)
    src_before = source_hash()
    rows = []
    with tempfile.TemporaryDirectory(prefix="abm-bench-batch-") as tmp:
        tmp = Path(tmp)
        _warm_cache(batch, tmp)
        setups = [("local pool", 1, lambda: LocalPool(workers=1, threads=1)),
                  ("local pool", 2, lambda: LocalPool(workers=2, threads=1)),
                  ("dask LocalCluster", 2, lambda: DaskExecutor(local_workers=2))]
        ref_folder = None
        base_rate = None
        reps = 1 if quick else 3
        for name, workers, make in setups:
            t0 = time.perf_counter()
            ex = make()
            ex.warm_up()
            start = time.perf_counter() - t0
            results = []
            try:
                for rep in range(reps):
                    results.append(run_batch(batch, executor=ex, log=lambda m: None,
                                             out=tmp / f"{name.split()[0]}{workers}_{rep}"))
            finally:
                ex.close()
            walls = [x.wall_s for x in results]
            res = results[int(np.argsort(walls)[len(walls) // 2])]   # the median rep
            with open(res.manifest, newline="") as fh:
                done = [r for r in csv.DictReader(fh) if r["status"] == "done"]
            durations = [float(r["duration_s"]) for r in done]
            cpu = [float(r["cpu_s"]) for r in done]
            rate = res.runs_per_min
            base_rate = base_rate or rate
            if ref_folder is None:
                ref_folder = res.folder
                identical = "reference"
            else:
                identical = "yes" if all(
                    _same(ref_folder / p.name, p) for p in sorted(res.folder.glob("*.h5"))) else "NO"
            rows.append({
                "executor": name, "workers": workers, "runs": res.finished,
                "start (s)": start, "wall (s)": res.wall_s, "runs/min": rate,
                "x 1 worker": rate / base_rate if base_rate else None,
                "best runs/min": 60.0 * res.finished / min(walls) if min(walls) > 0 else None,
                "mean run (s)": float(np.mean(durations)) if durations else None,
                "CPU/run (s)": float(np.mean(cpu)) if cpu else None,
                "CPU %": 100.0 * sum(cpu) / (workers * res.wall_s) if res.wall_s else None,
                "CPU-bound runs/min": (60.0 * min(workers, os.cpu_count() or 1) / np.mean(cpu)
                                       if cpu else None),
                "identical": identical,
                "failed": res.failed,
                "wall_reps_s": walls,
            })
    src_after = source_hash()
    notes = []
    if src_after != src_before and any(r["identical"] == "NO" for r in rows):
        for row in rows:   # workers started at different times ran different code
            if row["identical"] == "NO":
                row["identical"] = "n/a"
        notes.append("the abm sources changed while the benchmark ran, so files of executors "
                     "started at different times are not comparable (identical: n/a)")
    r = batch.base_config().run
    return {
        "title": "Batch throughput (16 short runs)",
        "columns": COLUMNS,
        "rows": rows,
        "run": {"lattice": list(batch.base_config().lattice.shape), "days": r.end_day - r.start_day,
                "steps": r.n_steps, "tumour_cells": batch.base_config().tumour.initial_cells},
        "notes": [
            f"each run: {list(batch.base_config().lattice.shape)} lattice, "
            f"{batch.base_config().tumour.initial_cells} tumour cells, "
            f"day {r.start_day:g} to {r.end_day:g} ({r.n_steps} steps); one Numba thread per run",
            "start (s) is not in wall (s); the Numba cache is warm (filled before timing); "
            "wall (s) is the median of 3 repetitions (1 with --quick), each rep in wall_reps_s",
            "the machine's load average is in machine.loadavg of the JSON: other jobs on the "
            "same cores lower the figures (see CPU %)",
            *notes,
        ],
        "source_hash": [src_before, src_after],
    }
