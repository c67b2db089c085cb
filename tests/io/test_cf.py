"""CF-1.10 conventions of the output file, checked by the IOOS compliance checker.

A small run of the default model (plus a process that logs events of two
kinds, so the event flag table is filled) is written, every netCDF group is
checked with the checker's ``cf:1.10`` suite (tests/helpers/cfcheck.py), and
the test fails on any error. The checker installs with pip alone
(``compliance-checker``, in the ``test`` extra: its wheels bundle UDUNITS-2
and netCDF-C); without it the checker test is skipped with that reason.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import xarray as xr

from abm.build import default_processes
from abm.config import config_from_dict
from abm.io.run import run_to_file
from abm.io.schema import GRADE_FILL, TIME_UNITS, cell_flag_attrs
from abm.process import Process
from analysis.io import open_group, open_run

CONFIG = {"run": {"name": "cf", "seed": 5, "start_day": -0.5, "end_day": 1.0,
                  "snapshot_every_h": 12.0, "checkpoint_every_h": 12.0},
          "lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 100}}


class TwoEventKinds(Process):
    """Logs a 'tick' every 6 h and a graded 'tock' every 12 h (fills /events)."""

    phase = "patient"

    def step(self, state):
        if state.step % 60 == 0:
            state.events.append((state.time_day, "tick", -1, f"step {state.step}"))
        if state.step % 120 == 0:
            state.events.append((state.time_day, "tock", 1, ""))


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    cfg = config_from_dict(CONFIG)
    res = run_to_file(cfg, out_dir=tmp_path_factory.mktemp("cf"),
                      processes=default_processes(cfg) + [TwoEventKinds], log=lambda m: None)
    return res.path


def test_every_group_passes_the_cf_checker(run_file, tmp_path):
    pytest.importorskip("compliance_checker", reason="the CF checker (pip compliance-checker, "
                        "in the test extra) is not installed")
    from helpers.cfcheck import check_run_file, summary
    results = check_run_file(run_file, tmp_path)
    assert set(results) == {"timeseries", "fields", "cells", "events", "endpoints"}
    bad = [r for rs in results.values() for r in rs if r["priority"] in ("error", "crash")]
    assert not bad, "CF checker errors:\n" + summary(results)


def test_time_is_cf_time_and_the_analysis_layer_keeps_days(run_file):
    with h5py.File(run_file) as h5:
        assert h5.attrs["Conventions"] == "CF-1.10" and h5.attrs["history"]
        for path in ("timeseries/time", "fields/snapshot_time", "cells/snapshot_time",
                     "events/time"):
            assert h5[path].attrs["units"] == TIME_UNITS, path
            assert h5[path].attrs["standard_name"] == "time", path
        raw = h5["timeseries/time"][...]
    assert raw[0] == -0.5 and raw[-1] == 1.0          # the model's days, unchanged
    ts = xr.open_dataset(run_file, engine="h5netcdf", group="timeseries")   # CF-decoded
    assert ts.time.values[0] == np.datetime64("1999-12-31T12:00")           # day -0.5
    ds = open_run(run_file)
    assert ds.time.dtype == np.float64 and ds.time.attrs["units"] == "day"
    assert float(ds.time[0]) == -0.5
    ev = open_group(run_file, "events", load=True)
    assert ev.time.dtype == np.float64 and float(ev.time[0]) == -0.5


def test_codes_have_flags_and_grades_are_integers(run_file):
    with h5py.File(run_file) as h5:
        kind = h5["cells/kind"].attrs
        assert list(kind["flag_values"]) == [-1, 0, 1, 2, 3]
        assert kind["flag_meanings"] == "dead tumour cart myeloid endothelial"
        ph = h5["cells/phenotype"].attrs
        assert ph["flag_meanings_cart"] == "naive effector memory exhausted"
        assert dict(ph).keys() >= cell_flag_attrs()["phenotype"].keys()
        code = h5["events/kind_code"]
        assert code.attrs["flag_meanings"] == "tick tock"
        assert list(code.attrs["flag_values"]) == [0, 1]
        kinds = [k.decode() for k in h5["events/kind"][...]]
        assert [["tick", "tock"][c] for c in code[...]] == kinds
        for path in ("timeseries/crs_grade", "timeseries/crs_max_grade",
                     "endpoints/crs_max_grade"):
            assert h5[path].dtype == np.int8 and h5[path].attrs["_FillValue"] == GRADE_FILL
        units = {ds.attrs["units"] for g in ("timeseries", "endpoints")
                 for ds in h5[g].values() if "units" in ds.attrs}
    assert not units & {"cells", "cells/uL", "nM", "unknown", "molecules/cell"}
    ds = open_run(run_file)
    assert ds.crs_grade.dtype.kind == "f" and ds.attrs["endpoint_crs_max_grade"] == \
        float(ds.crs_grade.max())
