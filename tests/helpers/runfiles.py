"""Synthetic run files and batches for the analysis tests.

:func:`write_run` writes the schema-1 layout (root provenance attributes,
``/timeseries`` as a netCDF-4 group, scalar ``/endpoints``) with h5py and the
schema helpers, so every expected value is known by construction;
:func:`golden_batch` copies the golden file into a batch folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np

from abm.io.schema import create_coordinate, create_variable

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden_v1.h5"
HOURLY = -1.0 + np.arange(11 * 24 + 1) / 24.0   # day -1 to 10, one record an hour


def write_run(path, series: dict, *, time=HOURLY, covariates=None, config=None,
              endpoints=None, complete=1, seed=1, units=None) -> Path:
    """A minimal schema-1 run file with the given time series (1-D arrays over ``time``)."""
    path = Path(path)
    time = np.asarray(time, float)
    cov = {"burden_cells": 1e10, "product_preset": "cd28", "dose_cells": 1e8}
    cov.update(covariates or {})
    cfg = config or {"run": {"name": path.stem, "seed": seed},
                     "product": {"preset": cov["product_preset"]},
                     "patient": {"tumour_burden_cells": cov["burden_cells"]},
                     "clinician": {"preset": "default"}}
    with h5py.File(path, "w", libver=("v110", "v110")) as h5:
        h5.attrs.update({"schema_version": np.int32(1), "software": "abm",
                         "software_version": "0.1.0", "run_name": path.stem,
                         "seed": np.int64(seed), "replicate": np.int64(0),
                         "covariates": json.dumps(cov), "config_json": json.dumps(cfg),
                         "start_day": float(time[0]), "end_day": float(time[-1]),
                         "complete": np.int8(complete)})
        g = h5.create_group("timeseries")
        create_coordinate(g, "time", time, dtype=np.float64, units="day",
                          long_name="time since CAR-T infusion (day 0)")
        for name, values in series.items():
            v = np.asarray(values)
            ds = create_variable(g, name, ("time",), v.dtype,
                                 units=(units or {}).get(name, "1"), long_name=name)
            ds[...] = v
        e = h5.create_group("endpoints")
        for k, v in (endpoints or {}).items():
            e.create_dataset(k, data=np.float64(v))
    return path


def grade_series(time, spans) -> np.ndarray:
    """Grade over ``time``: ``spans`` = [(start, end, grade)], half-open [start, end)."""
    g = np.zeros(len(time))
    for a, b, k in spans:
        g[(time >= a - 1e-9) & (time < b - 1e-9)] = k
    return g


def golden_batch(folder: Path, grades, products, burdens) -> Path:
    """Copies of the golden file with given CRS grades (from day 1 on) and covariates,
    a manifest with one failed and one pending run, and an interrupted .part file."""
    folder.mkdir(parents=True)
    rows = []
    for i, (g, prod, b) in enumerate(zip(grades, products, burdens)):
        run_id = f"tiny_{i:05d}"
        p = folder / f"{run_id}.h5"
        shutil.copy(GOLDEN, p)
        with h5py.File(p, "r+") as h5:
            t = h5["timeseries/time"][...]
            h5["timeseries/crs_grade"][...] = np.where(t >= 1.0, float(g), 0.0)
            cov = json.loads(h5.attrs["covariates"])
            cov.update(product_preset=prod, burden_cells=b)
            h5.attrs["covariates"] = json.dumps(cov)
            cfg = json.loads(h5.attrs["config_json"])
            cfg["clinician"]["preset"] = "early" if i % 2 else "default"
            h5.attrs["config_json"] = json.dumps(cfg)
            h5.attrs["run_name"] = run_id
        rows.append([run_id, i, "done", "", f"{run_id}.h5", prod])
    n = len(rows)
    rows.append([f"tiny_{n:05d}", n, "failed", "ConfigError: lymphodepletion.depth must be <= 1",
                 f"tiny_{n:05d}.h5", "cd28"])
    rows.append([f"tiny_{n + 1:05d}", n + 1, "pending", "interrupted", f"tiny_{n + 1:05d}.h5",
                 "cd28"])
    (folder / f"tiny_{n + 1:05d}.h5.part").write_bytes(b"partial")
    lines = ["run_id,index,status,error,file,product.preset"]
    lines += [",".join(str(c) for c in r) for r in rows]
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    (folder / "batch.toml").write_text('[batch]\nname = "tiny"\nroot_seed = 7\n'
                                       'description = "test batch"\n')
    return folder
