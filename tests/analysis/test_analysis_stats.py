"""The library statistics (statsmodels, scipy) against textbook values and the former
hand-written formulas they replaced (same methods: agreement to 1e-12)."""

import math

import numpy as np
import pytest
from scipy import stats

from analysis.compare import holm
from analysis.risk import bootstrap_interval, cumulative_incidence, proportion, wilson_interval

Z = float(stats.norm.ppf(0.975))


def wilson_formula(k, n):
    """The Wilson score interval as the analysis layer wrote it by hand before."""
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    return lo, (1.0 if k == n else min(1.0, centre + half))


def holm_formula(p):
    """Holm's step-down adjustment as written by hand before (NaN kept)."""
    p = np.asarray(p, float)
    out = np.full(p.shape, math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p[j]))
        out[j] = running
    return out


def km_formula(onset, follow_up):
    """Kaplan-Meier cumulative incidence with the Greenwood log(-log) band, by hand."""
    event = np.isfinite(onset)
    t = np.where(event, onset, follow_up)
    s, gw, rows = 1.0, 0.0, []
    for tj in np.unique(t):
        at_risk = int(np.count_nonzero(t >= tj))
        d = int(np.count_nonzero((t == tj) & event))
        if d:
            s *= 1.0 - d / at_risk
            gw = gw + d / (at_risk * (at_risk - d)) if at_risk > d else math.inf
        lo = hi = math.nan
        if 0 < s < 1 and math.isfinite(gw):
            se = math.sqrt(gw) / abs(math.log(s))
            lls = math.log(-math.log(s))
            lo = 1 - math.exp(-math.exp(lls - Z * se))
            hi = 1 - math.exp(-math.exp(lls + Z * se))
        elif s == 0:
            hi = 1.0
        rows.append((float(tj), at_risk, 1 - s, lo, hi))
    return rows


def test_wilson_textbook_and_formula():
    # Newcombe 1998, table I: 81/263 -> 0.2553-0.3662; 15/148 -> 0.0624-0.1605
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)
    for n in (1, 2, 5, 12, 24, 100, 263):
        for k in range(n + 1):
            assert wilson_interval(k, n) == pytest.approx(wilson_formula(k, n), abs=1e-12)


def test_holm_textbook_and_formula():
    # worked by hand (m = 4; sorted p times 4, 3, 2, 1, then a running maximum):
    # p = 0.01, 0.04, 0.03, 0.005 -> 0.03, 0.06, 0.06, 0.02
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-12)
    rng = np.random.default_rng(3)
    for m in (1, 2, 3, 7, 20):
        p = rng.uniform(0, 0.3, m)
        p[rng.uniform(size=m) < 0.2] = np.nan
        p[: m // 3] = p[0]                                  # ties
        got, want = holm(p), holm_formula(p)
        assert np.array_equal(np.isnan(got), np.isnan(want))
        assert got[~np.isnan(got)] == pytest.approx(want[~np.isnan(want)], abs=1e-12)


# Freireich 6-MP arm (Klein & Moeschberger, table 4.1): remission times, + censored.
SIX_MP = [(6, 1), (6, 1), (6, 1), (6, 0), (7, 1), (9, 0), (10, 1), (10, 0), (11, 0), (13, 1),
          (16, 1), (17, 0), (19, 0), (20, 0), (22, 1), (23, 1), (25, 0), (32, 0), (32, 0),
          (34, 0), (35, 0)]


def test_kaplan_meier_textbook_and_formula():
    t = np.array([x for x, _ in SIX_MP], float)
    e = np.array([d for _, d in SIX_MP], bool)
    onset, fu = np.where(e, t, np.nan), t
    ci = cumulative_incidence(onset, fu, origin=0.0).set_index("time")
    # Klein & Moeschberger table 4.1A: S(t) at the event times
    want_s = {6: 0.857, 7: 0.807, 10: 0.753, 13: 0.690, 16: 0.627, 22: 0.538, 23: 0.448}
    for day, s in want_s.items():
        assert 1 - ci.loc[float(day), "cuminc"] == pytest.approx(s, abs=5e-4)
    # the same estimator and band as the former hand formula, to 1e-12
    rng = np.random.default_rng(11)
    cases = [(onset, fu)]
    for _ in range(5):
        n = 30
        o = np.round(rng.exponential(5, n), 1)
        f = np.round(rng.uniform(1, 10, n), 1)
        cases.append((np.where(o <= f, o, np.nan), f))
    cases.append((np.array([1.0, 2.0, 2.0]), np.array([5.0, 5.0, 5.0])))   # S reaches 0
    for o, f in cases:
        got = cumulative_incidence(o, f, origin=0.0).iloc[1:]
        want = km_formula(o, f)
        assert got["time"].tolist() == [r[0] for r in want]
        assert got["at_risk"].tolist() == [r[1] for r in want]
        for col, i in (("cuminc", 2), ("lo", 3), ("hi", 4)):
            g, w = got[col].to_numpy(float), np.array([r[i] for r in want], float)
            assert np.array_equal(np.isnan(g), np.isnan(w)), col
            assert g[~np.isnan(g)] == pytest.approx(w[~np.isnan(w)], abs=1e-12), col


def test_bootstrap_is_deterministic_and_sane():
    y = np.r_[np.ones(30), np.zeros(70)]
    a = bootstrap_interval(y, n_boot=500, seed=4)
    assert a == bootstrap_interval(y, n_boot=500, seed=4)
    assert a[0] < 0.3 < a[1] and a != bootstrap_interval(y, n_boot=500, seed=5)
    assert bootstrap_interval(np.ones(5)) == (1.0, 1.0)
    assert bootstrap_interval([0.0, np.nan]) == (0.0, 0.0)
    assert all(math.isnan(v) for v in bootstrap_interval([np.nan]))
    b = proportion(y, bootstrap=500, seed=4)
    assert (b["boot_lo"], b["boot_hi"]) == a
