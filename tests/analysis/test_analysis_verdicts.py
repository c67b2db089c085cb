"""In-band verdicts only for cohorts with enough runs and follow-up."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from abm.cli import main
from analysis.calibration import assessable, calibration_table, shortest_follow_up
from analysis.notes import MIN_FOLLOW_UP_DAYS, MIN_RUNS
from helpers.runfiles import grade_series, write_run
from helpers.stats import wilson_by_hand

LABELS = ["CRS any grade", "CRS grade >= 3", "ICANS any grade", "ICANS grade >= 3"]


def risk_rows(group, counts):
    rows = []
    for lab, (k, n) in zip(LABELS, counts):
        lo, hi = wilson_by_hand(k, n)
        rows.append({"group": group, "outcome": lab, "n": n, "k": k, "p": k / n, "lo": lo,
                     "hi": hi, "available": True})
    return rows


def test_minima_are_stated():
    assert MIN_RUNS == 20 and MIN_FOLLOW_UP_DAYS == 28


@pytest.mark.parametrize("n, follow_up, want", [
    (4, 3.0, "n = 4 < 20; follow-up 3 d < 28 d"),
    (4, 28.0, "n = 4 < 20"),
    (20, 3.0, "follow-up 3 d < 28 d"),
    (20, 28.0, ""),
    (100, math.nan, ""),       # follow-up unknown: not held against the cohort
])
def test_assessable_names_the_reasons(n, follow_up, want):
    assert assessable(n, follow_up) == want


def test_small_short_cohort_is_not_assessed_however_wide_its_interval():
    # 0 of 2 against JULIET's 58 %: the Wilson interval (0, 0.66) holds the target
    risk = pd.DataFrame(risk_rows("4-1bb", [(0, 2)] * 4))
    cal = calibration_table(risk, {"4-1bb": "4-1BB"}, follow_up={"4-1bb": 3.0})
    assert cal["in_band"].isna().all() and not cal["assessed"].any()
    assert cal["verdict"].tolist() == ["not assessed (n = 2 < 20; follow-up 3 d < 28 d)"] * 4


def test_large_long_cohort_gets_a_verdict():
    risk = pd.DataFrame(risk_rows("cd28", [(38, 40), (0, 40), (26, 40), (12, 40)]))
    cal = calibration_table(risk, {"cd28": "CD28"}, follow_up={"cd28": 28.0})
    assert cal["assessed"].all()
    # 95 % vs 93 %: yes; 0 % (interval up to 8.8 %, band to 10 %) vs 13 %: no;
    # 65 % vs 64 %: yes; 30 % vs 28 %: yes
    assert cal["in_band"].tolist() == [True, False, True, True]
    assert cal["verdict"].tolist() == ["yes", "no (simulated below)", "yes", "yes"]


def test_shortest_follow_up_per_group():
    table = pd.DataFrame({"arm": ["a", "a", "b"], "follow_up_day": [28.0, 20.0, 30.0]})
    assert shortest_follow_up(table, "arm") == {"a": 20.0, "b": 30.0}


def _batch(folder, n_runs, end_day, crs_runs):
    folder.mkdir(parents=True)
    t = np.arange(0, end_day * 4 + 1) / 4.0
    for i in range(n_runs):
        crs = grade_series(t, [(1.0, 3.0, 2)] if i < crs_runs else [])
        write_run(folder / f"v_{i:05d}.h5", {"crs_grade": crs,
                                             "icans_grade": np.zeros(t.size)},
                  time=t, seed=i, covariates={"product_preset": "4-1bb"})
    return folder


def test_batch_report_verdicts(tmp_path):
    small = _batch(tmp_path / "small", 4, 3.0, 0)
    assert main(["analyze", str(small), "-q"]) == 0
    md = (small / "report" / "report.md").read_text()
    assert "not assessed (n = 4 < 20; follow-up 3 d < 28 d)" in md
    assert "| yes |" not in md and "at least 20 runs" in md
    cal = pd.read_csv(small / "report" / "calibration.csv")
    assert not cal["assessed"].any() and cal["in_band"].isna().all()

    big = _batch(tmp_path / "big", 20, 28.0, 12)     # 12 of 20 = 60 % vs JULIET 58 %
    assert main(["analyze", str(big), "-q"]) == 0
    md = (big / "report" / "report.md").read_text()
    cal = pd.read_csv(big / "report" / "calibration.csv")
    assert cal["assessed"].all()
    assert cal.loc[cal.outcome == "CRS any grade", "verdict"].item() == "yes"
    assert "| 58 % | yes |" in md and "| not assessed" not in md
