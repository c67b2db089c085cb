"""Checkpoint files: a damaged .part is rebuilt from the last checkpoint file; a damaged
checkpoint file is detected by its checksum; a full disk is one line with the free space."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pytest

from abm.config import config_from_dict
from abm.io import checkpoint as ck
from abm.io.h5file import part_path
from abm.io.run import output_path, run_to_file
from abm.triggers import AtSteps
from tests.helpers.compare import compare_h5, quiet

ROOT = Path(__file__).resolve().parents[2]
RUN = {"run": {"name": "ckf", "seed": 3, "start_day": 0.0, "end_day": 1.0,
               "snapshot_every_h": 6.0, "checkpoint_every_h": 4.0},
       "lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 100}}
CONFIG_TOML = textwrap.dedent("""
    [run]
    name = "ckf"
    seed = 3
    start_day = 0.0
    end_day = 1.0
    snapshot_every_h = 6.0
    checkpoint_every_h = 4.0
    [lattice]
    shape = [24, 24]
    [tumour]
    initial_cells = 100
""")


def config():
    return config_from_dict(RUN)


#: Attributes that record the resumes, and the Numba thread count of the process (the
#: CLI sets 1; results do not depend on it).
EXPECTED = ("/@restarts", "/@history", "/@env_numba_threads")


def assert_identical(a, b):
    """compare_outputs finds no difference but :data:`EXPECTED`."""
    _, diffs = compare_h5()(a, b)
    assert [d for d in diffs if d.split(":")[0] not in EXPECTED] == [], diffs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_to_file(config(), out_dir=tmp_path_factory.mktemp("ref"), log=quiet).path


def _interrupt_at(out: Path, step: int) -> Path:
    """Run until ``step``, then stop as a kill would (no clean-up beyond closing)."""
    def boom(sim):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_to_file(config(), out_dir=out, extra_writers=[(AtSteps([step]), boom)], log=quiet)
    return output_path(config(), 3, out)


def test_a_garbled_part_is_rebuilt_from_the_checkpoint_file(reference, tmp_path):
    path = _interrupt_at(tmp_path, 100)   # checkpoints every 80 steps (3 min): file at 80
    files = ck.checkpoint_files(path)
    assert [s for s, _ in files] == [80]
    part = part_path(path)
    data = bytearray(part.read_bytes())
    data[len(data) // 3: len(data) // 3 + 4096] = os.urandom(4096)   # a torn write
    part.write_bytes(bytes(data))
    notes = []
    res = run_to_file(config(), out_dir=tmp_path, resume=True, log=notes.append)
    assert res.resumed_from == 80 and assert_identical(res.path, reference) is None
    assert not part.exists() and ck.checkpoint_files(path) == []


def test_a_part_lost_entirely_is_rebuilt_too(reference, tmp_path):
    path = _interrupt_at(tmp_path, 170)
    part_path(path).unlink()
    res = run_to_file(config(), out_dir=tmp_path, resume=True, log=quiet)
    assert res.resumed_from == 160 and assert_identical(res.path, reference) is None


def test_a_damaged_checkpoint_file_is_refused_by_its_checksum(reference, tmp_path):
    path = _interrupt_at(tmp_path, 100)
    (_, f), = ck.checkpoint_files(path)
    data = bytearray(f.read_bytes())
    data[-100] ^= 0xFF
    f.write_bytes(bytes(data))
    notes = []
    assert ck.latest_checkpoint_file(path, notes.append) is None
    assert "damaged" in notes[0] and not f.exists()
    # the .part itself is still intact here: resume falls back to it
    res = run_to_file(config(), out_dir=tmp_path, resume=True, log=quiet)
    assert res.resumed_from == 80 and assert_identical(res.path, reference) is None


def test_a_fresh_run_removes_stale_checkpoint_files(tmp_path):
    path = _interrupt_at(tmp_path, 100)
    assert ck.checkpoint_files(path)
    run_to_file(config(), out_dir=tmp_path, log=quiet)
    assert ck.checkpoint_files(path) == [] and not part_path(path).exists()


ENOSPC_SCRIPT = textwrap.dedent("""
    import errno, sys
    from abm.io import writer
    calls = {{"n": 0}}
    original = writer.RunWriter.snapshot

    def snapshot(self, sim):
        calls["n"] += 1
        if {when}:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, sim)

    writer.RunWriter.snapshot = snapshot
    from abm.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _abm_with_full_disk(args, when: str):
    return subprocess.run([sys.executable, "-c", ENOSPC_SCRIPT.format(when=when), *args],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_disk_full_in_a_run_is_one_line_and_resumable(reference, tmp_path):
    cfg = tmp_path / "ckf.toml"
    cfg.write_text(CONFIG_TOML)
    res = _abm_with_full_disk(["run", str(cfg), "--out", str(tmp_path), "-q"],
                              'calls["n"] == 3')
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    line = res.stderr.strip()
    path = output_path(config(), 3, tmp_path)
    assert str(part_path(path)) in line and "No space left on device (ENOSPC)" in line
    assert " free on its file system" in line
    # space freed: --resume continues from the last checkpoint file to an identical result
    ok = subprocess.run([sys.executable, "-m", "abm", "run", str(cfg), "--out", str(tmp_path),
                         "--resume", "-q"], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert assert_identical(path, reference) is None
    assert errno.ENOSPC == 28


def test_disk_full_in_a_batch_fails_the_run_not_running(tmp_path):
    batch = tmp_path / "b.toml"
    batch.write_text(CONFIG_TOML.replace('name = "ckf"\nseed = 3\n', "")
                     + '[batch]\nname = "full"\nroot_seed = 5\nreplicates = 2\n')
    res = _abm_with_full_disk(["batch", str(batch), "--out", str(tmp_path), "--workers", "0",
                               "-q"], '"00001" in str(self.path)')
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    import csv
    with open(tmp_path / "full" / "manifest.csv", newline="") as fh:
        rows = {r["run_id"]: r for r in csv.DictReader(fh)}
    assert rows["full_00000"]["status"] == "done"
    assert rows["full_00001"]["status"] == "failed"
    assert "No space left on device" in rows["full_00001"]["error"]
    assert "free on its file system" in rows["full_00001"]["error"]
    assert not (tmp_path / "full" / "batch.lock").exists()
    with h5py.File(tmp_path / "full" / "full_00000.h5") as h5:
        assert int(h5.attrs["complete"]) == 1
