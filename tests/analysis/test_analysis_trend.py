"""Trend of risk over tumour burden: Cochran-Armitage and the logistic slope test.

Truths: the Cochran-Armitage statistic computed here from its formula with
small integers; Agresti's malformation / alcohol example (z = 2.56, one-sided
P = 0.005); the identity z^2 = N r^2; the likelihood-ratio statistic and
profile interval of the plain MLE recomputed by hand; simulated flat, rising
and falling risks (fixed seeds). The report test reuses the golden-file batch
of helpers.runfiles.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special, stats

from abm.cli import main
from analysis.risk import (Outcome, cochran_armitage, fit_logistic, trend_table, trend_test)
from helpers.runfiles import golden_batch


def burden_sample(seed: int, n: int, slope: float, base: float = -0.8):
    """Burdens log-uniform over 1e9..1e12 cells; P(event) = expit(base + slope (log10 x - 10.5))."""
    rng = np.random.default_rng(seed)
    x = 10 ** rng.uniform(9, 12, n)
    p = special.expit(base + slope * (np.log10(x) - 10.5))
    return x, (rng.uniform(size=n) < p).astype(float)


# -- Cochran-Armitage -------------------------------------------------------------------

def test_cochran_armitage_equals_the_formula_by_hand():
    # three ordered groups of 10 runs with 1, 3, 6 events, scores 0, 1, 2
    k, n, s = [1, 3, 6], [10, 10, 10], [0, 1, 2]
    N, K = 30, 10
    pbar = K / N                                                   # 1/3
    T = sum(si * (ki - ni * pbar) for si, ki, ni in zip(s, k, n))  # -1/3 + 16/3 = 5
    var = pbar * (1 - pbar) * (sum(ni * si * si for si, ni in zip(s, n))
                               - sum(ni * si for si, ni in zip(s, n)) ** 2 / N)  # 2/9 * 20
    assert T == pytest.approx(5.0) and var == pytest.approx(40 / 9)
    z = T / math.sqrt(var)                                         # 15 / sqrt(40) = 2.3717
    ca = cochran_armitage(k, n, s)
    assert ca.z == pytest.approx(z, rel=1e-12) and ca.z == pytest.approx(2.37170825, abs=1e-8)
    assert ca.statistic == pytest.approx(T) and ca.variance == pytest.approx(var)
    Phi = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))        # noqa: E731
    assert ca.p_increasing == pytest.approx(1 - Phi(z), rel=1e-9)
    assert ca.p_decreasing == pytest.approx(Phi(z), rel=1e-9)
    assert ca.p_two_sided == pytest.approx(2 * (1 - Phi(z)), rel=1e-9)
    assert (ca.n, ca.k, ca.n_groups) == (30, 10, 3)
    # default scores are the group index; scores act only through their spacing
    assert cochran_armitage(k, n).z == pytest.approx(z)
    assert cochran_armitage(k, n, [10, 11, 12]).z == pytest.approx(z)
    assert cochran_armitage(k, n, [0, 2, 4]).z == pytest.approx(z)
    # reversed order: the same |z|, opposite sign
    assert cochran_armitage(k[::-1], n[::-1]).z == pytest.approx(-z)
    # empty groups are ignored
    assert cochran_armitage([1, 0, 3, 6], [10, 0, 10, 10], [0, 5, 1, 2]).z == pytest.approx(z)


def test_cochran_armitage_agresti_example_and_correlation_identity():
    """Agresti (An Introduction to Categorical Data Analysis, 2nd ed., 2007, sec. 2.5):
    infant malformation by maternal alcohol consumption, scores 0, 0.5, 1.5, 4, 7;
    r = 0.0142, M^2 = (N - 1) r^2 = 6.57, one-sided z = 2.56, P = 0.005."""
    present = np.array([48, 38, 5, 1, 1])
    absent = np.array([17066, 14464, 788, 126, 37])
    s = np.array([0.0, 0.5, 1.5, 4.0, 7.0])
    n = present + absent
    ca = cochran_armitage(present, n, s)
    assert ca.z == pytest.approx(2.56, abs=0.005)
    assert ca.p_increasing == pytest.approx(0.005, abs=0.0005)
    # z^2 = N r^2, r the Pearson correlation of score and outcome over the 32,574 subjects
    N = n.sum()
    ms, my = (n * s).sum() / N, present.sum() / N
    cov = (present * s).sum() / N - ms * my
    r = cov / math.sqrt(((n * s * s).sum() / N - ms ** 2) * (my - my ** 2))
    assert r == pytest.approx(0.0142, abs=0.00005)
    assert ca.z ** 2 == pytest.approx(N * r * r, rel=1e-10)
    assert (N - 1) * r * r == pytest.approx(6.57, abs=0.01)


def test_cochran_armitage_degenerate_cases_are_nan():
    for k, n in (([0, 0, 0], [5, 5, 5]), ([5, 5, 5], [5, 5, 5]), ([2], [5])):
        ca = cochran_armitage(k, n)
        assert math.isnan(ca.z) and math.isnan(ca.p_increasing) and math.isnan(ca.p_two_sided)
    assert cochran_armitage([], []).n == 0
    with pytest.raises(ValueError):
        cochran_armitage([1, 2], [3, 4], [0, 1, 2])


# -- simulated trends --------------------------------------------------------------------

def test_flat_risk_does_not_reject():
    x, y = burden_sample(seed=11, n=400, slope=0.0)
    r = trend_test(x, y)
    assert r["n"] == 400 and r["n_bins"] == 3 and r["note"] == ""
    assert r["ca_p_two_sided"] > 0.05 and r["ca_p_increasing"] > 0.05
    assert r["slope_p"] > 0.05 and r["slope_p_wald"] > 0.05
    assert r["slope_lo"] < 0 < r["slope_hi"]
    # index scores give the same verdict here
    assert trend_test(x, y, scores="index")["ca_p_two_sided"] > 0.05


def test_rising_risk_rejects_and_the_interval_covers_the_true_slope():
    x, y = burden_sample(seed=12, n=400, slope=1.5)
    r = trend_test(x, y)
    assert r["ca_z"] > 3 and r["ca_p_increasing"] < 1e-3 and r["ca_p_two_sided"] < 1e-3
    assert r["slope_p"] < 1e-3
    assert 0 < r["slope_lo"] < 1.5 < r["slope_hi"]
    assert r["odds_ratio"] == pytest.approx(math.exp(r["slope"]))
    # one-sided p of a rise plus that of a fall is 1
    assert r["ca_p_increasing"] + r["ca_p_decreasing"] == pytest.approx(1.0)


def test_falling_risk_gives_one_sided_p_near_one():
    x, y = burden_sample(seed=13, n=400, slope=-1.5)
    r = trend_test(x, y)
    assert r["ca_z"] < -3
    assert r["ca_p_increasing"] > 0.999 and r["ca_p_decreasing"] < 1e-3
    assert r["slope_hi"] < 0 and r["slope_p"] < 1e-3


def test_likelihood_ratio_and_profile_interval_of_the_mle_by_hand():
    x, y = burden_sample(seed=14, n=300, slope=0.6)
    fit = fit_logistic(x, y, method="mle")
    u = np.log10(x)

    def loglik(b0, b1):
        eta = b0 + b1 * u
        return float(np.sum(y * eta - np.logaddexp(0, eta)))

    def profile(b1):   # maximum over the intercept with the slope fixed
        return -optimize.minimize_scalar(lambda b0: -loglik(b0, b1), bracket=(-30, 30)).fun
    K, N = y.sum(), y.size
    ll_null = K * math.log(K / N) + (N - K) * math.log(1 - K / N)
    lr = 2 * (loglik(*fit.coef) - ll_null)
    stat, p = fit.lr_test()
    assert stat == pytest.approx(lr, rel=1e-6) and p == pytest.approx(stats.chi2.sf(lr, 1))
    lo, hi = fit.profile_interval()
    crit = stats.chi2.ppf(0.95, 1)
    for end in (lo, hi):    # the ends are where the likelihood ratio reaches chi2(0.95)
        assert 2 * (loglik(*fit.coef) - profile(end)) == pytest.approx(crit, rel=1e-5)
    # with n = 300 the profile and Wald intervals nearly agree
    wlo, whi = fit.slope_interval()
    assert lo == pytest.approx(wlo, abs=0.1) and hi == pytest.approx(whi, abs=0.1)
    # trend_test with method="mle" reports the same
    r = trend_test(x, y, method="mle")
    assert (r["slope_lo"], r["slope_hi"], r["slope_p"]) == pytest.approx((lo, hi, p))


def test_firth_under_separation_lr_rejects_where_wald_does_not():
    xs = np.logspace(9, 12, 20)
    y = (xs > 1e10).astype(float)
    r = trend_test(xs, y)
    assert r["slope_p"] < 0.001 < 0.05 < r["slope_p_wald"]
    assert 0 < r["slope_lo"] < r["slope"] < r["slope_hi"]
    # 0 is outside the profile interval exactly when the LR test rejects (consistency)
    x, y2 = burden_sample(seed=15, n=60, slope=0.8)
    r2 = trend_test(x, y2)
    assert (r2["slope_lo"] > 0 or r2["slope_hi"] < 0) == (r2["slope_p"] < 0.05)


def test_trend_test_degenerate_and_trend_table():
    xs = np.logspace(9, 12, 20)
    for y, note in ((np.zeros(20), "no events"), (np.ones(20), "every run has the outcome")):
        r = trend_test(xs, y)
        assert r["note"] == note and math.isnan(r["ca_z"]) and math.isnan(r["slope"])
    assert trend_test([], [])["note"] == "no runs"
    with pytest.raises(ValueError):
        trend_test(xs, np.zeros(20), scores="rank")
    # a table with groups, an absent endpoint and NaN runs
    x, y = burden_sample(seed=16, n=200, slope=1.0)
    df = pd.DataFrame({"burden_cells": x, "crs_max_grade": 2 * y,
                       "arm": np.where(np.arange(200) % 2, "b", "a")})
    df.loc[:9, "crs_max_grade"] = np.nan
    outcomes = [Outcome("crs_max_grade", 1, "CRS any grade"),
                Outcome("icans_max_grade", 1, "ICANS any grade")]
    t = trend_table(df, "burden_cells", outcomes)
    crs = t[t.outcome == "CRS any grade"].iloc[0]
    assert crs.available and crs.n == 190 and crs.k == int(y[10:].sum())
    assert crs.ca_z == pytest.approx(trend_test(x[10:], y[10:])["ca_z"])
    icans = t[t.outcome == "ICANS any grade"].iloc[0]
    assert not icans.available and icans.n == 0 and math.isnan(icans.slope)
    by = trend_table(df, "burden_cells", outcomes[:1], by="arm")
    assert by["group"].tolist() == ["a", "b"] and by["by"].iloc[0] == "arm"
    assert by["n"].sum() == 190
    with pytest.raises(KeyError):
        trend_table(df, "dose_cells", outcomes)


# -- the batch report -------------------------------------------------------------------------

def test_batch_report_has_the_trend_table_under_the_risk_figure(tmp_path):
    grades = [0, 1, 2, 3, 1, 2, 0, 4]
    products = ["cd28"] * 4 + ["4-1bb"] * 4
    burdens = [2e9, 5e9, 3e10, 2e11, 3e9, 4e10, 6e10, 1e11]
    folder = golden_batch(tmp_path / "tiny", grades, products, burdens)
    assert main(["analyze", str(folder), "-q"]) == 0        # one path: the batch report
    out = folder / "report"
    md = (out / "report.md").read_text()
    fig = md.index("![Risk versus tumour burden](risk_vs_burden_cells.png)")
    head = md.index("**Risk vs tumour burden: trend test**")
    assert fig < head < md.index("### Maximal grade by")
    trend = pd.read_csv(out / "trend.csv")
    assert trend["outcome"].tolist() == ["CRS any grade", "CRS grade >= 3", "ICANS any grade",
                                         "ICANS grade >= 3"]
    any_crs = trend.iloc[0]
    g = np.array(grades, float)
    want = trend_test(burdens, (g >= 1).astype(float))
    assert any_crs["n"] == 8 and any_crs["k"] == 6
    assert any_crs["ca_z"] == pytest.approx(want["ca_z"])
    assert any_crs["slope_p"] == pytest.approx(want["slope_p"])
    row = (f"| CRS any grade | 8 | 6 | {want['ca_z']:+.2f} | ")
    assert row in md
    assert "| ICANS any grade | 0 | 0 | not available |" in md      # the golden file has no ICANS
    assert not trend.iloc[2]["available"]
    # the calibration section carries the in-band column
    assert "in band?" in md and (out / "calibration.csv").exists()
