"""Crash consistency: ``abm run`` killed (SIGKILL, SIGTERM) at random moments, then resumed.

Every resume must complete and the final file must equal an uninterrupted
run's (scripts/compare_outputs.py), but for the root attributes that record
the resumes themselves (``restarts``, ``history``). The kills are driven by
tests/helpers/killrun.py in its own process (see there); the default test sends
36 SIGKILL and 6 SIGTERM in ~40 s; the slow one kills real ``python -m abm run``
processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.compare import compare_h5

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "helpers" / "killrun.py"
#: Root attributes that differ by design after a resume (they record it).
RESUME_ATTRS = {"/@restarts", "/@history"}

CONFIG = textwrap.dedent("""
    [run]
    name = "kill"
    seed = 7
    start_day = 0.0
    end_day = {end_day}
    snapshot_every_h = 6.0
    checkpoint_every_h = 3.0
    [lattice]
    shape = [32, 32]
    [tumour]
    initial_cells = 200
""")


def _drive(tmp_path: Path, specs: list[dict]) -> list[dict]:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(specs))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    res = subprocess.run([sys.executable, str(DRIVER), str(spec_file)], capture_output=True,
                         text=True, cwd=ROOT, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _check(tmp_path: Path, reports: list[dict], outs: list[Path]) -> dict:
    compare = compare_h5()
    reference = tmp_path / "ref" / "kill" / "kill_seed7.h5"
    counts = {"SIGKILL": 0, "SIGTERM": 0, "exit_143": 0, "resumes": 0, "files": 0}
    for report, out in zip(reports, outs):
        assert not report["errors"], report["errors"][0]
        assert report["attempts"][-1] == 0, report
        counts["SIGKILL"] += report["signals"].count("KILL")
        counts["SIGTERM"] += report["signals"].count("TERM")
        counts["exit_143"] += report["attempts"].count(143)
        counts["resumes"] += len(report["attempts"]) - 1
        final = out / "kill" / "kill_seed7.h5"
        for path in [final, *sorted((out / "rounds").glob("*.h5"))]:
            _, diffs = compare(reference, path)
            assert [d for d in diffs if d.split(":")[0] not in RESUME_ATTRS] == [], diffs[:5]
            counts["files"] += 1
        left = sorted(p.name for p in (out / "kill").iterdir() if p != final)
        assert left == [], left   # no .part, no checkpoint file left behind
    print(f"kill anywhere: {counts}")
    return counts


def _plan(tmp_path: Path, n_runs: int, kills: list[str], max_delay_s: float, end_day=2.0,
          **extra):
    cfg = tmp_path / "kill.toml"
    cfg.write_text(CONFIG.format(end_day=end_day))
    specs = [{"seed": 0, "out": str(tmp_path / "ref"), "config": str(cfg), "kills": [],
              "name": "kill",
              "max_delay_s": 0, **extra}]
    outs = []
    for i in range(n_runs):
        out = tmp_path / f"k{i}"
        outs.append(out)
        specs.append({"seed": 100 + i, "out": str(out), "config": str(cfg), "kills": kills,
                      "name": "kill",
                      "max_delay_s": max_delay_s, **extra})
    return specs, outs


def test_sigkill_and_sigterm_anywhere_then_resume_is_identical(tmp_path):
    # 3 runs x (12 SIGKILL + 2 SIGTERM): kills anywhere in start-up, steps, snapshot,
    # checkpoint and checkpoint-file writes, the final compaction and renames
    kills = ["KILL"] * 6 + ["TERM"] + ["KILL"] * 6 + ["TERM"]
    specs, outs = _plan(tmp_path, 3, kills, max_delay_s=0.9)
    reports = _drive(tmp_path, specs)
    assert reports[0]["attempts"] == [0]
    counts = _check(tmp_path, reports[1:], outs)
    assert counts["SIGKILL"] >= 30 and counts["SIGTERM"] >= 5, counts
    assert counts["exit_143"] >= 5, counts   # a SIGTERM in the run: checkpoint, exit 143
    assert counts["files"] >= 3


@pytest.mark.slow
def test_real_processes_killed_anywhere_then_resume_is_identical(tmp_path):
    # a longer run, and kills after the ~1 s each process spends starting Python
    kills = (["KILL"] * 4 + ["TERM"]) * 5
    specs, outs = _plan(tmp_path, 3, kills, min_delay_s=0.9, max_delay_s=1.8, end_day=30.0,
                        subprocess=True)
    reports = _drive(tmp_path, specs)
    counts = _check(tmp_path, reports[1:], outs)
    assert counts["SIGKILL"] >= 45 and counts["SIGTERM"] >= 10, counts
