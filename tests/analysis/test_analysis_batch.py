"""open_batch: laziness and memory on 200 runs, alignment of unequal runs, manifest handling.

Synthetic run files come from :func:`helpers.runfiles.write_run` (schema-1 layout).
"""

from __future__ import annotations

import json
import math
import shutil
import time
import tracemalloc

import dask.array as da
import h5py
import numpy as np
import pytest

from abm.errors import FileFormatError
from analysis.batch import close_files, open_batch
from helpers.runfiles import grade_series, write_run

N_RUNS, N_TIME, N_VARS = 200, 4000, 12


@pytest.fixture(scope="module")
def big_batch(tmp_path_factory):
    """200 runs x 12 variables x 4000 records: 77 MB of float64 if read eagerly.

    One file is written, then copied and patched (grade, covariates): faster
    than writing 200 files.
    """
    folder = tmp_path_factory.mktemp("big")
    t = np.arange(N_TIME) / 24.0
    series = {"crs_grade": np.zeros(N_TIME)}
    base = np.random.default_rng(0).uniform(size=N_TIME)
    for j in range(N_VARS - 1):
        series[f"v{j:02d}"] = base + j
    template = write_run(folder / "template.h5.tmp", series, time=t)
    for i in range(N_RUNS):
        p = folder / f"big_{i:05d}.h5"
        shutil.copyfile(template, p)
        with h5py.File(p, "r+") as h5:
            h5["timeseries/crs_grade"][...] = grade_series(t, [(1.0 + i % 5, 3.0 + i % 5, i % 4)])
            h5["timeseries/v00"][...] = base * (i + 1)
            h5.attrs["seed"] = i
            h5.attrs["covariates"] = json.dumps({
                "burden_cells": 10 ** (9 + 3 * i / N_RUNS),
                "product_preset": "cd28" if i % 2 else "4-1bb"})
    template.unlink()
    return folder


def test_open_batch_of_200_runs_is_lazy_and_small(big_batch):
    close_files()
    tracemalloc.start()
    t0 = time.perf_counter()
    ds = open_batch(big_batch, progress=False)
    wall = time.perf_counter() - t0
    _, peak_open = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert ds.sizes == {"run": N_RUNS, "time": N_TIME}
    series = [v for v in ds.data_vars.values() if "time" in v.dims]
    assert len(series) == N_VARS
    assert all(isinstance(v.data, da.Array) for v in series)
    eager = sum(v.nbytes for v in series)
    assert eager >= 75e6
    # the open holds provenance, time axes and names only: under 8 % of the data
    assert peak_open < 0.08 * eager, f"open_batch peak {peak_open / 1e6:.1f} MB"
    print(f"\nopen_batch: {N_RUNS} runs in {wall:.2f} s, traced peak {peak_open / 1e6:.1f} MB "
          f"(data {eager / 1e6:.0f} MB)")
    # a reduction over every variable streams chunk by chunk
    tracemalloc.start()
    red = ds[[v.name for v in series]].max("time").compute()
    _, peak_red = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak_red < 0.35 * eager, f"reduction peak {peak_red / 1e6:.1f} MB"
    assert red["crs_grade"].values.tolist() == [i % 4 for i in range(N_RUNS)]
    base = np.random.default_rng(0).uniform(size=N_TIME)       # the fixture's values
    assert red["v05"].values == pytest.approx(np.full(N_RUNS, 5 + base.max()))
    assert red["v00"].values == pytest.approx(base.max() * np.arange(1, N_RUNS + 1))
    # endpoints read the runs chunk by chunk too
    ep = ds.abm.endpoints(chunk_runs=64)
    assert ep["crs_max_grade"].values.tolist() == [i % 4 for i in range(N_RUNS)]
    onset = np.array([1.0 + i % 5 if i % 4 else np.nan for i in range(N_RUNS)])
    np.testing.assert_allclose(ep["crs_onset_day"].values, onset)
    assert ds["product"].values[:2].tolist() == ["4-1bb", "cd28"]
    assert ds["burden_cells"].values[0] == pytest.approx(1e9)
    close_files()


