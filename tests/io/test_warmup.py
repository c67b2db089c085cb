"""Helper processes compiling a run's kernels on an empty Numba cache (:mod:`abm.io.warmup`)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from abm.io import warmup
from abm.kernels.jit import JIT_DISABLED


def _procs():
    phases = ["patient", "agents", "blood_to_tissue", "fields", "tissue_to_blood", "agents"]
    return [SimpleNamespace(phase=ph, i=i) for i, ph in enumerate(phases)]


def test_phase_order_follows_the_step():
    assert [p.i for p in warmup.phase_order(_procs())] == [2, 1, 5, 3, 4, 0]


def test_helpers_start_elsewhere_and_the_first_with_the_agents():
    procs = _procs()
    first = warmup.helper_order(procs, 0, 2)
    assert [p.i for p in first] == [1, 5, 3, 4, 0, 2]        # agents on, then the phases before
    second = warmup.helper_order(procs, 1, 2)
    assert [p.i for p in second] == [5, 1, 2, 0, 4, 3]       # reverse order, rotated by half
    for order in (first, second):
        assert sorted(p.i for p in order) == list(range(6))  # every process once


def test_no_helpers_on_a_cache_in_use(tmp_path, monkeypatch):
    (tmp_path / "kernel-1.py311.nbi").write_bytes(b"")
    assert not warmup.cache_is_empty(str(tmp_path))
    monkeypatch.setattr(warmup, "cache_is_empty", lambda: False)
    assert warmup.start(config=None, helpers=2) is None
    monkeypatch.setattr(warmup, "cache_is_empty", lambda: True)
    assert warmup.start(config=None, helpers=0) is None


SCRIPT = r"""
import json, sys
from abm.config import config_from_dict
from abm.io.run import run_to_file
from abm.kernels.jit import set_threads
set_threads(1)
cfg = config_from_dict({"lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 50},
                        "run": {"start_day": 0.0, "end_day": 0.05, "seed": 1}})
res = run_to_file(cfg, path=sys.argv[1], warmup=int(sys.argv[2]))
print(json.dumps({k: res.timings[k] for k in ("numba_cache_hits", "numba_cache_misses")}))
"""


@pytest.mark.skipif(JIT_DISABLED, reason="needs the JIT")
def test_a_cold_run_with_a_helper_writes_the_same_file(tmp_path):
    """The helper compiles part of the kernels (the run loads them), and nothing else changes."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    stats = {}
    for name, helpers in (("helped", 1), ("plain", 0)):
        res = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / f"{name}.h5"),
                              str(helpers)], env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr
        stats[name] = json.loads(res.stdout.strip().splitlines()[-1])
    assert stats["helped"]["numba_cache_hits"] > 0, stats     # kernels the helper compiled
    assert stats["plain"]["numba_cache_misses"] == 0, stats   # all cached by then
    spec = importlib.util.spec_from_file_location(
        "compare_outputs", Path(__file__).resolve().parents[2] / "scripts" / "compare_outputs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    _, diffs = mod.compare_h5(tmp_path / "helped.h5", tmp_path / "plain.h5")
    assert [d for d in diffs if not d.startswith("/@history")] == [], diffs   # history: a date


@pytest.mark.skipif(JIT_DISABLED, reason="needs the JIT")
def test_abm_compile_leaves_nothing_for_the_first_run_to_compile(tmp_path):
    """`abm compile` (what `make` runs at installation) fills an empty cache with every kernel a
    whole run calls, the time-series records' included: the run after it compiles nothing."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    config = tmp_path / "small.toml"
    config.write_text('[run]\nname = "small"\nstart_day = 0.0\nend_day = 0.05\nseed = 1\n'
                      '[lattice]\nshape = [24, 24]\n[tumour]\ninitial_cells = 50\n')
    res = subprocess.run([sys.executable, "-m", "abm", "compile", str(config)], env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    assert "kernels ready" in res.stderr + res.stdout
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run.h5"), "0"], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout.strip().splitlines()[-1])
    assert stats["numba_cache_misses"] == 0 and stats["numba_cache_hits"] > 0, stats
