"""Batches: one batch per folder (lock, stale lock), damaged manifests, a dying worker."""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from abm.batch import batch_from_dict, expand_batch
from abm.batch.executors import LocalPool
from abm.batch.lock import LOCK, BatchLock, BatchLockedError, _pid_start
from abm.batch.manifest import Manifest, ManifestError
from abm.batch.runner import run_batch
from abm.io.run import run_to_file

ROOT = Path(__file__).resolve().parents[2]
RUN = {"run": {"start_day": 0.0, "end_day": 0.5, "snapshot_every_h": 3.0,
               "checkpoint_every_h": 3.0},
       "lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 50}}
TOML = """
[batch]
name = "r"
root_seed = 17
replicates = {n}
[run]
start_day = 0.0
end_day = {days}
snapshot_every_h = 3.0
checkpoint_every_h = 3.0
[lattice]
shape = [{side}, {side}]
[tumour]
initial_cells = 50
"""


def quiet(_msg):
    pass


def rows(folder) -> dict[str, dict]:
    with open(Path(folder) / "manifest.csv", newline="") as fh:
        return {r["run_id"]: r for r in csv.DictReader(fh)}


def abm(*args, **kw):
    return subprocess.run([sys.executable, "-m", "abm", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, **kw)


def one_error_line(res) -> str:
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


# -- the folder lock ---------------------------------------------------------------

def test_a_second_batch_on_the_folder_refuses_in_one_line(tmp_path):
    cfg = tmp_path / "r.toml"
    cfg.write_text(TOML.format(n=2, days=1.0, side=24))
    first = subprocess.Popen([sys.executable, "-m", "abm", "batch", str(cfg), "--out",
                              str(tmp_path), "--workers", "0", "-q"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "r" / LOCK
    t0 = time.monotonic()
    while not lock.exists() and time.monotonic() - t0 < 60:
        time.sleep(0.02)
    owner = json.loads(lock.read_text())
    assert owner["pid"] == first.pid and owner["host"] == socket.gethostname()
    for extra in ([], ["--resume"]):
        line = one_error_line(abm("batch", cfg, "--out", tmp_path, "--workers", "0", "-q",
                                  *extra))
        assert f"is being run by process {first.pid}" in line, line
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err   # the first batch is not disturbed
    assert [r["status"] for r in rows(tmp_path / "r").values()] == ["done", "done"]
    assert not lock.exists()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_stale_lock_is_taken_over_with_a_log_line(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(),
                                           "pid_start": "1", "started": "earlier"}))
    notes = []
    batch = batch_from_dict({**copy.deepcopy(RUN), "batch": {"name": "t", "root_seed": 1}})
    res = run_batch(batch, out=tmp_path, executor=_inprocess(), log=notes.append)
    assert res.done == 1
    assert any("no longer running; taking the folder over" in n for n in notes), notes
    assert not (folder / LOCK).exists()


def _inprocess():
    from abm.batch.executors import InProcess
    return InProcess()


def test_lock_of_a_live_process_or_another_host_is_respected(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK).write_text(json.dumps({"host": socket.gethostname(),
                                                 "pid": sleeper.pid,
                                                 "pid_start": _pid_start(sleeper.pid)}))
        with pytest.raises(BatchLockedError, match=f"process {sleeper.pid} on this host"):
            BatchLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    (tmp_path / LOCK).write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    with pytest.raises(BatchLockedError, match="on host elsewhere.*delete"):
        BatchLock(tmp_path).acquire()
    # a reused pid (alive, but started at another time) is not the owner
    (tmp_path / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(),
                                             "pid_start": "0"}))
    with BatchLock(tmp_path, log=quiet) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK).exists()


# -- damaged manifests ---------------------------------------------------------------

@pytest.mark.parametrize("content, what", [
    (b"\xff\xfe\x00garbage\x81\x82", "not a text CSV file"),
    (b"run_id,status,seed,config_hash\nr_00000,done,1,abc\n", "no index column"),
    (b"run_id,index,seed,status,config_hash\nr_00000,zero,1,done,abc\n",
     "line 2: index 'zero' is not an integer"),
    (b"run_id,index,seed,status,config_hash\nr_00000,0,1,finished,abc\n",
     "status 'finished' is not one of"),
    (b"run_id,index,seed,status,config_hash\nr_00000,0,1,done,abc\nr_00000,0,1,done,abc\n",
     "appears twice"),
])
def test_a_damaged_manifest_is_one_line(tmp_path, content, what):
    (tmp_path / "manifest.csv").write_bytes(content)
    with pytest.raises(ManifestError) as err:
        Manifest.load(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "manifest.csv") in msg and what in msg, msg


def test_batch_resume_with_a_garbage_manifest_is_one_line(tmp_path):
    cfg = tmp_path / "r.toml"
    cfg.write_text(TOML.format(n=1, days=0.25, side=24))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "manifest.csv").write_bytes(os.urandom(300) + b"\xff")
    line = one_error_line(abm("batch", cfg, "--out", tmp_path, "--resume", "--workers", "0",
                              "-q"))
    assert "manifest.csv: not a text CSV file" in line and "delete it and resume" in line
    assert not (tmp_path / "r" / LOCK).exists()


# -- a worker that dies ----------------------------------------------------------------

def test_a_killed_worker_fails_only_its_run_and_resume_finishes_it(tmp_path):
    cfg = {**copy.deepcopy(RUN), "batch": {"name": "w", "root_seed": 4, "replicates": 3}}
    cfg["run"]["end_day"] = 2.0
    cfg["lattice"]["shape"] = [32, 32]
    batch = batch_from_dict(cfg)
    killed = []
    with LocalPool(workers=2, threads=1) as pool:
        pool.warm_up()

        def kill_one():   # once both workers run, SIGKILL the first one mid-run
            t0 = time.monotonic()
            while time.monotonic() - t0 < 120:
                busy = [w for w in pool._procs if w.future is not None]
                if len(busy) == 2:
                    time.sleep(0.5)
                    killed.append(busy[0].proc.pid)
                    os.kill(busy[0].proc.pid, signal.SIGKILL)
                    return
                time.sleep(0.01)

        killer = threading.Thread(target=kill_one)
        killer.start()
        res = run_batch(batch, out=tmp_path, executor=pool, log=quiet)
        killer.join()
        assert killed, "no worker was killed"
        assert (res.done, res.failed) == (2, 1), res
        r = rows(tmp_path / "w")
        (failed,) = [row for row in r.values() if row["status"] == "failed"]
        assert f"worker process {killed[0]} died (killed by SIGKILL)" in failed["error"]
        assert failed["worker"] == "" or str(killed[0]) not in failed["worker"]
        # --resume finishes it, continuing its checkpoint when it had one
        res = run_batch(batch, out=tmp_path, executor=pool, resume=True, log=quiet)
        assert (res.done, res.failed, res.skipped) == (3, 0, 2)
    spec = next(s for s in expand_batch(batch) if s.run_id == failed["run_id"])
    ref = run_to_file(spec.resolve(), path=tmp_path / "ref.h5", log=quiet)
    import h5py
    import numpy as np
    with h5py.File(ref.path) as a, h5py.File(tmp_path / "w" / f"{spec.run_id}.h5") as b:
        for name in ("timeseries/time", "timeseries/n_tumour", "fields/il6", "cells/id"):
            assert np.array_equal(a[name][()], b[name][()]), name