def test_one_name_per_covariate(tmp_path):
    from helpers.runfiles import golden_batch
    folder = golden_batch(tmp_path / "tiny", [0, 1, 2, 3], ["cd28", "4-1bb"] * 2,
                          [1e9, 1e10, 1e11, 3e11])      # manifest column product.preset
    ds = open_batch(folder)
    names = {str(c): v.attrs["config_key"] for c, v in ds.coords.items()
             if "config_key" in v.attrs}
    # each config key once; no dotted names, no second spelling
    assert len(set(names.values())) == len(names)
    assert not [c for c in ds.coords if "." in str(c)]
    for gone in ("product_preset", "tumour_burden_cells", "patient_tumour_burden_cells"):
        assert gone not in ds.coords
    assert names["burden_cells"] == "patient.tumour_burden_cells"
    assert names["product"] == "product.preset" and names["policy"] == "clinician.preset"
    assert ds.burden_cells.values.tolist() == [1e9, 1e10, 1e11, 3e11]
    for key in ("patient.tumour_burden_cells", "patient_tumour_burden_cells", "burden_cells"):
        assert ds.abm.covariate_name(key) == "burden_cells"
    assert ds.abm.covariate("product.preset").values.tolist() == ["cd28", "4-1bb"] * 2
    with pytest.raises(KeyError, match="no covariate 'patient.nothing'"):
        ds.abm.covariate("patient.nothing")
    close_files()
    # abm analyze takes the config keys too
    from abm.cli import main
    out = tmp_path / "rep"
    assert main(["analyze", str(folder), "--out", str(out), "--by", "clinician.preset",
                 "--covariate", "patient.tumour_burden_cells", "-q"]) == 0
    assert (out / "risk_vs_burden_cells.png").exists()
    risk = (out / "risk.csv").read_text()
    assert "policy," in risk


def test_runs_of_different_lengths_are_aligned_with_nan(tmp_path):
    t_a = -1.0 + np.arange(3 * 24 + 1) / 24.0        # day -1 .. 2
    t_b = np.arange(3 * 24 + 1) / 24.0               # day 0 .. 3
    write_run(tmp_path / "a.h5", {"crs_grade": grade_series(t_a, [(1.0, 9, 2)]),
                                  "n_tumour": np.full(t_a.size, 7, np.int64)}, time=t_a)
    write_run(tmp_path / "b.h5", {"crs_grade": grade_series(t_b, [(0.5, 1.0, 1)]),
                                  "n_tumour": np.full(t_b.size, 9, np.int64),
                                  "icans_grade": grade_series(t_b, [(2.0, 2.5, 3)])}, time=t_b)
    ds = open_batch(tmp_path)
    t = ds["time"].values
    assert t[0] == pytest.approx(-1.0) and t[-1] == pytest.approx(3.0) and t.size == 4 * 24 + 1
    assert ds.attrs["padded"] == 1
    a, b = ds.sel(run="a"), ds.sel(run="b")
    assert np.isnan(a["n_tumour"].values[t > 2 + 1e-9]).all()
    assert (a["n_tumour"].values[t <= 2 + 1e-9] == 7).all()
    assert np.isnan(b["n_tumour"].values[t < -1e-9]).all()
    assert np.isnan(a["icans_grade"].values).all()    # run a predates ICANS
    ep = ds.abm.endpoints()
    assert ep["crs_ongoing"].sel(run="a").item() == 1
    assert ep["crs_duration_days"].sel(run="a").item() == pytest.approx(1.0)
    assert ep["follow_up_day"].values.tolist() == pytest.approx([2.0, 3.0])
    assert math.isnan(ep["icans_max_grade"].sel(run="a").item())
    assert ep["icans_max_grade"].sel(run="b").item() == 3
    risk = ds.abm.risk().set_index("outcome")
    assert (risk.loc["ICANS grade >= 3", "k"], risk.loc["ICANS grade >= 3", "n"]) == (1, 1)
    one = ds.abm.patient("a")
    assert one.sizes["time"] == t_a.size and one.attrs["run_name"] == "a"


