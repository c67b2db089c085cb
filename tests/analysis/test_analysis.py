"""Analysis layer: endpoints, risk intervals, onset curves, logistic fit, report and CLI.

Run files here are synthetic: :func:`helpers.runfiles.write_run` writes the schema-1 layout
(root provenance attributes, ``/timeseries`` as a netCDF-4 group, scalar
``/endpoints``) with h5py and the schema helpers, so every expected value is
known by construction. The report test copies the golden file (fields and
cells included) and overwrites its grades and covariates.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from abm.cli import main
from abm.errors import FileFormatError
import analysis.accessor  # noqa: F401  (ds.abm)
from analysis.batch import open_batch
from analysis.endpoints import dose_times, episodes, grade_summary, response, value_at
from analysis.io import open_run
from analysis.risk import (Outcome, binned_risk, cumulative_incidence, fit_logistic, proportion,
                           risk_table, wilson_interval)

from helpers.runfiles import GOLDEN, HOURLY, golden_batch, grade_series, write_run
from helpers.stats import Z, wilson_by_hand

ROOT = Path(__file__).resolve().parents[2]


#: Edge cases: name -> (spans, expected grade_summary with merge_gap_h = 24).
CASES = {
    "never": ([], dict(max_grade=0, onset_day=math.nan, duration_days=0, resolved_day=math.nan,
                       episodes=0, ongoing=0, grade3_onset_day=math.nan)),
    "from_start": ([(-1.0, 2.0, 1)], dict(max_grade=1, onset_day=-1.0, duration_days=3.0,
                                          resolved_day=2.0, episodes=1, ongoing=0,
                                          grade3_onset_day=math.nan)),
    "ongoing": ([(5.0, 99.0, 2)], dict(max_grade=2, onset_day=5.0, duration_days=5.0,
                                       resolved_day=math.nan, episodes=1, ongoing=1,
                                       grade3_onset_day=math.nan)),
    "merged": ([(1.0, 2.0, 1), (2.5, 3.0, 2)], dict(max_grade=2, onset_day=1.0,
                                                    duration_days=2.0, resolved_day=3.0,
                                                    episodes=1, ongoing=0,
                                                    grade3_onset_day=math.nan)),
    "two": ([(1.0, 2.0, 2), (5.0, 5.5, 3), (5.5, 6.0, 1)],
            dict(max_grade=3, onset_day=1.0, duration_days=2.0, resolved_day=6.0, episodes=2,
                 ongoing=0, grade3_onset_day=5.0)),
    # resolved at 9.5 but the run ends 12 h later: not confirmed (24 h rule), as the simulator
    "unconfirmed": ([(8.0, 9.5, 2)], dict(max_grade=2, onset_day=8.0, duration_days=1.5,
                                          resolved_day=math.nan, episodes=1, ongoing=0,
                                          grade3_onset_day=math.nan)),
    # an earlier confirmed resolution survives a new, ongoing episode
    "relapse": ([(1.0, 2.0, 1), (9.0, 99.0, 1)], dict(max_grade=1, onset_day=1.0,
                                                      duration_days=2.0, resolved_day=2.0,
                                                      episodes=2, ongoing=1,
                                                      grade3_onset_day=math.nan)),
}


def assert_summary(got: dict, want: dict, label=""):
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9, nan_ok=True), f"{label} {k}"


# -- endpoints on arrays ---------------------------------------------------------------

@pytest.mark.parametrize("name", list(CASES))
def test_grade_summary_edge_cases(name):
    spans, want = CASES[name]
    assert_summary(grade_summary(HOURLY, grade_series(HOURLY, spans)), want, name)


def test_episode_merging_gap_and_nan_padding():
    g = grade_series(HOURLY, [(1.0, 2.0, 1), (2.5, 3.0, 2)])
    assert len(episodes(HOURLY, g, merge_gap_h=24)) == 1
    eps = episodes(HOURLY, g, merge_gap_h=0)
    assert [(e["start"], e["end"]) for e in eps] == [pytest.approx((1.0, 2.0)),
                                                     pytest.approx((2.5, 3.0))]
    assert grade_summary(HOURLY, g, merge_gap_h=0)["duration_days"] == pytest.approx(1.5)
    # NaN padding (a shorter run in a batch) is ignored: the run "ends" at its last record
    padded = np.where(HOURLY > 6.0, np.nan, grade_series(HOURLY, [(5.0, 99.0, 2)]))
    s = grade_summary(HOURLY, padded)
    assert s["ongoing"] == 1 and s["duration_days"] == pytest.approx(1.0)
    assert math.isnan(grade_summary(HOURLY, np.full(HOURLY.size, np.nan))["max_grade"])


def test_response_value_at_and_dose_times():
    t = np.arange(0, 29.0)
    tum = np.where(t < 10, 100.0, 30.0)
    r = response(t, tum, 28)
    assert (r["tumour_change"], r["response"], r["response_day"]) == (pytest.approx(-0.7), "PR", 28)
    assert response(t, np.where(t < 5, 100.0, 0.0))["response"] == "CR"
    assert response(t, np.full(t.size, 100.0))["response"] == "SD"
    assert response(t, np.where(t < 5, 100.0, 160.0))["response"] == "PD"
    short = response(t[:8], tum[:8], 28)          # run ends at day 7: evaluated there
    assert short["response_day"] == 7 and short["response"] == "SD"
    assert value_at(t, t * 2, 7.0) == 14.0 and math.isnan(value_at(t, t, 40.0))
    # the whole tumour: SPD ~ cells^(2/3), CR below the detection limit, best response from day 14
    whole = np.where(t < 10, 1e11, np.where(t < 20, 3.0e10, 5e8))
    w = response(t, whole, 14, whole=True)
    assert (w["response"], w["best_response"]) == ("PR", "CR")      # (0.3)^(2/3) = 0.45 <= 0.5
    assert response(t, np.where(t < 10, 1e11, 4e10), 28, whole=True)["response"] == "SD"   # 0.54
    assert response(t, np.where(t < 10, 1e11, 2e11), 28, whole=True)["response"] == "PD"   # 1.59
    doses = np.array([0, 0, 1, 1, 3, 3.0])
    assert dose_times(np.arange(6.0), doses).tolist() == [2.0, 4.0, 4.0]


# -- intervals and risk ------------------------------------------------------------------

def test_wilson_matches_hand_values():
    # published values (e.g. Newcombe 1998, table I: 81/263 -> 0.2553-0.3662)
    assert wilson_interval(3, 10) == pytest.approx((0.1078, 0.6032), abs=5e-5)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=5e-5))
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=5e-5), 1.0)
    for k, n in [(1, 1), (7, 13), (15, 20), (4, 30), (99, 100)]:
        assert wilson_interval(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-12)
    lo, hi = wilson_interval(np.array([0, 5]), np.array([0, 10]))
    assert math.isnan(lo[0]) and math.isnan(hi[0]) and lo[1] < 0.5 < hi[1]
    b = proportion(np.r_[np.ones(30), np.zeros(70)], bootstrap=500)
    assert b["boot_lo"] < 0.3 < b["boot_hi"] and b["k"] == 30 and b["n"] == 100


def test_risk_table_by_group_equals_hand_wilson():
    grades = np.array([0] * 5 + [1] * 6 + [2] * 5 + [3] * 3 + [4] + [0] * 5 + [2] * 5, float)
    product = np.array(["cd28"] * 20 + ["4-1bb"] * 10, dtype=object)
    import pandas as pd
    table = pd.DataFrame({"crs_max_grade": grades, "product": product,
                          "icans_max_grade": np.nan})
    df = risk_table(table, by="product")
    want = {("cd28", "CRS any grade"): (15, 20), ("cd28", "CRS grade >= 3"): (4, 20),
            ("4-1bb", "CRS any grade"): (5, 10), ("4-1bb", "CRS grade >= 3"): (0, 10)}
    for (g, o), (k, n) in want.items():
        r = df[(df.group == g) & (df.outcome == o)].iloc[0]
        assert (r.k, r.n) == (k, n)
        assert (r.lo, r.hi) == pytest.approx(wilson_by_hand(k, n), abs=1e-12)
    icans = df[df.outcome.str.startswith("ICANS")]
    assert len(icans) == 4 and not icans.available.any() and icans.n.eq(0).all()
    assert Outcome("x", 3, "x").events([np.nan, 2, 3]).tolist()[1:] == [0.0, 1.0]


def test_cumulative_incidence_kaplan_meier_by_hand():
    onset = np.array([1.0, 2.0, np.nan, 2.0, np.nan])
    fu = np.array([10.0, 10.0, 3.0, 10.0, 1.5])
    ci = cumulative_incidence(onset, fu, origin=0.0)
    assert ci["time"].tolist() == [0.0, 1.0, 1.5, 2.0, 3.0]
    assert ci["at_risk"].tolist() == [5, 5, 4, 3, 1]
    s1, s2 = 0.8, 0.8 * (1 - 2 / 3)
    assert ci["cuminc"].tolist() == pytest.approx([0, 1 - s1, 1 - s1, 1 - s2, 1 - s2])
    gw = 1 / (5 * 4) + 2 / (3 * 1)          # Greenwood sum at t = 2
    se = math.sqrt(gw) / abs(math.log(s2))
    lo = 1 - math.exp(-math.exp(math.log(-math.log(s2)) - Z * se))
    hi = 1 - math.exp(-math.exp(math.log(-math.log(s2)) + Z * se))
    row = ci[ci.time == 2.0].iloc[0]
    assert (row.lo, row.hi) == pytest.approx((lo, hi))
    assert math.isnan(ci["lo"].iloc[0])      # no interval before the first event


def test_logistic_fit_recovers_slope_and_handles_separation():
    rng = np.random.default_rng(5)
    x = 10 ** rng.uniform(9, 12, 4000)
    p = 1 / (1 + np.exp(-(-21.0 + 2.0 * np.log10(x))))
    y = (rng.uniform(size=x.size) < p).astype(float)
    mle = fit_logistic(x, y, method="mle")
    firth = fit_logistic(x, y)
    assert mle.converged and firth.converged
    assert mle.coef == pytest.approx([-21.0, 2.0], abs=0.6 * np.sqrt(np.diag(mle.cov)).max() * 3)
    # the MLE solves the score equations X'(y - p) = 0
    u = np.log10(x)
    resid = y - 1 / (1 + np.exp(-(mle.coef[0] + mle.coef[1] * u)))
    assert abs(resid.sum()) < 1e-6 and abs((resid * u).sum()) < 1e-5
    assert firth.coef == pytest.approx(mle.coef, rel=0.02)
    pr, lo, hi = firth.predict([1e10, 1e11])
    assert np.all(lo < pr) and np.all(pr < hi)
    lo_s, hi_s = firth.slope_interval()
    assert lo_s < 2.0 < hi_s
    # perfect separation and a constant outcome: Firth stays finite, MLE declines
    xs = np.logspace(9, 12, 20)
    sep = fit_logistic(xs, (xs > 1e10).astype(float))
    assert sep is not None and np.all(np.isfinite(sep.coef)) and sep.coef[1] > 0
    const = fit_logistic(xs, np.zeros(20))
    assert const is not None and const.note and np.all(const.predict(xs)[0] < 0.1)
    assert fit_logistic(xs, np.zeros(20), method="mle") is None
    assert fit_logistic([1, 1, 1], [0, 1, 0]) is None


def test_binned_risk_counts():
    x = np.array([2e9, 3e9, 5e9, 2e10, 3e10, 4e11])
    e = np.array([0, 1, 0, 1, 1, 1.0])
    b = binned_risk(x, e)
    assert b["n"].tolist() == [3, 2, 1] and b["k"].tolist() == [1, 2, 1]
    assert b.loc[0, "lo_edge"] == 1e9 and b.loc[0, "hi_edge"] == 1e10
    assert (b.loc[0, "lo"], b.loc[0, "hi"]) == pytest.approx(wilson_by_hand(1, 3))


# -- endpoints from files (accessor) --------------------------------------------------------

def standard_series(spans, *, icans_spans=None, cart_peak=(4.0, 50.0)):
    t = HOURLY
    s = {"crs_grade": grade_series(t, spans),
         "blood_cart_per_ul": np.where(t < 0, 0.0, 30.0 * np.exp(-((t - 0.05) ** 2) / 0.01)
                                       + cart_peak[1] * np.exp(-((t - cart_peak[0]) ** 2)))
         , "plasma_il6": 5.0 + 100.0 * np.exp(-((t - 2.0) ** 2)),
         "n_tumour": np.where(t < 3, 1000, 400).astype(np.int64),
         "temperature_c": 37.0 + grade_series(t, spans),
         "tocilizumab_doses": np.where(t >= 1.5, 1.0, 0.0)}
    if icans_spans is not None:
        s["icans_grade"] = grade_series(t, icans_spans)
    return s


def test_endpoints_from_a_run_file_and_cross_check(tmp_path):
    spans, want = CASES["two"]
    p = write_run(tmp_path / "one.h5", standard_series(spans),
                  endpoints={"crs_max_grade": 3, "crs_onset_day": 1.01, "tocilizumab_doses": 2})
    ds = open_run(p)
    ep = ds.abm.endpoints()
    assert_summary({k[4:]: ep[k].item() for k in ep.data_vars if k.startswith("crs_")}, want)
    assert ep["blood_cart_peak_day"].item() == pytest.approx(4.0)   # infusion spike skipped
    assert ep["blood_cart_peak_per_ul"].item() == pytest.approx(50.0, rel=1e-3)
    assert ep["plasma_il6_peak_day"].item() == pytest.approx(2.0)
    assert ep["tocilizumab_doses"].item() == 1 and ep["tocilizumab_first_day"].item() == 1.5
    assert ep["response"].item() == "PR" and ep["tumour_change"].item() == pytest.approx(-0.6)
    assert ep["temperature_max_c"].item() == 40.0
    assert ep["drugs_used"].item() == "tocilizumab"
    # ICANS not recorded: NaN endpoints, reported as not available, not an error
    assert math.isnan(ep["icans_max_grade"].item()) and "icans" in ep.attrs["not_available"]
    assert not ds.abm.available("icans")
    with pytest.raises(KeyError, match="ICANS not available"):
        ds.abm.max_grade("icans")
    # lazy one-liners agree with the endpoint table
    assert ds.abm.onset("crs", 3).item() == pytest.approx(5.0)
    assert ds.abm.max_grade("crs").item() == 3
    # cross-check: the doses disagree on purpose (2 in the file, 1 recorded)
    chk = ds.abm.check_endpoints().set_index("endpoint")
    assert chk.loc["crs_max_grade", "mismatches"] == 0
    assert chk.loc["crs_onset_day", "mismatches"] == 0          # within one record
    assert chk.loc["tocilizumab_doses", "mismatches"] == 1


def test_golden_file_endpoints_agree_with_its_own():
    ds = open_run(GOLDEN)
    chk = ds.abm.check_endpoints()
    assert len(chk) >= 10 and chk["mismatches"].sum() == 0, chk[chk.mismatches > 0]


def test_batch_endpoints_equal_single_run_endpoints(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    for i, (name, (spans, _)) in enumerate(CASES.items()):
        write_run(folder / f"r{i}_{name}.h5", standard_series(spans, icans_spans=spans[:1]),
                  seed=i)
    ds = open_batch(folder)
    ep = ds.abm.endpoints(chunk_runs=3)       # several chunks
    for i, (name, (spans, want)) in enumerate(CASES.items()):
        one = ep.isel(run=i)
        assert_summary({k[4:]: one[k].item() for k in one.data_vars if k.startswith("crs_")},
                       want, name)
        single = open_run(folder / f"r{i}_{name}.h5").abm.endpoints()
        for k in ("crs_duration_days", "icans_max_grade", "blood_cart_peak_per_ul",
                  "tumour_change"):
            assert one[k].item() == pytest.approx(single[k].item(), nan_ok=True)
    assert ep.attrs["not_available"] == ""
    risk = ds.abm.risk()
    row = risk[risk.outcome == "ICANS any grade"].iloc[0]
    assert row.available and row.n == len(CASES)


# -- report and CLI ---------------------------------------------------------------------

def test_report_for_a_batch_and_a_run(tmp_path, capsys):
    grades = [0, 1, 2, 3, 1, 2, 0, 4]
    products = ["cd28", "cd28", "cd28", "cd28", "4-1bb", "4-1bb", "4-1bb", "4-1bb"]
    burdens = [2e9, 5e9, 3e10, 2e11, 3e9, 4e10, 6e10, 1e11]
    folder = golden_batch(tmp_path / "tiny", grades, products, burdens)
    assert main(["analyze", str(folder), "-q", "--bootstrap", "200"]) == 0
    out = folder / "report"
    md = (out / "report.md").read_text()
    # policy varies: its own rows (early = odd runs: grades 1, 3, 2, 4)
    assert "| policy | early | 4 | 100 % (51-100) 4/4 | 50 % (15-85) 2/4 |" in md
    # risk table: cd28 any grade 3/4, grade >= 3 1/4; 4-1bb 3/4 and 1/4; all 6/8 and 2/8
    lo, hi = wilson_by_hand(3, 4)
    assert f"{100 * 3 / 4:.0f} % ({100 * lo:.0f}-{100 * hi:.0f}) 3/4" in md
    assert "| all | all | 8 | 75 % (41-93) 6/8 | 25 % (7-59) 2/8 | not available |" in md
    assert "tiny_00008 | failed | ConfigError" in md and "tiny_00009 | pending" in md
    assert "8 loaded** of 10" in md and "test batch" in md
    assert "not available in these files: icans" in md
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"risk_vs_burden_cells.png", "grade_distribution_by_product.png",
            "onset_by_product.png", "patient_tiny_00007.png", "field_tiny_00007.png"} <= set(pngs)
    for name in pngs:
        assert f"]({name})" in md
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "report.html").read_text().count("<img") == len(pngs)
    import pandas as pd
    assert len(pd.read_csv(out / "endpoints.csv")) == 8
    risk = pd.read_csv(out / "risk.csv")
    assert {"boot_lo", "boot_hi"} <= set(risk.columns) and "grade_distribution_by_policy.png" in pngs
    # one run file: patient panel and endpoints
    assert main(["analyze", str(folder / "tiny_00003.h5"), "--out", str(tmp_path / "one"),
                 "--no-html", "-q"]) == 0
    one = (tmp_path / "one" / "report.md").read_text()
    assert "| crs_max_grade | 3 |" in one and (tmp_path / "one" / "patient.png").exists()
    capsys.readouterr()


def test_analyze_bad_input_is_one_line(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"abm: error: {tmp_path / 'nothing'}: no such file or folder"
    (tmp_path / "empty").mkdir()
    assert main(["analyze", str(tmp_path / "empty"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no complete run files found" in err[0]
    (tmp_path / "empty" / "junk.h5").write_text("not hdf5")
    assert main(["analyze", str(tmp_path / "empty"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "junk unreadable" in err[0]
    with pytest.raises(FileFormatError, match="not an HDF5 file"):
        open_run(tmp_path / "empty" / "junk.h5")


@pytest.mark.slow
def test_report_of_the_example_batch(tmp_path):
    """Real runs: configs/batch_example.toml (40 patients, ~3 min on 2 cores), then analyze."""
    assert main(["batch", str(ROOT / "configs" / "batch_example.toml"), "--out", str(tmp_path),
                 "-q"]) in (0, 1)
    folder = tmp_path / "example"
    assert main(["analyze", str(folder), "-q"]) == 0
    md = (folder / "report" / "report.md").read_text()
    assert "## Risk" in md and "risk_vs_burden_cells.png" in md
    ds = open_batch(folder)
    chk = ds.abm.check_endpoints().set_index("endpoint")
    for name in ("crs_max_grade", "crs_episodes", "tocilizumab_doses", "crs_onset_day"):
        assert chk.loc[name, "mismatches"] == 0, chk.loc[name]


def test_episode_gaps_near_the_merge_gap_are_flagged_uncertain():
    """Hourly records cannot tell a 23.5 h gap (one episode for the simulator) from a 24.5 h one."""
    t = np.arange(0, 10 * 24 + 1) / 24.0
    g = np.zeros(t.size)
    g[(t >= 1) & (t < 2)] = 1
    g[(t >= 3) & (t < 4)] = 1          # 24 h after the first ended: counted apart, uncertain
    g[(t >= 7) & (t < 8)] = 1          # 3 days later: certain
    s = grade_summary(t, g)
    assert s["episodes"] == 3 and s["episodes_uncertain"] == 1
