"""HDF5 output: xarray-readable groups, exact restart, bad files, golden file.

The restart tests add :class:`Churn`, a test process that removes and adds
cells, secretes into a field, logs events, keeps a running total in
``state.scalars`` and starts a new record key mid-run, so that every part of
the state and of the file changes while the full model is still minimal.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from abm.cells import CART, TUMOUR
from abm.config import config_from_dict
from abm.errors import FileFormatError
from abm.io import checkpoint as ck
from abm.io.run import output_path, run_to_file
from abm.io.schema import SCHEMA_VERSION, TIME_UNITS
from abm.io.h5file import open_output
from abm.io.writer import RunWriter
from abm.kernels import rng
from abm.process import Process
from abm.build import build_simulation, default_processes
from abm.io.checkpoint import load_checkpoint
from analysis.io import cell_snapshot, check_file, open_group, open_run, read_provenance

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden_v1.h5"
#: Golden files of every schema version (frozen; scripts/make_golden.py writes the current one).
GOLDENS = [ROOT / "tests" / "data" / f"golden_v{v}.h5" for v in range(1, SCHEMA_VERSION + 1)]
GROUPS = ("timeseries", "fields", "cells", "events", "endpoints", "checkpoint")
TEST_STREAM = 1_000_003   # not in abm.kernels.streams: test-only random numbers

SMALL = {
    "run": {"name": "io", "seed": 11, "start_day": 0.0, "end_day": 2.0,
            "snapshot_every_h": 12.0, "checkpoint_every_h": 12.0},
    "lattice": {"shape": [32, 32]},
    "tumour": {"initial_cells": 200},
}
N_STEPS = 480            # 2 days of 6 min
CHECKPOINT_EVERY = 120   # 12 h


class Churn(Process):
    """Test process: random cell turnover, secretion, events, scalars, a late key."""

    phase = "agents"
    meta = {"churn_removed": ("cells", "cells removed by the test churn")}

    def step(self, state):
        c, seed, step = state.cells, state.seed, state.step
        tum = c.rows_of(TUMOUR)
        u = rng.uniform_array(seed, TEST_STREAM, step, c.id[tum], 0)
        dead = tum[u < 0.01]
        c.remove(dead)
        free = np.flatnonzero(c.occ < 0)
        free = free[~state.lattice.vessel[free]]
        pick = rng.uniform_array(seed, TEST_STREAM, step, free, 1)
        sites = free[pick < 0.002]
        rows = c.add(CART, sites, activation=0.5)
        c.timer[c.rows_of(CART)] += 0.1
        if step % 7 == 0:
            c.compact()
        state.sources[2, c.site[c.rows_of(CART)]] += 0.01   # IL-6 secretion
        sc = state.scalars
        sc["churn_removed"] = sc.get("churn_removed", 0) + len(dead)
        if step % 50 == 0:
            state.events.append((state.time_day, "churn", int(len(rows) % 5),
                                 f"step {step}: +{len(rows)} -{len(dead)}"))

    def record(self, state, row):
        row["churn_removed"] = int(state.scalars.get("churn_removed", 0))
        if state.time_day >= 1.0:
            row["late_mean_timer_h"] = float(np.mean(state.cells.timer[: state.cells.n]))

    def endpoints(self, state, out):
        out["churn_removed"] = int(state.scalars.get("churn_removed", 0))


def processes(cfg):
    return default_processes(cfg) + [Churn]


def small_config(**run):
    data = json.loads(json.dumps(SMALL))
    data["run"].update(run)
    return config_from_dict(data)


def quiet(_msg):
    pass


def datasets(path) -> dict[str, np.ndarray]:
    """Every dataset of a file by path, read into memory."""
    out = {}
    with h5py.File(path, "r") as h5:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        h5.visititems(visit)
    return out


def assert_same_datasets(a, b):
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db)
    for name in da:
        x, y = np.asarray(da[name]), np.asarray(db[name])
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind == "O":
            assert x.tolist() == y.tolist(), name
        else:
            assert x.tobytes() == y.tobytes(), f"{name} differs"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run with Churn (keeping every checkpoint)."""
    d = tmp_path_factory.mktemp("ref")
    res = run_to_file(small_config(), out_dir=d, processes=processes(small_config()),
                      keep_checkpoints=True, log=quiet)
    return res