def test_manifest_statuses_and_bad_files_are_skipped_with_reasons(tmp_path):
    t = np.arange(49) / 24.0
    g = {"crs_grade": grade_series(t, [(0.5, 1.0, 2)])}
    for i in (0, 1, 4):
        write_run(tmp_path / f"x_{i:05d}.h5", g, time=t, seed=i,
                  config={"run": {"name": f"x_{i:05d}"}, "lymphodepletion": {"depth": 0.5 + i / 10},
                          "product": {"preset": "cd28"}})
    write_run(tmp_path / "x_00005.h5", g, time=t, complete=0)        # done but incomplete
    (tmp_path / "x_00006.h5").write_text("garbage")                    # done but unreadable
    write_run(tmp_path / "extra.h5", g, time=t)                        # not in the manifest
    (tmp_path / "x_00003.h5.part").write_bytes(b"")
    rows = [("x_00000", "done", ""), ("x_00001", "done", ""), ("x_00002", "failed", "boom: bad"),
            ("x_00003", "running", ""), ("x_00004", "done", ""), ("x_00005", "done", ""),
            ("x_00006", "done", ""), ("x_00007", "done", ""), ("x_00008", "pending", "")]
    with open(tmp_path / "manifest.csv", "w") as fh:
        fh.write("run_id,index,status,error,file,lymphodepletion.depth,extra_col\n")
        for i, (rid, st, err) in enumerate(rows):
            fh.write(f"{rid},{i},{st},{err},{rid}.h5,{0.5 + i / 10},z\n")
    ds = open_batch(tmp_path)
    assert list(ds["run"].values) == ["x_00000", "x_00001", "x_00004", "extra"]
    skipped = {s["run_id"]: s for s in ds.abm.skipped}
    assert skipped["x_00002"]["status"] == "failed" and skipped["x_00002"]["reason"] == "boom: bad"
    assert "x_00003.h5.part" in skipped["x_00003"]["reason"]
    assert skipped["x_00005"]["status"] == "incomplete"
    assert skipped["x_00006"]["status"] == "unreadable"
    assert "missing" in skipped["x_00007"]["reason"]
    assert skipped["x_00008"]["status"] == "pending"
    assert ds.attrs["n_runs"] == 10 and ds.attrs["n_loaded"] == 4
    # the varied parameter comes from each file's own config, not the manifest text
    # under one name (config path with underscores), reachable by its config key
    depth = ds.lymphodepletion_depth.values
    assert depth[:3] == pytest.approx([0.5, 0.6, 0.9]) and math.isnan(depth[3])
    assert ds["lymphodepletion_depth"].attrs["config_key"] == "lymphodepletion.depth"
    assert ds.abm.covariate("lymphodepletion.depth").name == "lymphodepletion_depth"
    assert "lymphodepletion.depth" not in ds.coords
    assert ds.attrs["varied_parameters"] == "lymphodepletion.depth"


def test_open_batch_errors(tmp_path):
    with pytest.raises(FileFormatError, match="no such folder"):
        open_batch(tmp_path / "nope")
    f = write_run(tmp_path / "one.h5", {"crs_grade": np.zeros(10)}, time=np.arange(10.0))
    with pytest.raises(FileFormatError, match="not a folder"):
        open_batch(f)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.csv").write_text("run_id,status,error,file\nr1,failed,oops,r1.h5\n")
    with pytest.raises(FileFormatError, match=r"no complete run files found \(1 run\(s\) listed"):
        open_batch(empty)
    # a file damaged after the batch was opened: reading it is a one-line FileFormatError
    ds = open_batch([f])
    with h5py.File(f, "r+") as h5:
        del h5["timeseries/crs_grade"]
    close_files()
    with pytest.raises(FileFormatError, match="cannot read /timeseries/crs_grade"):
        ds["crs_grade"].values
    assert json.loads(ds.attrs["skipped"]) == []


def test_file_cache_reads_stay_valid_while_other_threads_evict(tmp_path):
    """Many threads reading through a 2-file cache: an eviction never closes a file mid-read."""
    import threading

    import h5py

    from analysis.batch import FileCache
    paths = []
    for i in range(6):
        p = tmp_path / f"r{i}.h5"
        with h5py.File(p, "w") as f:
            f.create_dataset("timeseries/v", data=np.arange(50, dtype=np.float64) + i)
        paths.append(str(p))
    cache, errors = FileCache(size=2), []

    def reader(k):
        try:
            for j in range(150):
                i = (k * 7 + j) % len(paths)
                assert cache.read_timeseries(paths[i], b"v")[0] == i
        except Exception as exc:   # collected: an exception in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache.clear()
    assert not errors, errors[:3]
