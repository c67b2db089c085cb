"""``abm batch`` with its output in a file: progress lines (done/failed/pending, runs/min, ETA)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BATCH = """
    [batch]
    name = "lg"
    root_seed = 7
    replicates = 3

    [run]
    start_day = 0.0
    end_day = 0.25
    [lattice]
    shape = [16, 16]
    [tumour]
    initial_cells = 30
"""


def test_batch_to_a_file_logs_progress_lines(tmp_path):
    cfg = tmp_path / "lg.toml"
    cfg.write_text(textwrap.dedent(BATCH))
    log_file = tmp_path / "batch.log"
    out = tmp_path / "out.txt"
    with open(out, "w") as fh:   # in this process (--workers 0): no pool start-up
        res = subprocess.run([sys.executable, "-m", "abm", "batch", str(cfg), "--workers", "0",
                              "--out", str(tmp_path / "runs"), "--log-file", str(log_file)],
                             stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=ROOT, env=dict(os.environ, ABM_PROGRESS_EVERY_S="3600"))
    lines = out.read_text().splitlines()
    assert res.returncode == 0, lines
    pat = re.compile(r"^abm: batch 'lg': (\d) done, 0 failed, (\d) pending of 3 runs, "
                     r"[0-9.]+ runs/min, ETA \d+:\d\d:\d\d$")
    progress = [m.groups() for m in map(pat.match, lines) if m]
    assert progress == [("1", "2"), ("2", "1"), ("3", "0")], lines
    assert sum(bool(re.match(r"^abm: \[\d/3\] lg_\d{5} done in ", ln)) for ln in lines) == 3
    assert any(ln.startswith("abm: batch 'lg': 3 done, 0 failed, 0 pending of 3 runs (this call")
               for ln in lines), lines
    assert lines[-1] == f"abm: analyse with: abm analyze {tmp_path / 'runs' / 'lg'}"
    text = log_file.read_text()
    assert "INFO    abm.batch.runner: batch 'lg': 3 done" in text
    assert "INFO    abm.batch.cli: analyse with: abm analyze" in text
