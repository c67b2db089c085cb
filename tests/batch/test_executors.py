"""The local pool's set-up: workers in sessions of their own, Numba threads at most cores // workers."""

from __future__ import annotations

import os

import pytest

from abm.batch import batch_from_dict, expand_batch
from abm.batch import worker
from abm.batch.executors import LocalPool, usable_cores
from abm.kernels.jit import JIT_DISABLED, set_threads

TINY = {"run": {"start_day": 0.0, "end_day": 0.05, "snapshot_every_h": 1.0,
                "checkpoint_every_h": 1.0},
        "lattice": {"shape": [16, 16]}, "tumour": {"initial_cells": 20}}


def test_threads_are_capped_so_that_workers_never_oversubscribe_the_cores():
    cores = usable_cores()
    pool = LocalPool(workers=2, threads=64)   # processes start on first use only
    assert pool.max_threads == max(1, cores // 2)
    assert pool.threads == pool.max_threads
    assert LocalPool(workers=1, threads=1).threads == 1
    assert LocalPool(workers=4 * cores).max_threads == 1
    assert LocalPool(workers=1).threads is None   # the run config's run.threads, capped


@pytest.mark.skipif(JIT_DISABLED, reason="Numba threads only exist with the JIT")
def test_a_worker_caps_the_threads_a_task_asks_for(tmp_path, monkeypatch):
    batch = batch_from_dict({**TINY, "batch": {"name": "c", "root_seed": 5}})
    task = expand_batch(batch)[0].task(tmp_path, resume=False, threads=2)
    before = set_threads(None)
    monkeypatch.setitem(worker._STATE, "max_threads", 1)
    try:
        out = worker.execute(task)
        assert out["status"] == "done", out
        assert set_threads(None) == 1
    finally:
        set_threads(before)


@pytest.mark.skipif(not hasattr(os, "setsid"), reason="POSIX sessions only")
@pytest.mark.parametrize("own", [True, False])
def test_workers_start_sessions_of_their_own(own):
    """So that autogroup scheduling gives each worker a CPU share (see abm.batch.executors)."""
    with LocalPool(workers=2, threads=1, own_session=own) as pool:
        pool._fill()
        for w in pool._procs:   # a reply means the worker is past its set-up
            w.send(("ping", None))
        for w in pool._procs:
            assert w.conn.recv() == w.proc.pid
        sessions = {os.getsid(pid) for pid in pool.pids()}
    if own:
        assert len(sessions) == 2 and os.getsid(0) not in sessions
    else:
        assert sessions == {os.getsid(0)}


def test_priming_loads_the_kernels_and_never_raises():
    assert worker.prime_kernels() > 0.0
