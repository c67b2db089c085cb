"""The writer thread: the same file as writing on the simulation's thread, and its errors
surface on the simulation's thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from abm.build import build_simulation
from abm.config import config_from_dict
from abm.io import writer as W
from abm.io.h5file import StorageError
from abm.io.run import run_to_file
from tests.helpers.compare import compare_h5, quiet

RUN = {"run": {"name": "wt", "seed": 4, "start_day": 0.0, "end_day": 0.5,
               "snapshot_every_h": 3.0, "checkpoint_every_h": 2.0, "record_every_min": 30.0},
       "lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 100}}


def test_writer_thread_writes_what_the_simulation_thread_writes(tmp_path):
    cfg = config_from_dict(RUN)
    a = run_to_file(cfg, out_dir=tmp_path / "a", log=quiet)
    b = run_to_file(cfg, out_dir=tmp_path / "b", log=quiet, write_thread=False)
    _, diffs = compare_h5()(a.path, b.path)
    assert [d for d in diffs if d.split(":")[0] != "/@history"] == []   # (its time differs)
    assert a.timings["wall_write_background_s"] > 0.0 == b.timings["wall_write_background_s"]


def test_a_failed_write_is_raised_on_the_simulation_thread(tmp_path, monkeypatch):
    cfg = config_from_dict(RUN)
    calls = {"n": 0}
    original = W.RunWriter._snapshot_job

    def failing(self, snap):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return original(self, snap)

    monkeypatch.setattr(W.RunWriter, "_snapshot_job", failing)
    with pytest.raises(StorageError, match="No space left on device"):   # one line, as ever
        run_to_file(cfg, out_dir=tmp_path, log=quiet)
    # the writer closed the .part and stopped its thread
    assert list((tmp_path / "wt").glob("*.part"))
    assert not any(t.name == "abm-writer" for t in threading.enumerate())


def test_frozen_state_is_a_copy():
    sim = build_simulation(config_from_dict(RUN))
    st = sim.state
    st.scalars["x"] = 1.0
    st.events.append((0.0, "e", 0, "d"))
    frozen = W.frozen_state(st)
    st.scalars["x"] = 2.0
    st.events.append((0.1, "f", 0, "d"))
    st.fields += 1.0
    st.cells.activation[: st.cells.n] += 1.0
    assert frozen.scalars["x"] == 1.0 and len(frozen.events) == 1
    assert not np.array_equal(frozen.fields, st.fields)
    assert frozen.cells.n == st.cells.n
    assert not np.array_equal(frozen.cells.activation, st.cells.activation[: st.cells.n])
    assert not hasattr(frozen, "config") and not hasattr(frozen, "lattice")