@pytest.fixture(scope="module")
def reference_latest(tmp_path_factory):
    """The same run keeping only the latest checkpoint (the default)."""
    d = tmp_path_factory.mktemp("ref_latest")
    return run_to_file(small_config(), out_dir=d, processes=processes(small_config()), log=quiet)


# -- 1. every group opens with xarray ------------------------------------------

def test_every_group_opens_with_xarray_with_dims_and_units(reference):
    path = reference.path
    with h5py.File(path) as h5:
        assert set(GROUPS) <= set(h5)
    expect_dims = {"timeseries": {"time"}, "fields": {"snapshot", "y", "x"},
                   "cells": {"snapshot", "obs"}, "events": {"event"}, "endpoints": set(),
                   "checkpoint": set()}
    for g in GROUPS:
        with xr.open_dataset(path, engine="h5netcdf", group=g, decode_times=False) as ds:
            assert set(ds.sizes) == expect_dims[g], g
            assert not any(d.startswith("phony") for d in ds.sizes)
            for name, var in ds.variables.items():
                assert var.attrs.get("units"), f"/{g}/{name} has no units"
                assert var.attrs.get("long_name"), f"/{g}/{name} has no long_name"
    ts = xr.open_dataset(path, engine="h5netcdf", group="timeseries", decode_times=False)
    assert ts.sizes["time"] == N_STEPS // 10 + 1
    assert ts.step.dtype == np.int64 and ts.n_tumour.dtype == np.int64
    assert ts.time.attrs["units"] == TIME_UNITS and ts.tissue_il6.attrs["units"] == "pg/mL"
    assert ts.churn_removed.attrs["units"] == "1"      # declared "cells" by the process
    assert np.isnan(ts.late_mean_timer_h.values[0])            # key born mid-run: NaN before
    assert np.isfinite(ts.late_mean_timer_h.values[-1])
    f = xr.open_dataset(path, engine="h5netcdf", group="fields", decode_times=False)
    assert f.il6.dims == ("snapshot", "y", "x") and f.il6.attrs["units"] == "pg/mL"
    assert f.il6.attrs["long_name"] == "interleukin 6"
    assert list(f.snapshot_time.values) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert float(f.il6.isel(snapshot=-1).max()) > 0
    c = xr.open_dataset(path, engine="h5netcdf", group="cells", decode_times=False)
    assert c["count"].attrs["sample_dimension"] == "obs"
    assert int(c["count"].sum()) == c.sizes["obs"]
    assert c.antigen.attrs["units"] == "1"             # molecules per cell
    e = xr.open_dataset(path, engine="h5netcdf", group="events", decode_times=False)
    assert list(e.kind.values).count("churn") == len(range(0, N_STEPS, 50))
    assert e.time.attrs["units"] == TIME_UNITS and e.grade.dtype == np.int16


def test_reader_api_and_provenance(reference):
    path = reference.path
    ds = open_run(path)
    assert ds.attrs["schema_version"] == SCHEMA_VERSION and ds.attrs["seed"] == 11
    assert ds.attrs["complete"] == 1
    assert ds.attrs["endpoint_final_n_tumour"] == ds.n_tumour.values[-1]
    assert ds.attrs["endpoint_churn_removed"] == ds.churn_removed.values[-1] > 0
    prov = read_provenance(path)
    assert prov["config"]["lattice"]["shape"] == [32, 32]
    assert prov["covariates"]["weight_kg"] == 70.0
    for key in ("env_python", "env_numpy", "env_numba", "env_h5py", "env_numba_threads",
                "env_platform", "config_toml", "software_version", "wall_compile_s",
                "wall_simulate_s", "wall_write_s", "replicate"):
        assert key in prov, key
    fields = open_group(path, "fields")
    assert fields.il6.sel(snapshot_time=1.0).shape == (32, 32)


