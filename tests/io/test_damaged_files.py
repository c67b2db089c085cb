"""Damaged run files are refused before they are trusted: inspect, open_run, open_batch, analyze.

From one tiny real run, variants: a flipped chunk (checksum), no
``/timeseries/time``, no ``/endpoints``, an empty ``/timeseries``, a truncated
file and an unfinished ``.part``. ``abm inspect`` and ``open_run`` refuse each
with one line (``inspect`` shows a ``.part`` as incomplete, which it is);
``abm analyze`` refuses a damaged single file and, in a batch folder, skips
each damaged run with one warning line and reports the good ones.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import h5py
import pytest

from abm.cli import main
from abm.config import config_from_dict
from abm.errors import FileFormatError
from abm.io.run import run_to_file
from analysis.batch import open_batch
from analysis.io import check_file, open_run

TINY = {"run": {"name": "dmg", "seed": 5, "start_day": -0.25, "end_day": 0.5,
                "snapshot_every_h": 6.0, "checkpoint_every_h": 6.0},
        "lattice": {"shape": [16, 16]}, "tumour": {"initial_cells": 40}}

#: variant -> what the one-line error says
EXPECTED = {
    "bitflip": "corrupted",
    "no_time": "no /timeseries/time",
    "no_endpoints": "no /endpoints",
    "empty_timeseries": "no /timeseries/time",
    "truncated": "truncated or not an HDF5 file",
}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good")
    return run_to_file(config_from_dict(TINY), out_dir=out, log=lambda _m: None).path


def damage(good: Path, folder: Path, kind: str) -> Path:
    path = folder / (f"{kind}.h5.part" if kind == "part" else f"{kind}.h5")
    shutil.copyfile(good, path)
    if kind == "bitflip":
        with h5py.File(good, "r") as h5:
            info = h5["timeseries/n_tumour"].id.get_chunk_info(0)
        with open(path, "r+b") as f:
            f.seek(info.byte_offset + 4)
            f.write(b"\xde\xad\xbe\xef" * 4)
    elif kind == "no_time":
        with h5py.File(path, "r+") as h5:
            del h5["timeseries/time"]
    elif kind == "no_endpoints":
        with h5py.File(path, "r+") as h5:
            del h5["endpoints"]
    elif kind == "empty_timeseries":
        with h5py.File(path, "r+") as h5:
            for name in list(h5["timeseries"]):
                del h5["timeseries"][name]
    elif kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "part":
        with h5py.File(path, "r+") as h5:
            h5.attrs["complete"] = 0
    return path


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("abm: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_open_run_and_check_file_refuse(good, tmp_path, kind):
    path = damage(good, tmp_path, kind)
    with pytest.raises(FileFormatError) as info:
        open_run(path)
    msg = str(info.value)
    assert EXPECTED[kind] in msg and str(path) in msg and "\n" not in msg
    assert "locked" not in msg
    if kind != "bitflip":   # metadata checks need no data read
        with pytest.raises(FileFormatError, match=EXPECTED[kind].replace("/", ".")):
            check_file(path)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_inspect_refuses_in_one_line(good, tmp_path, kind):
    path = damage(good, tmp_path, kind)
    rc, out, err = cli("inspect", str(path))
    assert rc == 2, out
    assert EXPECTED[kind] in one_error_line(err)
    assert "checksums ok" not in out


@pytest.mark.parametrize("kind", sorted(EXPECTED) + ["part"])
def test_analyze_refuses_a_damaged_or_unfinished_file(good, tmp_path, kind):
    path = damage(good, tmp_path, kind)
    rc, _, err = cli("analyze", str(path), "--out", str(tmp_path / "report"), "--no-html")
    assert rc == 2
    line = one_error_line(err)
    assert (EXPECTED.get(kind) or "unfinished run") in line
    assert not (tmp_path / "report" / "report.md").exists()


def test_part_file_is_inspected_as_incomplete(good, tmp_path):
    rc, out, _ = cli("inspect", str(damage(good, tmp_path, "part")))
    assert rc == 0 and "complete:        no" in out


@pytest.fixture
def batch_folder(good, tmp_path) -> Path:
    folder = tmp_path / "dmgbatch"
    folder.mkdir()
    for i in range(3):
        shutil.copyfile(good, folder / f"ok_{i}.h5")
    for kind in [*EXPECTED, "part"]:
        damage(good, folder, kind)
    return folder


def test_open_batch_skips_damaged_runs(batch_folder):
    ds = open_batch(batch_folder)
    assert sorted(ds.run.values.tolist()) == ["ok_0", "ok_1", "ok_2"]
    skipped = {s["run_id"]: s for s in ds.abm.skipped}
    assert set(skipped) == {*EXPECTED, "part"}
    for kind, text in EXPECTED.items():
        assert text in skipped[kind]["reason"], skipped[kind]
    assert skipped["part"]["status"] == "incomplete"


def test_open_batch_of_listed_files_never_reads_a_part(good, tmp_path):
    part = damage(good, tmp_path, "part")
    ok = tmp_path / "ok.h5"
    shutil.copyfile(good, ok)
    ds = open_batch([ok, part])
    assert ds.run.values.tolist() == ["ok"]
    assert ds.abm.skipped[0]["status"] == "incomplete"


def test_analyze_batch_skips_each_damaged_run_with_one_line(batch_folder, tmp_path):
    rc, _, err = cli("analyze", str(batch_folder), "--out", str(tmp_path / "rep"), "--no-html")
    assert rc == 0, err
    assert (tmp_path / "rep" / "report.md").exists()
    warned = [line for line in err.splitlines() if "skipped" in line and ": " in line]
    for kind in [*EXPECTED, "part"]:
        assert sum(f"skipped {kind}:" in line for line in warned) == 1, err
    assert "Traceback" not in err
