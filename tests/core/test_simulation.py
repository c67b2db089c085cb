"""Simulation core: step order, triggers, seeds, the minimal CLI run."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from abm.config import config_from_dict
from abm.process import PHASES, Process
from abm.build import build_simulation
from abm.simulation import Simulation
from abm.triggers import AtSteps, Periodic, as_trigger

ROOT = Path(__file__).resolve().parents[2]

SMALL = {"lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 100},
         "run": {"start_day": 0.0, "end_day": 0.1, "seed": 5}}


def test_step_order_follows_phases():
    log = []

    def make(phase):
        class P(Process):
            pass
        P.phase = phase
        P.step = lambda self, state: log.append((state.step, phase))
        return P

    cfg = config_from_dict(SMALL)
    sim = build_simulation(cfg, processes=[make(p) for p in reversed(PHASES)])
    sim.run(steps=2)
    assert log == [(0, p) for p in PHASES] + [(1, p) for p in PHASES]
    assert sim.state.step == 2


def test_step_order_is_documented_in_run_docstring():
    doc = Simulation.run.__doc__
    positions = [doc.index(p) for p in PHASES]
    assert positions == sorted(positions)


def test_triggers():
    assert [s for s in range(10) if Periodic(3)(s)] == [0, 3, 6, 9]
    assert [s for s in range(10) if Periodic(4, phase=2)(s)] == [2, 6]
    assert [s for s in range(10) if AtSteps([1, 7])(s)] == [1, 7]
    assert isinstance(as_trigger(5), Periodic)
    with pytest.raises(TypeError):
        as_trigger("5")


def test_writers_fire_on_trigger_including_initial_state():
    cfg = config_from_dict(SMALL)
    sim = build_simulation(cfg, processes=[])
    seen = []
    sim.add_writer(5, lambda s: seen.append(s.state.step))
    sim.run(steps=12)
    assert seen == [0, 5, 10]


def test_seed_drawn_and_recorded_when_absent():
    cfg = config_from_dict({**SMALL, "run": {"start_day": 0.0, "end_day": 0.1}})
    a, b = build_simulation(cfg, processes=[]), build_simulation(cfg, processes=[])
    assert a.seed != b.seed and 0 <= a.seed < 2**63
    c = build_simulation(cfg, seed=a.seed, processes=[])
    assert np.array_equal(c.state.cells.antigen, a.state.cells.antigen)


def test_initial_conditions_reproducible_and_seed_dependent():
    cfg = config_from_dict(SMALL)
    a, b = build_simulation(cfg, processes=[]), build_simulation(cfg, processes=[])
    c = build_simulation(cfg, seed=6, processes=[])
    for col in ("site", "antigen", "kind"):
        assert np.array_equal(getattr(a.state.cells, col), getattr(b.state.cells, col))
    assert not np.array_equal(a.state.cells.antigen, c.state.cells.antigen)
    a.state.cells.check_invariants()
    t = cfg.tumour
    ag = a.state.cells.antigen[a.state.cells.rows_of(0)]
    assert np.count_nonzero(ag) > 0.9 * len(ag)


def test_cli_run_writes_under_runs(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(textwrap.dedent("""
        [run]
        name = "tiny"
        seed = 3
        start_day = 0.0
        end_day = 0.5
        [lattice]
        shape = [32, 32]
        [tumour]
        initial_cells = 200
    """))
    res = subprocess.run([sys.executable, "-m", "abm", "run", str(cfg), "--out",
                          str(tmp_path / "runs")], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    files = list((tmp_path / "runs" / "tiny").glob("*.h5"))
    assert len(files) == 1
    with h5py.File(files[0]) as f:
        assert f.attrs["complete"]
        assert int(f.attrs["seed"]) == 3
        assert len(f["timeseries"]["time"]) >= 12


def test_cli_help_and_bad_args():
    res = subprocess.run([sys.executable, "-m", "abm", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "run" in res.stdout and "validate" in res.stdout
    res = subprocess.run([sys.executable, "-m", "abm", "run", "does/not/exist.toml"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "not found" in res.stderr


def test_cli_bench_passes_the_trial_options_on(monkeypatch):
    import benchmarks.__main__ as bench
    seen = []
    monkeypatch.setattr(bench, "main", lambda argv: seen.append(argv) or 0)
    from abm.cli import main as cli_main
    assert cli_main(["bench", "trial", "--patients", "4", "--workers", "1", "--quick"]) == 0
    assert seen == [["trial", "--quick", "--patients", "4", "--workers", "1"]]
