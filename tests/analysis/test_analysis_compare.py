"""Comparison report of batches: calibration band, tests between trials, CAR-T kinetics, CLI.

Two small synthetic trials are written with :func:`helpers.runfiles.write_run`
(schema-1 files, one record an hour from day -1 to 10), so every rate,
onset and kinetic value is known by construction.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from abm.cli import main
from analysis.batch import open_batch
from analysis.compare import (AXICEL_MEDIANS, cart_kinetics, holm, run_kinetics, trial_tests)
from analysis.report import (CALIBRATION, calibration_table, in_band, product_costimulation)
from analysis.risk import risk_table
from helpers.runfiles import HOURLY, grade_series, write_run
from helpers.stats import wilson_by_hand

#: Per trial: product, CRS max grades, ICANS max grades, CRS onset day of run i, contraction.
TRIALS = {
    "trial_cd28": ("cd28", [0, 1, 1, 2, 2, 2, 3, 1, 1, 2], [0, 0, 0, 0, 0, 0, 3, 0, 0, 0],
                   lambda i: 1.0 + 0.25 * i, 0.3),
    "trial_41bb": ("4-1bb", [0, 0, 0, 0, 1, 1, 2, 3, 3, 1], [0, 0, 0, 0, 0, 0, 0, 0, 1, 3],
                   lambda i: 3.0 + 0.25 * i, 0.15),
}
PEAK_DAY, NADIR, NADIR_DAY = 6.0, 0.5, 2.0


def cart_curve(t, peak, k):
    """20 /uL after infusion falling to 0.5 at day 2, log-linear rise to ``peak`` at day 6,
    then log-linear contraction at ``k`` per day."""
    c = np.zeros_like(t)
    a = (t > 0) & (t <= NADIR_DAY)
    c[a] = 20.0 * np.exp(math.log(NADIR / 20.0) * t[a] / NADIR_DAY)
    b = (t > NADIR_DAY) & (t <= PEAK_DAY)
    c[b] = NADIR * np.exp(math.log(peak / NADIR) * (t[b] - NADIR_DAY) / (PEAK_DAY - NADIR_DAY))
    d = t > PEAK_DAY
    c[d] = peak * np.exp(-k * (t[d] - PEAK_DAY))
    return c


def write_trial(folder: Path, name: str) -> Path:
    prod, crs, icans, onset, k = TRIALS[name]
    folder.mkdir(parents=True)
    t = HOURLY
    for i, (gc, gi) in enumerate(zip(crs, icans)):
        day = onset(i)
        series = {"crs_grade": grade_series(t, [(day, day + 2, gc)] if gc else []),
                  "icans_grade": grade_series(t, [(day + 1, day + 2, gi)] if gi else []),
                  "blood_cart_per_ul": cart_curve(t, 20.0 * (i + 1), k),
                  "n_tumour": np.full(t.size, 100, np.int64)}
        write_run(folder / f"{name}_{i:05d}.h5", series, seed=i,
                  covariates={"product_preset": prod, "burden_cells": 10 ** (9 + 0.3 * i)})
    return folder


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    root = tmp_path_factory.mktemp("trials")
    return [write_trial(root / name, name) for name in TRIALS]


# -- calibration band ----------------------------------------------------------------------

def band_by_hand(k, n, target, tol=0.10):
    p = k / n
    lo, hi = wilson_by_hand(k, n)
    return min(lo, p - tol) <= target <= max(hi, p + tol)


@pytest.mark.parametrize("k, n, target, want", [
    (9, 10, 0.93, True),      # inside the Wilson interval (0.596, 0.982)
    (1, 10, 0.64, False),     # far above the interval (0.018, 0.404)
    (0, 5, 0.22, True),       # k = 0: interval (0, 0.434)
    (500, 1000, 0.59, True),  # narrow interval (0.469, 0.531), but within 10 points
    (500, 1000, 0.61, False),  # outside both
    (900, 1000, 0.80, True),  # exactly 10 points below
])
def test_in_band_from_known_k_and_n(k, n, target, want):
    lo, hi = wilson_by_hand(k, n)
    assert band_by_hand(k, n, target) is want
    assert in_band(k / n, lo, hi, target) is want
    assert in_band(math.nan, math.nan, math.nan, target) is None


def test_calibration_table_picks_the_target_by_costimulation():
    rows = []
    counts = {"A": [(9, 10), (1, 10), (1, 10), (2, 10)], "B": [(6, 10), (2, 10), (2, 10), (1, 10)]}
    labels = ["CRS any grade", "CRS grade >= 3", "ICANS any grade", "ICANS grade >= 3"]
    for g, kn in counts.items():
        for lab, (k, n) in zip(labels, kn):
            lo, hi = wilson_by_hand(k, n)
            rows.append({"group": g, "outcome": lab, "n": n, "k": k, "p": k / n, "lo": lo,
                         "hi": hi, "available": True})
    risk = pd.DataFrame(rows)
    cal = calibration_table(risk, {"A": "CD28", "B": "4-1BB", "C": None}, min_runs=1)
    assert cal["group"].tolist() == ["A"] * 4 + ["B"] * 4          # C: no target
    assert (cal["target"] * 100).round().tolist() == [93, 13, 64, 28, 58, 22, 21, 12]
    assert cal["cohort"].iloc[0] == CALIBRATION["CD28"][0]
    want = [band_by_hand(k, n, t / 100) for g in "AB" for (k, n), t in
            zip(counts[g], CALIBRATION["CD28" if g == "A" else "4-1BB"][1:])]
    assert cal["in_band"].tolist() == want
    assert want == [True, True, False, True, True, True, True, True]
    # band ends: the interval widened to +-10 points, clipped to [0, 1]
    a = cal.iloc[0]
    assert (a.band_lo, a.band_hi) == pytest.approx((min(a.lo, 0.8), max(a.hi, 1.0)))
    # a missing outcome: n = 0 and no verdict
    missing = calibration_table(risk[risk.outcome != "ICANS any grade"], {"A": "CD28"},
                                min_runs=1)
    assert missing["in_band"].tolist()[2] is None and missing["n"].tolist()[2] == 0


def test_product_costimulation_from_config_or_preset(tmp_path):
    t = HOURLY
    s = {"crs_grade": np.zeros(t.size)}
    write_run(tmp_path / "a.h5", s, covariates={"product_preset": "cd28"})
    write_run(tmp_path / "b.h5", s, covariates={"product_preset": "mycar"},
              config={"run": {"name": "b"}, "product": {"preset": "mycar",
                                                        "costimulation": "4-1BB"}})
    write_run(tmp_path / "c.h5", s, covariates={"product_preset": "other"})
    ds = open_batch(tmp_path)
    assert product_costimulation(ds) == {"cd28": "CD28", "mycar": "4-1BB", "other": None}


# -- kinetics ------------------------------------------------------------------------------

def test_run_kinetics_of_a_known_curve():
    t = HOURLY
    r = run_kinetics(t, cart_curve(t, 100.0, 0.2))
    assert r["cart_peak_per_ul"] == pytest.approx(100.0) and r["cart_peak_day"] == PEAK_DAY
    assert r["cart_nadir_per_ul"] == pytest.approx(NADIR)
    assert r["cart_fold_expansion"] == pytest.approx(100.0 / NADIR)
    assert r["cart_contraction_per_day"] == pytest.approx(0.2, rel=1e-9)
    # a level that only falls: peak at day 1, fold 1; too short a tail: no contraction rate
    fall = np.where(t > 0, 30 * np.exp(-t), 0.0)
    r = run_kinetics(t, fall)
    assert r["cart_peak_day"] == pytest.approx(1.0) and r["cart_fold_expansion"] == 1.0
    r = run_kinetics(t[t <= 7.5], cart_curve(t, 100.0, 0.2)[t <= 7.5])
    assert math.isnan(r["cart_contraction_per_day"])
    assert r["cart_fold_expansion"] == pytest.approx(200.0)
    assert math.isnan(run_kinetics(t[t < 0.5], fall[t < 0.5])["cart_peak_per_ul"])


def test_cart_kinetics_of_a_batch(trials):
    ds = open_batch(trials[0])
    per_run, course = cart_kinetics(ds, chunk_runs=3, max_points=100)
    assert len(per_run) == 10
    assert per_run["cart_fold_expansion"].to_numpy() == pytest.approx(
        20.0 * np.arange(1, 11) / NADIR)
    assert per_run["cart_contraction_per_day"].to_numpy() == pytest.approx(np.full(10, 0.3))
    # every 3rd record (265 -> <= 100) and the last one; median and quartiles over runs
    t = HOURLY
    assert course["time"].iloc[-1] == pytest.approx(t[-1]) and len(course) <= 100
    row = course[np.isclose(course["time"], 6.0)].iloc[0]
    peaks = 20.0 * np.arange(1, 11)
    assert (row["q25"], row["median"], row["q75"]) == pytest.approx(
        tuple(np.quantile(peaks, [0.25, 0.5, 0.75])))
    assert row["n"] == 10
    # without the variable: empty tables
    empty_runs, empty_course = cart_kinetics(ds.drop_vars("blood_cart_per_ul"))
    assert len(empty_runs) == 0 and len(empty_course) == 0


# -- tests between trials ------------------------------------------------------------------

def test_trial_tests_against_scipy_and_hand_values():
    a = pd.DataFrame({"trial": "A", "crs_onset_day": [1.0, 1.5, 2.0, np.nan, 1.2],
                      "follow_up_day": 10.0, "crs_max_grade": [1, 2, 1, 0, 3],
                      "icans_max_grade": [1, 1, 0, 0, 3]})
    b = pd.DataFrame({"trial": "B", "crs_onset_day": [3.0, np.nan, 4.0, 2.5, np.nan, 5.0],
                      "follow_up_day": 10.0, "crs_max_grade": [1, 0, 2, 1, 0, 1],
                      "icans_max_grade": [0, 0, 0, 1, 0, 0]})
    t = trial_tests(pd.concat([a, b]), ["A", "B"]).set_index(["endpoint", "test"])
    mw = t.loc[("CRS onset day (runs with CRS)", "Mann-Whitney U")]
    # U of A: pairs (A onset, B onset) with A larger: none, so U = 0
    assert mw.statistic == 0 and mw.p == pytest.approx(
        stats.mannwhitneyu([1.0, 1.5, 2.0, 1.2], [3.0, 4.0, 2.5, 5.0]).pvalue)
    fi = t.loc[("ICANS any grade", "Fisher exact")]
    # 3/5 against 1/6: odds ratio (3 * 5) / (2 * 1); p by the hypergeometric distribution
    assert fi.statistic == pytest.approx(7.5)
    hyper = stats.hypergeom(11, 4, 5)
    p_obs = hyper.pmf(3)
    want = sum(hyper.pmf(x) for x in range(0, 5) if hyper.pmf(x) <= p_obs * (1 + 1e-7))
    assert fi.p == pytest.approx(want)
    # log-rank by hand: U = sum (d_A - d n_A / n), V = sum d (n_A / n)(1 - n_A / n)(n - d)/(n - 1)
    ta = np.array([1.0, 1.5, 2.0, 10.0, 1.2])
    ea = np.array([1, 1, 1, 0, 1], bool)
    tb = np.array([3.0, 10.0, 4.0, 2.5, 10.0, 5.0])
    eb = np.array([1, 0, 1, 1, 0, 1], bool)
    U = V = 0.0
    for tj in np.unique(np.r_[ta[ea], tb[eb]]):
        na, n = (ta >= tj).sum(), (ta >= tj).sum() + (tb >= tj).sum()
        da, d = (ea & (ta == tj)).sum(), (ea & (ta == tj)).sum() + (eb & (tb == tj)).sum()
        U += da - d * na / n
        V += d * (na / n) * (1 - na / n) * (n - d) / (n - 1)
    lr = t.loc[("time to CRS onset (all runs)", "log-rank")]
    assert lr.statistic == pytest.approx(U / math.sqrt(V))     # > 0: A has the earlier onsets
    assert lr.p == pytest.approx(stats.chi2.sf(U * U / V, 1)) and "p_holm" not in t
    # three trials: Holm over the pairs
    c = a.assign(trial="C")
    t3 = trial_tests(pd.concat([a, b, c]), ["A", "B", "C"])
    sub = t3[t3.endpoint == "ICANS any grade"]
    assert sub["comparison"].tolist() == ["A vs B", "A vs C", "B vs C"]
    assert sub["p_holm"].to_numpy() == pytest.approx(holm(sub["p"].to_numpy()))


def test_holm_by_hand():
    p = np.array([0.01, 0.04, 0.03, np.nan])
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    assert holm(p)[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(holm(p)[3])


# -- the report and the CLI -----------------------------------------------------------------

def test_cli_with_two_batches_writes_the_comparison_report(trials, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["analyze", str(trials[0]), str(trials[1]), "--out", str(out), "-q"]) == 0
    assert "report in" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    for name in ("report.html", "endpoints.csv", "risk.csv", "calibration.csv", "tests.csv",
                 "kinetics.csv", "blood_cart_course.csv", "trend.csv",
                 "blood_cart_by_trial.png", "grade_distribution_by_trial.png",
                 "onset_by_trial.png"):
        assert (out / name).exists(), name
    for png in out.glob("*.png"):
        assert f"]({png.name})" in md
    # simulated versus target, verdicts from the known counts
    cal = pd.read_csv(out / "calibration.csv")
    assert cal["group"].tolist() == ["trial_cd28"] * 4 + ["trial_41bb"] * 4
    for r in cal.itertuples():   # 10 runs followed 10 days: too few and too short
        assert math.isnan(r.in_band) and not r.assessed
        assert r.verdict == "not assessed (n = 10 < 20; follow-up 10 d < 28 d)"
    kn = [(r.k, r.n) for r in cal.itertuples()]
    assert kn == [(9, 10), (1, 10), (1, 10), (1, 10), (6, 10), (2, 10), (2, 10), (1, 10)]
    lo, hi = wilson_by_hand(1, 10)
    assert (f"| trial_cd28 | ZUMA-1 axi-cel (CD28), n ~ 100 | neurotox / ICANS any grade | 10 | "
            f"1 | 10 % ({100 * lo:.0f}-{100 * hi:.0f}) | 64 % | not assessed (n = 10 < 20; "
            "follow-up 10 d < 28 d) |") in md
    assert "| trial_41bb | JULIET tisa-cel (4-1BB), n ~ 110 | CRS any grade | 10 | 6 |" in md
    # onset: CRS onset day 1 + i/4 (cd28) and 3 + i/4 (4-1bb) in the runs with CRS
    on_a = np.array([1.0 + 0.25 * i for i, g in enumerate(TRIALS["trial_cd28"][1]) if g])
    on_b = np.array([3.0 + 0.25 * i for i, g in enumerate(TRIALS["trial_41bb"][1]) if g])
    tests = pd.read_csv(out / "tests.csv").set_index(["endpoint", "test"])
    assert tests.loc[("CRS onset day (runs with CRS)", "Mann-Whitney U"), "p"] == pytest.approx(
        stats.mannwhitneyu(on_a, on_b).pvalue)
    assert tests.loc[("ICANS any grade", "Fisher exact"), "p"] == pytest.approx(
        stats.fisher_exact([[1, 9], [2, 8]]).pvalue)
    assert "| trial_cd28 | 10 | " in md and f"{np.median(on_a):.2g} [" in md
    # kinetics: fold expansion (20 (i + 1) / 0.5), contraction 0.3 and 0.15 per day
    kin = pd.read_csv(out / "kinetics.csv").set_index("trial")
    assert kin.loc["trial_cd28", "fold_expansion_median"] == pytest.approx(
        np.median(40.0 * np.arange(1, 11)))
    assert kin.loc["trial_41bb", "contraction_per_day_median"] == pytest.approx(0.15)
    assert kin.loc["trial_cd28", "peak_day_median"] == pytest.approx(PEAK_DAY)
    assert math.isnan(kin.loc["trial_cd28", "day14_median"])      # runs end at day 10
    assert f"| {AXICEL_MEDIANS[0][1]:g} |" in md and "~9.3" in md
    course = pd.read_csv(out / "blood_cart_course.csv")
    assert set(course["trial"]) == {"trial_cd28", "trial_41bb"}
    assert "## Risk vs tumour burden: trend test, by trial" in md
    ends = pd.read_csv(out / "endpoints.csv")
    assert len(ends) == 20 and {"trial", "cart_fold_expansion"} <= set(ends.columns)


def test_default_output_folder_and_three_batches(trials, tmp_path):
    from analysis.analyze import analyze
    path = analyze(list(trials), html_page=False)
    assert path == trials[0].parent / "compare_trial_cd28_vs_trial_41bb" / "report.md"
    assert path.exists()
    # the same folder twice gets a distinct label; three trials get Holm p-values
    path = analyze([trials[0], trials[1], trials[0]], tmp_path / "three", html_page=False)
    tests = pd.read_csv(path.parent / "tests.csv")
    assert "p_holm" in tests and "trial_cd28 (3)" in set(tests["comparison"].str.split(" vs ")
                                                          .str[-1])


def test_bad_paths_give_one_line_and_exit_2(trials, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["analyze", str(trials[0]), str(missing), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"abm: error: {missing}: no such file or folder"]
    run_file = next(trials[0].glob("*.h5"))
    assert main(["analyze", str(trials[0]), str(run_file), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a batch folder" in err[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["analyze", str(trials[0]), str(empty), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no complete run files found" in err[0]
    assert main(["analyze", str(trials[0]), str(trials[1]), "--by", "policy", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--by" in err[0]


def test_risk_of_the_synthetic_trials_matches_the_design(trials):
    ep = open_batch(trials[1]).abm.endpoints()
    r = risk_table(ep).set_index("outcome")
    assert (r.loc["CRS any grade", "k"], r.loc["ICANS grade >= 3", "k"]) == (6, 1)


def test_fold_over_nadir_is_the_kinetics_fold():
    from analysis.endpoints import fold_over_nadir
    t = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 5.0, 9.0, 12.0])
    c = np.array([0.0, 50.0, 4.0, 2.0, 3.0, 40.0, 200.0, 80.0])
    assert fold_over_nadir(t, c, 9.0) == (2.0, 100.0)   # day 0 (infusion) is not the nadir
    assert fold_over_nadir(t, c, 0.5) == (4.0, 1.0)     # falls only: fold 1
    r = run_kinetics(t, c, after_day=1.0)
    assert (r["cart_nadir_per_ul"], r["cart_fold_expansion"]) == (2.0, 100.0)
    assert all(np.isnan(fold_over_nadir(t[:2], c[:2], 0.0)))
