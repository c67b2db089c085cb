"""Batch throughput: 16 short runs on 1 and 2 local workers (and Dask), alternating.

The batch is a virtual population of 16 patients (tumour burden and product
drawn per patient) on a small patch, each run short, so the figure measures
what the batch layer adds (process start, Numba cache load, HDF5 output,
scheduling) as much as the simulation itself.

Every executor is started (and its kernels loaded, ``warm_up``) first; then
the batch runs ``reps`` rounds, each round once on every executor, in a
rotated order, so that the machine's drift (other jobs) reaches them alike.
The speed-up of an executor over the 1-worker pool is the ratio of the two
rates *within a round*, so a comparison holds when the load changes between
rounds; the table gives the median ratio and its spread over the rounds, and
the JSON every pair (``ratios``) with the load average at each round.
Executors (Dask left out with ``--quick``):

* ``local pool`` with 1 and 2 workers: ``abm batch --workers N``;
* ``local pool, shared session`` with 2 workers: the workers in the
  benchmark's own session (``LocalPool(own_session=False)``, as every local
  pool did before workers got sessions of their own): on a busy Linux machine
  with autogroup scheduling they share one CPU share;
* ``dask LocalCluster`` with 2 workers.

Per executor row:

* ``start (s)``: starting the workers and loading their kernels (not timed in wall);
* ``wall (s)``: the median over the rounds, first submission to last result;
* ``runs/min``: 60 x runs / that median wall;
* ``x 1 worker`` (``min``, ``max``): median (extremes) over the rounds of
  runs/min over the 1-worker pool's runs/min in the same round;
* ``best runs/min``: from the fastest round (least disturbed by other jobs);
* ``mean run (s)``: mean of the per-run wall durations in the manifest;
* ``CPU/run (s)``: mean CPU time of a run (manifest ``cpu_s``);
* ``CPU %``: sum of run CPU times / (workers x wall): the share of the
  workers' cores the runs actually got (100 % on an otherwise idle machine);
* ``CPU-bound runs/min``: 60 x min(workers, cores) / CPU per run, the rate
  the pool would reach with its cores to itself.

Every executor writes its own folders; the files of all executors are
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
           "min", "max", "best runs/min", "mean run (s)", "CPU/run (s)", "CPU %",
           "CPU-bound runs/min", "identical"]

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


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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


def _setups(quick: bool) -> list:
    """(name, workers, factory) of every executor to compare; the 1-worker pool first."""
    import inspect
    from abm.batch.executors import DaskExecutor, LocalPool
    out = [("local pool", 1, lambda: LocalPool(workers=1, threads=1)),
           ("local pool", 2, lambda: LocalPool(workers=2, threads=1))]
    if "own_session" in inspect.signature(LocalPool).parameters:
        out.append(("local pool, shared session", 2,
                    lambda: LocalPool(workers=2, threads=1, own_session=False)))
    if quick:
        return out
    try:
        import distributed  # noqa: F401
        out.append(("dask LocalCluster", 2, lambda: DaskExecutor(local_workers=2)))
    except ImportError:
        pass
    return out


def _stats(xs: list) -> dict:
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": float(np.median(xs)), "min": float(min(xs)), "max": float(max(xs)),
            "n": len(xs)}


def run(quick: bool) -> dict:
    from abm.batch.runner import run_batch

    batch = _batch(quick)
    src_before = source_hash()
    setups = _setups(quick)
    reps = 2 if quick else 5
    names = [f"{name} x{workers}" for name, workers, _ in setups]
    rows = []
    rounds = []   # per round: {"loadavg": ..., "order": [...], "wall_s": {name: s}}
    with tempfile.TemporaryDirectory(prefix="abm-bench-batch-") as tmp:
        tmp = Path(tmp)
        _warm_cache(batch, tmp)
        executors, start = {}, {}
        try:
            for key, (_, _, make) in zip(names, setups):
                t0 = time.perf_counter()
                executors[key] = make()
                executors[key].warm_up()
                start[key] = time.perf_counter() - t0
            results = {key: [] for key in names}
            for rep in range(reps):
                k = rep % len(names)
                order = names[k:] + names[:k]   # rotate: no executor always runs first
                rounds.append({"round": rep, "loadavg": list(os.getloadavg()), "order": order,
                               "wall_s": {}})
                for key in order:
                    res = run_batch(batch, executor=executors[key], log=lambda m: None,
                                    out=tmp / f"{key.replace(' ', '_').replace(',', '')}_{rep}")
                    results[key].append(res)
                    rounds[-1]["wall_s"][key] = res.wall_s
        finally:
            for ex in executors.values():
                ex.close()
        ref_key = names[0]
        ref_folder = None
        ratios = {}
        for key, (name, workers, _) in zip(names, setups):
            walls = [x.wall_s for x in results[key]]
            res = results[key][int(np.argsort(walls)[len(walls) // 2])]   # the median round
            with open(res.manifest, newline="") as fh:
                done = [r for r in csv.DictReader(fh) if r["status"] == "done"]
            durations = [float(r["duration_s"]) for r in done]
            cpu = [float(r["cpu_s"]) for r in done]
            pairs = [a.runs_per_min / b.runs_per_min if b.runs_per_min else None
                     for a, b in zip(results[key], results[ref_key])]
            ratio = _stats(pairs)
            if key != ref_key:
                ratios[f"{key} / {ref_key}"] = {**ratio, "pairs": pairs}
            if ref_folder is None:
                ref_folder = res.folder
                identical = "reference"
            else:
                identical = "yes" if all(
                    _same(ref_folder / p.name, p) for p in sorted(res.folder.glob("*.h5"))) else "NO"
            wall = float(np.median(walls))
            rows.append({
                "executor": name, "workers": workers, "runs": res.finished,
                "start (s)": start[key], "wall (s)": wall,
                "runs/min": 60.0 * res.finished / wall if wall > 0 else None,
                "x 1 worker": ratio["median"], "min": ratio["min"], "max": ratio["max"],
                "best runs/min": 60.0 * res.finished / min(walls) if min(walls) > 0 else None,
                "mean run (s)": float(np.mean(durations)) if durations else None,
                "CPU/run (s)": float(np.mean(cpu)) if cpu else None,
                "CPU %": 100.0 * sum(cpu) / (workers * res.wall_s) if res.wall_s else None,
                "CPU-bound runs/min": (60.0 * min(workers, _cores()) / np.mean(cpu)
                                       if cpu else None),
                "identical": identical,
                "failed": sum(x.failed for x in results[key]),
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
    loads = [x["loadavg"][0] for x in rounds]
    two = ratios.get(f"{names[1]} / {names[0]}", {})
    return {
        "title": "Batch throughput (16 short runs)",
        "columns": COLUMNS,
        "rows": rows,
        "ratios": ratios,
        "speedup_2_local_workers": {k: two.get(k) for k in ("median", "min", "max", "n")},
        "rounds": rounds,
        "run": {"lattice": list(batch.base_config().lattice.shape), "days": r.end_day - r.start_day,
                "steps": r.n_steps, "tumour_cells": batch.base_config().tumour.initial_cells},
        "notes": [
            f"each run: {list(batch.base_config().lattice.shape)} lattice, "
            f"{batch.base_config().tumour.initial_cells} tumour cells, "
            f"day {r.start_day:g} to {r.end_day:g} ({r.n_steps} steps); one Numba thread per run",
            "start (s) (worker start and kernel load) is not in wall (s); the Numba cache is "
            f"warm (filled before timing); {reps} rounds, each executor once per round in a "
            "rotated order; wall (s) is the median round, each in wall_reps_s",
            "x 1 worker: median (min, max) over the rounds of the ratio to the 1-worker pool "
            "in the same round; every pair in ratios, the load average of each round in rounds",
            f"load average (1 min) at the start of the rounds: "
            f"{', '.join(f'{x:.1f}' for x in loads)}; other jobs on the same cores lower the "
            "figures (see CPU %)",
            *notes,
        ],
        "source_hash": [src_before, src_after],
    }
