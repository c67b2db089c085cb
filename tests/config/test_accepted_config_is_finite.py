"""An accepted config never writes NaN or infinity: float keys at their largest allowed value.

Each key below is set to its stated maximum (its ``le`` bound, or the schema's
generic :data:`abm.schema.FLOAT_MAX` when it declares none) in a tiny one-day
run across infusion; every time series and endpoint must then be finite
wherever the same run with default values is.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from abm.config import config_from_dict
from abm.io.run import run_to_file
from abm.schema import FLOAT_MAX
from abm.batch.config import param_index

#: Keys that once wrote NaN or inf from an accepted (infinite) value, and kin.
KEYS = ["kinetics.blood_death_per_day", "drugs.tcz_cl_l_per_day",
        "physiology.vasopressin_map_gain_mmhg", "fields.damage.exchange_per_s",
        "fields.il6.exchange_per_s", "product.kill_rate_per_h", "blood.il6_half_life_min"]

TINY = {"run": {"name": "finite", "seed": 3, "start_day": -0.25, "end_day": 0.75,
                "snapshot_every_h": 24.0, "checkpoint_every_h": 24.0},
        "lattice": {"shape": [16, 16]}, "tumour": {"initial_cells": 40},
        "output": {"fields": False, "cells": False}}


def largest(key: str) -> float:
    meta = param_index()[key][0].metadata
    if meta.get("le") is not None:
        return float(meta["le"])
    if meta.get("lt") is not None:
        return math.nextafter(float(meta["lt"]), -math.inf)
    return FLOAT_MAX


def nonfinite(path) -> set[str]:
    """Names of the time series and endpoints holding a NaN or an infinity."""
    out = set()
    with h5py.File(path, "r") as h5:
        for group in ("timeseries", "endpoints"):
            for name, ds in h5[group].items():
                if isinstance(ds, h5py.Dataset) and ds.dtype.kind == "f":
                    if not np.all(np.isfinite(ds[()])):
                        out.add(f"{group}/{name}")
    return out


def run(tmp_path, name: str, **overrides) -> set[str]:
    data = {k: dict(v) for k, v in TINY.items()}
    for key, value in overrides.items():
        *heads, last = key.split("__")
        node = data
        for h in heads:
            node = node.setdefault(h, {})
        node[last] = value
    res = run_to_file(config_from_dict(data), out_dir=tmp_path / name, log=lambda _m: None)
    return nonfinite(res.path)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return run(tmp_path_factory.mktemp("base"), "base")


@pytest.mark.parametrize("key", KEYS)
def test_float_key_at_its_maximum_writes_finite_output(tmp_path, baseline, key):
    value = largest(key)
    config_from_dict({key.split(".")[0]: {}})   # the section exists
    bad = run(tmp_path, "k", **{key.replace(".", "__"): value})
    assert bad <= baseline, f"{key} = {value:g} wrote non-finite {sorted(bad - baseline)}"
