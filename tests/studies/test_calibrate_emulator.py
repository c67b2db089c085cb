"""History matching on cheap synthetic stochastic simulators (abm.studies.emulator).

The recovery test of the method: a known parameter point generates the
targets; after two waves it is still not ruled out and the NROY region has
shrunk around it. Simulators here are plain Python functions with noise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from abm.studies.emulator import (Emulator, HistoryMatching, Parameter, Settings, Target, combine,
                                  history_match, implausibility, lhs, maximin_subset)

TRUTH = np.array([0.3, 2.0])
PARAMS = [Parameter("a", 0.0, 1.0), Parameter("b", 0.5, 8.0, "log")]
NOISE = np.array([0.05, 0.05, 0.03])


def response(x: np.ndarray) -> np.ndarray:
    """Three smooth summaries of two parameters (one non-linear, one logistic)."""
    a, b = x[:, 0], x[:, 1]
    return np.column_stack([np.sin(3 * a) + 0.5 * a, np.log(b) + a,
                            1 / (1 + np.exp(-(a - 0.5) * 5 - np.log(b)))])


def make_targets() -> list[Target]:
    z = response(TRUTH[None])[0]
    return [Target(f"t{j}", z[j], NOISE[j] ** 2, 0.02 ** 2) for j in range(3)]


@pytest.fixture(scope="module")
def matched():
    rng = np.random.default_rng(0)
    calls = []

    def simulate(x, wave):
        calls.append((wave, len(x)))
        return response(x) + rng.normal(0, NOISE, (len(x), 3))

    hm, draws = history_match(PARAMS, make_targets(), simulate, waves=2, points=20,
                              settings=Settings(seed=3, candidates=20_000), samples=400)
    return hm, draws, calls


def test_parameter_maps_ranges_to_the_unit_cube():
    p = Parameter("x", 0.1, 10.0, "log")
    assert p.from_unit([0.0, 0.5, 1.0]) == pytest.approx([0.1, 1.0, 10.0])
    assert p.to_unit(p.from_unit([0.2, 0.7])) == pytest.approx([0.2, 0.7])
    k = Parameter("k", 10, 22, integer=True)
    assert k.from_unit([0.0, 0.51, 1.0]).tolist() == [10.0, 16.0, 22.0]
    with pytest.raises(ValueError):
        Parameter("bad", 0.0, 1.0, "log")


def test_implausibility_and_its_measures():
    t = Target("t", 1.0, obs_var=0.03, disc_var=0.01)
    # |1 - 0.4| / sqrt(0.04 + 0.02 + 0.03 + 0.01) = 0.6 / 0.316...
    assert implausibility(0.4, 0.04, t, pop_var=0.02) == pytest.approx(0.6 / math.sqrt(0.1))
    imp = np.array([[5.0, 1.0, 2.0], [0.5, np.nan, 4.0], [np.nan, np.nan, np.nan]])
    assert combine(imp, "max").tolist() == [5.0, 4.0, 0.0]
    assert combine(imp, "second_max").tolist() == [2.0, 0.5, 0.0]
    assert combine(imp, "third_max").tolist() == [1.0, 0.5, 0.0]   # fewer targets: the smallest


def test_latin_hypercube_strata_and_maximin_subset():
    rng = np.random.default_rng(1)
    u = lhs(10, 3, rng)
    for j in range(3):   # one point in each tenth of every axis
        assert sorted(np.floor(u[:, j] * 10).astype(int)) == list(range(10))
    cands = rng.random((500, 2))
    sub = maximin_subset(cands, 8, rng)
    assert sub.shape == (8, 2)
    d = np.sqrt(((sub[:, None] - sub[None]) ** 2).sum(-1)) + np.eye(8)
    assert d.min() > 0.15   # spread out, unlike 8 random candidates


def test_emulator_learns_the_noise_and_predicts_the_mean():
    rng = np.random.default_rng(2)
    u = rng.random((40, 1))
    f = lambda x: np.sin(4 * x[:, 0]) + x[:, 0]            # noqa: E731
    y = f(u) + rng.normal(0, 0.1, 40)
    em = Emulator(seed=0).fit(u, y)
    assert 0.05 < em.noise_sd < 0.2
    grid = np.linspace(0.05, 0.95, 19)[:, None]
    m, var = em.predict(grid)
    assert np.abs(m - f(grid)).max() < 0.15
    # the variance of the mean is well below the noise: the data are not interpolated
    assert np.median(var) < 0.1 ** 2


def test_emulator_skips_missing_summaries():
    u = np.linspace(0, 1, 8)[:, None]
    y = np.where(np.arange(8) == 3, np.nan, 2 * u[:, 0])
    em = Emulator().fit(u, y)
    assert em.n == 7
    assert em.predict([[0.5]])[0][0] == pytest.approx(1.0, abs=0.1)


def test_recovery_truth_stays_and_the_region_shrinks_around_it(matched):
    hm, draws, calls = matched
    assert calls == [(1, 20), (2, 20)]
    truth_u = hm.units(TRUTH[None])
    assert hm.nroy_mask(truth_u)[0], f"truth ruled out (measure {hm.measure(truth_u)})"
    f1, f2 = (w.nroy_fraction for w in hm.waves)
    assert 0 < f2 <= f1 < 0.2          # most of the box ruled out after wave 1, less left after 2
    assert len(draws) == 400
    lo, hi = draws.min(0), draws.max(0)
    assert np.all(lo <= TRUTH) and np.all(TRUTH <= hi)
    # shrunk around the truth: the kept ranges are a small part of the prior ranges
    assert (hi[0] - lo[0]) < 0.5 and np.log(hi[1] / lo[1]) < 0.5 * np.log(8.0 / 0.5)
    assert np.all(draws >= [0.0, 0.5]) and np.all(draws <= [1.0, 8.0])
    # wave 2 was designed inside the NROY region of wave 1
    assert hm.nroy_mask(hm.waves[1].u, waves=hm.waves[:1]).all()


def test_a_far_point_is_ruled_out(matched):
    hm, _, _ = matched
    assert not hm.nroy_mask(hm.units(np.array([[0.9, 0.6]])))[0]


def test_same_seed_same_result():
    def run():
        rng = np.random.default_rng(5)
        return history_match(PARAMS, make_targets(),
                             lambda x, w: response(x) + rng.normal(0, NOISE, (len(x), 3)),
                             waves=1, points=12, settings=Settings(seed=9, candidates=5000),
                             samples=50)[1]
    np.testing.assert_array_equal(run(), run())


def test_common_seed_rates_with_population_variance():
    """A rate simulated on one shared sample of patients (common seeds): the shared
    sampling error is invisible to the emulator's noise term, so the implausibility
    adds p (1 - p) / n; with it the truth survives although the sample is off."""
    n = 20
    true_rate = lambda x: 1 / (1 + np.exp(-8 * (x[:, 0] - 0.5)))      # noqa: E731
    shared = np.random.default_rng(11).random(n)      # the same virtual patients everywhere

    def simulate(x, wave):
        p = true_rate(x)
        y = (shared[None, :] < p[:, None]).mean(1)    # paired: same uniforms at every point
        return y[:, None], None

    truth = np.array([[0.6]])
    target = Target("rate", float(true_rate(truth)[0]), obs_var=0.02 ** 2, disc_var=0.0,
                    rate_n=n)
    hm, draws = history_match([Parameter("x", 0.0, 1.0)], [target], simulate, waves=2,
                              points=10, settings=Settings(seed=1, candidates=5000), samples=200)
    assert hm.nroy_mask(truth)[0]
    assert draws.min() <= 0.6 <= draws.max()
    assert hm.waves[-1].nroy_fraction < 0.8


def test_an_unreachable_target_empties_the_region():
    targets = [Target("t", 10.0, obs_var=0.01, disc_var=0.0)]
    hm = HistoryMatching([Parameter("x", 0.0, 1.0)], targets, Settings(seed=0, candidates=2000))
    u = hm.design(8)
    hm.add_wave(u, u[:, :1] * 0.1)
    assert hm.waves[0].nroy_fraction == 0
    assert len(hm.design(5)) == 0
    draws, frac = hm.nroy_sample(10)
    assert draws.shape == (0, 1) and frac == 0


@pytest.mark.parametrize("measure", ["max", "second_max", "third_max"])
def test_the_early_exit_mask_equals_the_measure(matched, measure):
    hm, _, _ = matched
    hm2 = HistoryMatching(hm.parameters, hm.targets, Settings(seed=3, measure=measure))
    hm2.waves = hm.waves
    c = np.random.default_rng(4).random((3000, 2))
    np.testing.assert_array_equal(hm2.nroy_mask(c), hm2.measure(c) <= hm2.settings.cutoff)


def test_a_large_seed_is_folded_into_the_32_bit_range():
    # a calibration seeded with a date (20261207) derives emulator seeds ~2e10
    u = np.linspace(0.0, 1.0, 6)[:, None]
    em = Emulator(seed=20261207 * 1000 + 5).fit(u, u[:, 0] ** 2)
    assert 0 <= em.seed < 2**32 and em.n == 6
