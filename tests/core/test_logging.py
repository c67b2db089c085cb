"""Messages and progress: `abm run` with output in a file, -q, -v, --log-file, progress lines."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from abm import logs
from abm.cli import main as cli_main
from abm.progress import Progress, format_eta, interval_s

ROOT = Path(__file__).resolve().parents[2]

PROGRESS = re.compile(r"^abm: tiny: day [0-9.]+ of 2 \(\d+ %, step \d+/480\), "
                      r"(\d+|\?) steps/s, ETA (\d+:\d\d:\d\d|\?)$")
FINAL = re.compile(r"^abm: done in [0-9.]+ s .*; day 2: tumour \d+")


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    cfg = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    cfg.write_text(textwrap.dedent("""
        [run]
        name = "tiny"
        seed = 3
        start_day = 0.0
        end_day = 2.0
        [lattice]
        shape = [24, 24]
        [tumour]
        initial_cells = 100
    """))
    return cfg


def abm_run(args, stderr_file: Path, env=None):
    """``python -m abm run ARGS`` with stdout and stderr redirected to one file (a job log)."""
    with open(stderr_file, "w") as fh:
        res = subprocess.run([sys.executable, "-m", "abm", *args], stdout=fh,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                             env={**os.environ, **(env or {})})
    return res.returncode, stderr_file.read_text().splitlines()


def test_run_to_a_file_logs_progress_lines_and_the_final_line(tiny_config, tmp_path):
    """``abm run cfg > log.txt 2>&1`` writes a progress line every 10 % of the run."""
    rc, lines = abm_run(["run", str(tiny_config), "--out", str(tmp_path / "runs")],
                        tmp_path / "log.txt")
    assert rc == 0, lines
    assert lines[0].startswith("abm: running ") and "480 steps of 6 min" in lines[0]
    progress = [ln for ln in lines if PROGRESS.match(ln)]
    assert len(progress) == 10, lines   # 10 %, 20 %, ..., 100 %
    assert progress[-1].startswith("abm: tiny: day 2.00 of 2 (100 %, step 480/480)")
    assert any(FINAL.match(ln) for ln in lines), lines
    assert lines[-1].startswith("abm: wrote ") and lines[-1].endswith("MB)")
    assert not any("\r" in ln or "it/s" in ln for ln in lines)   # no tqdm bar in a file


def test_quiet_and_log_file(tiny_config, tmp_path):
    """-q keeps the console to warnings and results; --log-file gets everything, timestamped."""
    log_file = tmp_path / "abm.log"
    rc, lines = abm_run(["-q", "--log-file", str(log_file), "run", str(tiny_config),
                         "--out", str(tmp_path / "runs")], tmp_path / "out.txt")
    assert rc == 0, lines
    assert not any(PROGRESS.match(ln) or ln.startswith("abm: running") for ln in lines), lines
    assert any(FINAL.match(ln) for ln in lines)   # the result is printed even with -q
    text = log_file.read_text().splitlines()
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO +"
    assert re.match(stamp + r"abm\.cli: running ", text[0]), text
    assert sum(bool(re.match(stamp + r"abm\.simulation: tiny: day ", ln)) for ln in text) == 10
    assert re.match(stamp + r"abm\.cli: done in ", text[-2]) and "wrote" in text[-1]
    assert not any(" DEBUG " in ln for ln in text)


def test_verbose_after_the_command_and_log_file_appends(tiny_config, tmp_path):
    """-v (also after the command) adds debug lines; a wall interval of 0 s logs every step."""
    log_file = tmp_path / "abm.log"
    log_file.write_text("earlier line\n")
    rc, lines = abm_run(["run", str(tiny_config), "--out", str(tmp_path / "runs"), "-v",
                         "--log-file", str(log_file), "--days", "0.5"], tmp_path / "out.txt",
                        env={"ABM_PROGRESS_EVERY_S": "0"})
    assert rc == 0, lines
    assert any(ln.startswith("abm: first step (Numba compile") for ln in lines), lines
    steps = [ln for ln in lines if re.match(r"^abm: tiny: day .* \(\d+ %, step \d+/120\)", ln)]
    assert len(steps) == 119   # every step after the first (compile) one
    text = log_file.read_text().splitlines()
    assert text[0] == "earlier line" and any(" DEBUG   abm.io.run: first step" in ln
                                             for ln in text)


def test_error_goes_to_the_console_and_the_log_file(tmp_path, capsys):
    log_file = tmp_path / "abm.log"
    assert cli_main(["run", str(tmp_path / "missing.toml"), "-q", "--log-file",
                     str(log_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("abm: error: ") and "not found" in err[0]
    assert " ERROR   abm.cli: error: " in log_file.read_text()
    assert not logs._installed   # main() removed its handlers (and closed the file)
    assert cli_main(["--log-file", str(tmp_path / "no" / "such" / "dir.log"), "validate",
                     str(ROOT / "configs" / "default.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("abm: error: --log-file ")


def test_progress_lines_every_tenth_and_on_the_wall_interval(caplog):
    log = logging.getLogger("abm.test_progress")
    caplog.set_level(logging.INFO, logger="abm.test_progress")
    p = Progress(25, describe=lambda p: f"{p.done}/{p.total}", logger=log, bar=False,
                 every_s=3600)
    for _ in range(25):
        p.update()
    p.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"{k}/25" for k in (3, 5, 8, 10, 13, 15, 18, 20, 23, 25)]
    assert all(r.abm_progress == "lines" for r in caplog.records)
    caplog.clear()
    p = Progress(1000, done=400, describe=lambda p: str(p.done), logger=log, bar=False,
                 every_s=0)   # resumed at 40 %: the rate counts this call only
    p.tick()
    p.update(2)
    assert [r.getMessage() for r in caplog.records] == ["400", "402"]
    assert p.rate_per_s > 0 and p.eta_s > 0
    p.close()
    assert len(caplog.records) == 2   # the last update was logged already


def test_progress_helpers(monkeypatch):
    assert format_eta(3725.4) == "1:02:05" and format_eta(float("nan")) == "?"
    monkeypatch.setenv("ABM_PROGRESS_EVERY_S", "5")
    assert interval_s() == 5.0
    for bad in ("x", "-1", "inf"):
        monkeypatch.setenv("ABM_PROGRESS_EVERY_S", bad)
        assert interval_s() == 30.0


def test_say_routes_to_a_callable_or_a_logger(caplog):
    got = []
    logs.Say(logging.getLogger("abm.x"), got.append).warning("careful")
    assert got == ["abm: careful"]
    caplog.set_level(logging.INFO, logger="abm.x")
    logs.Say(logging.getLogger("abm.x")).info("hello")
    assert caplog.records[-1].getMessage() == "hello"