# -- 2. exact restart ------------------------------------------------------------

PAUSING_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from abm.io.run import run_to_file
    from abm.triggers import AtSteps
    from test_io import processes, small_config

    def pause(sim):
        print("PAUSED", flush=True)
        time.sleep(600)

    cfg = small_config()
    run_to_file(cfg, out_dir={out!r}, processes={procs}, log=lambda m: None,
                extra_writers=[(AtSteps([{step}]), pause)], flush_every_s={flush})
""")


def kill_mid_run(out_dir: Path, step: int, churn: bool = True) -> Path:
    """Run in a subprocess, SIGKILL it at ``step``; return the final path it was writing.

    With ``churn`` every record is written at once (``flush_every_s=0``), so the
    killed file holds records after its last checkpoint.
    """
    script = PAUSING_SCRIPT.format(tests=str(Path(__file__).resolve().parent), out=str(out_dir), step=step,
                                   procs="processes(cfg)" if churn else "None",
                                   flush=0.0 if churn else 10.0)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    path = output_path(small_config(), 11, out_dir)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "PAUSED", proc.stderr.read()
        # the writer thread may still be saving the last checkpoint when the simulation pauses
        # (a kill then loses it, by design): wait for its file, so the kill lands after it
        last = step // CHECKPOINT_EVERY * CHECKPOINT_EVERY
        t0 = time.monotonic()
        while not any(s == last for s, _ in ck.checkpoint_files(path)) and time.monotonic() - t0 < 60:
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    part = path.with_name(path.name + ".part")
    assert part.exists() and not path.exists()
    return path


def test_sigkill_then_resume_is_bit_identical(reference_latest, tmp_path):
    # killed 2.5 h after the second checkpoint: records, events and cells after it exist
    path = kill_mid_run(tmp_path, 2 * CHECKPOINT_EVERY + 25)
    part = path.with_name(path.name + ".part")
    with open_output(part) as h5:   # the killed writer left its "open for write" flag set
        assert ck.list_checkpoints(h5) == [2 * CHECKPOINT_EVERY]
        assert h5.attrs["complete"] == 0
    assert read_provenance(part)["complete"] == 0
    # reopening truncates every group back to the checkpoint (on a copy of the .part)
    copy = tmp_path / "copy" / path.name
    copy.parent.mkdir()
    shutil.copyfile(part, copy.with_name(copy.name + ".part"))
    with open_output(copy.with_name(copy.name + ".part")) as h5:
        assert h5["timeseries/time"].shape[0] > 25 and h5["cells/count"].shape[0] == 3
    w, _ = RunWriter.resume(copy, processes=processes(small_config()))
    assert w.h5["timeseries/time"].shape[0] == 25 == w.h5["timeseries/late_mean_timer_h"].shape[0]
    assert w.h5["fields/il6"].shape[0] == 3 and w.h5["cells/count"].shape[0] == 3
    assert w.h5["cells/id"].shape[0] == w.h5["cells/count"][:].sum() == w.n_obs
    assert w.h5["events/kind"].shape[0] == len(w.sim.state.events) == w.n_events
    w.close()
    res = run_to_file(small_config(), out_dir=tmp_path, resume=True,
                      processes=processes(small_config()), log=quiet)
    assert res.resumed_from == 2 * CHECKPOINT_EVERY and res.path == path
    assert not part.exists()
    assert_same_datasets(reference_latest.path, path)
    prov = read_provenance(path)
    assert prov["complete"] == 1 and prov["restarts"][0]["from_step"] == 2 * CHECKPOINT_EVERY


def test_restart_from_earlier_checkpoints_is_bit_identical(reference, tmp_path):
    with h5py.File(reference.path) as h5:
        steps = ck.list_checkpoints(h5)
    assert steps == list(range(0, N_STEPS + 1, CHECKPOINT_EVERY))
    for step in (0, CHECKPOINT_EVERY):   # from the start, and from an early checkpoint
        d = tmp_path / f"from{step}"
        target = output_path(small_config(), 11, d)
        target.parent.mkdir(parents=True)
        shutil.copyfile(reference.path, target)
        res = run_to_file(small_config(), out_dir=d, resume=True, from_step=step,
                          processes=processes(small_config()), log=quiet)
        assert res.resumed_from == step
        assert_same_datasets(reference.path, target)


def test_from_checkpoint_api_continues_exactly(reference):
    sim = load_checkpoint(reference.path, 3 * CHECKPOINT_EVERY,
                                     processes=processes(small_config()))
    assert sim.state.step == 3 * CHECKPOINT_EVERY and sim.seed == 11
    sim.run()
    end = load_checkpoint(reference.path)       # latest = the final state
    assert end.state.step == N_STEPS
    for name in ("fields", "sources", "uptake", "perm"):
        assert getattr(sim.state, name).tobytes() == getattr(end.state, name).tobytes(), name
    for col, arr in sim.state.cells.columns().items():
        assert arr.tobytes() == end.state.cells.columns()[col].tobytes(), col
    assert sim.state.cells.next_id == end.state.cells.next_id
    a, b = sim.state.scalars, end.state.scalars      # NaN-aware: NaN marks "not yet" (e.g. onset days)
    assert a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)
    assert sim.state.events == end.state.events
    sim.state.cells.check_invariants()


def test_cli_resume_after_sigkill_matches_cli_run(tmp_path):
    cfg = tmp_path / "io.toml"
    cfg.write_text(textwrap.dedent("""
        [run]
        name = "io"
        seed = 11
        start_day = 0.0
        end_day = 2.0
        snapshot_every_h = 12.0
        checkpoint_every_h = 12.0
        [lattice]
        shape = [32, 32]
        [tumour]
        initial_cells = 200
    """))
    path = kill_mid_run(tmp_path / "a", CHECKPOINT_EVERY + 5, churn=False)
    abm = [sys.executable, "-m", "abm", "run", str(cfg), "-q"]
    res = subprocess.run(abm + ["--out", str(tmp_path / "a"), "--resume"], capture_output=True,
                         text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr and path.exists()
    res = subprocess.run(abm + ["--out", str(tmp_path / "b")], capture_output=True, text=True,
                         cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert_same_datasets(path, output_path(small_config(), 11, tmp_path / "b"))
    # resuming with another config is refused in one line
    res = subprocess.run(abm + ["--out", str(tmp_path / "b"), "--resume", "--days", "3"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "config differs" in res.stderr and "run.end_day" in res.stderr
    assert not list((tmp_path / "b" / "io").glob("*.part"))   # nothing left behind


def test_3d_layout_without_field_snapshots_and_its_restart(tmp_path):
    cfg = config_from_dict({
        "run": {"name": "d3", "seed": 3, "start_day": 0.0, "end_day": 0.5,
                "snapshot_every_h": 3.0, "checkpoint_every_h": 3.0},
        "lattice": {"shape": [4, 12, 12], "vessel_segment_sites": 4},
        "tumour": {"initial_cells": 60}, "output": {"fields": False}})
    ref = run_to_file(cfg, out_dir=tmp_path / "a", processes=[Churn], keep_checkpoints=True,
                      log=quiet)
    f = open_group(ref.path, "fields", load=True)
    assert f.il6.dims == ("snapshot", "z", "y", "x") and f.sizes["snapshot"] == 0
    c = open_group(ref.path, "cells", load=True)
    assert c.sizes["snapshot"] == 5 and c.z.attrs["units"] == "um"
    assert set(np.unique(c.z.values)) <= {10.0, 30.0, 50.0, 70.0}
    target = output_path(cfg, 3, tmp_path / "b")
    target.parent.mkdir(parents=True)
    shutil.copyfile(ref.path, target)
    run_to_file(cfg, out_dir=tmp_path / "b", resume=True, from_step=60, processes=[Churn],
                log=quiet)
    assert_same_datasets(ref.path, target)


# -- 3. bad files ----------------------------------------------------------------

@pytest.fixture
def bad_files(reference_latest, tmp_path):
    src = reference_latest.path
    size = src.stat().st_size
    files = {}
    files["missing"] = tmp_path / "missing.h5"
    files["truncated"] = tmp_path / "truncated.h5"
    with open(src, "rb") as f:
        files["truncated"].write_bytes(f.read(size // 2))
    files["not_hdf5"] = tmp_path / "text.h5"
    files["not_hdf5"].write_text("time,n_tumour\n0,200\n")
    files["other_schema"] = tmp_path / "v99.h5"
    shutil.copyfile(src, files["other_schema"])
    with h5py.File(files["other_schema"], "r+") as h5:
        h5.attrs["schema_version"] = np.int32(99)
    files["corrupted"] = tmp_path / "corrupted.h5"
    shutil.copyfile(src, files["corrupted"])
    with h5py.File(src) as h5:   # overwrite bytes inside the first chunk of a time series
        info = h5["timeseries/n_tumour"].id.get_chunk_info(0)
    with open(files["corrupted"], "r+b") as f:
        f.seek(info.byte_offset + 4)
        f.write(b"\xde\xad\xbe\xef" * 4)
    return files


@pytest.mark.parametrize("kind", ["missing", "truncated", "not_hdf5", "other_schema",
                                  "corrupted"])
def test_bad_files_give_one_line_errors(bad_files, kind):
    path = bad_files[kind]
    with pytest.raises(FileFormatError) as err:
        if kind == "corrupted":
            open_run(path)      # metadata is intact: the checksum fails on reading data
        else:
            check_file(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    expected = {"missing": "no such file", "truncated": "truncated", "not_hdf5": "not an HDF5",
                "other_schema": "schema version 99", "corrupted": "cannot read"}[kind]
    assert expected in msg
    res = subprocess.run([sys.executable, "-m", "abm", "inspect", str(path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2, res.stdout
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("abm: error: "), res.stderr


def test_resume_without_interrupted_run_is_one_line_error(tmp_path):
    with pytest.raises(FileFormatError, match="no interrupted run"):
        run_to_file(small_config(), out_dir=tmp_path, resume=True, log=quiet)


def test_cli_inspect_prints_summary(reference_latest):
    res = subprocess.run([sys.executable, "-m", "abm", "inspect", str(reference_latest.path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for text in (f"schema version:  {SCHEMA_VERSION}", "seed:            11", "config name:     io",
                 "days simulated:  2", "complete:        yes", "/timeseries", "time=49",
                 "/fields", "snapshot=5", "/cells", "/events", "/checkpoint", "step_480",
                 "checksums ok"):
        assert text in out, text


# -- checkpoint encoding ---------------------------------------------------------

def test_tagged_json_round_trips_types_exactly():
    value = {"a": 0.1, "b": [1, 2.5, None, True, "x"], (1, 2): (np.float32(1.1), np.int64(7)),
             "nan": float("nan"), "neg0": -0.0, "big": 2**70}
    back = ck.from_json(ck.to_json(value))
    assert back.keys() == value.keys()
    assert type(back[(1, 2)][0]) is np.float32 and back[(1, 2)][0] == np.float32(1.1)
    assert type(back[(1, 2)][1]) is np.int64
    assert np.isnan(back["nan"]) and str(back["neg0"]) == "-0.0" and back["big"] == 2**70
    assert back["b"] == value["b"]


def test_unserialisable_state_is_refused_when_checkpointing(tmp_path):
    cfg = small_config()
    sim = build_simulation(cfg, processes=[])
    sim.state.gadget = object()
    with h5py.File(tmp_path / "x.h5", "w") as h5:
        with pytest.raises(ck.CheckpointError, match="gadget|object"):
            ck.save_state(h5.create_group("s"), sim.state)


def test_state_arrays_dicts_and_lists_round_trip(tmp_path):
    cfg = small_config()
    sim = build_simulation(cfg, processes=[])
    st = sim.state
    st.blood = {"il6": np.arange(3.0), "names": ["a", "b"], "k": 2}
    st.history = [np.ones(2), (1, "x")]
    st.scalars["x"] = np.float64(0.25)
    st.events.append((1.5, "crs_onset", 1, "fever"))
    with h5py.File(tmp_path / "x.h5", "w") as h5:
        ck.save_state(h5.create_group("s"), st)
        other = build_simulation(cfg, processes=[], initialise=False)
        ck.restore_state(h5["s"], other.state)
    o = other.state
    assert np.array_equal(o.blood["il6"], np.arange(3.0)) and o.blood["names"] == ["a", "b"]
    assert o.history[1] == (1, "x") and np.array_equal(o.history[0], np.ones(2))
    assert o.scalars == st.scalars and type(o.scalars["x"]) is np.float64
    assert o.events == [(1.5, "crs_onset", 1, "fever")]
    assert o.cells.capacity == st.cells.capacity and o.cells.next_id == st.cells.next_id
    assert np.array_equal(o.cells.occ, st.cells.occ)


# -- 4. golden file -----------------------------------------------------------------

@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: p.stem)
def test_golden_file_still_opens_with_its_values(golden):
    """tests/data/golden_v<N>.h5 are frozen; golden_v<N>.json hold values taken from the
    simulation that wrote each (scripts/make_golden.py), which the reader must find."""
    GOLDEN = golden
    version = int(golden.stem.rsplit("_v", 1)[1])
    assert GOLDEN.exists() and GOLDEN.stat().st_size < 500_000
    facts = json.loads(GOLDEN.with_suffix(".json").read_text())
    prov = read_provenance(GOLDEN)
    assert prov["schema_version"] == version and prov["seed"] == facts["seed"] == 20260101
    assert prov["complete"] == 1 and prov["run_name"] == "golden"
    assert prov["config"]["lattice"]["shape"] == [24, 24]
    ds = open_run(GOLDEN)
    assert ds.sizes["time"] == facts["n_records"] == 73 and float(ds.time[-1]) == 3.0
    assert ds.time.attrs["units"] == "day" and int(ds.step[-1]) == facts["final_step"]
    assert set(facts["record_keys"]) <= set(ds.variables)
    assert ds.n_tumour.values[0] == 120
    for kind, n in facts["final_counts"].items():
        assert ds[f"n_{kind}"].values[-1] == n == ds.attrs[f"endpoint_final_n_{kind}"]
    for key, value in facts["endpoints"].items():
        got = ds.attrs[f"endpoint_{key}"]
        assert got == value or (np.isnan(got) and np.isnan(value)), key
    snaps = facts["snapshots"]
    fields = open_group(GOLDEN, "fields", load=True)
    assert fields.il6.shape == (4, 24, 24) and fields.il6.dtype == np.float32
    assert list(fields.snapshot_time.values) == [s["time"] for s in snaps] == [0, 1, 2, 3]
    assert [float(fields.il6[i].sum(dtype=np.float64)) for i in range(4)] == \
        [s["il6_sum_float32"] for s in snaps]
    cells = open_group(GOLDEN, "cells", load=True)
    assert list(cells["count"].values) == [s["n_live_cells"] for s in snaps]
    for i, snap in enumerate(snaps):
        c = cell_snapshot(cells, i)
        assert float(c.antigen.values[c.kind.values == 0].sum()) == snap["tumour_antigen_sum"]
    events = open_group(GOLDEN, "events", load=True)
    got = [[float(t), str(k), int(g), str(d)] for t, k, g, d in zip(
        events.time.values, events.kind.values, events.grade.values, events.detail.values)]
    assert got == facts["events"] and [e[1] for e in got].count("marker") == 3
    with h5py.File(GOLDEN) as h5:
        assert ck.list_checkpoints(h5) == [facts["final_step"]] == [720]
