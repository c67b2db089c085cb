"""Re-lifting the patches: the Poisson test, adding and removing cells, the rates' base counts."""

import math

import numpy as np
import pytest
from scipy.stats import poisson

from abm.build import build_simulation
from abm.cells import CART, TUMOUR, TUMOUR_ALIVE
from abm.model.coupling import PatchRates, bed_scale
from abm.model.initial import tumour_sites
from abm.model.relift import PatchRelift, outside_poisson_interval
from tests.helpers.patients import small


def _relift(sim):
    return next(p for p in sim.processes if isinstance(p, PatchRelift))


def _alive_tumour(cells):
    rows = cells.rows_of(TUMOUR)
    return rows[cells.phenotype[rows] == TUMOUR_ALIVE]


@pytest.mark.parametrize("mean", [0.3, 4.0, 50.0, 3000.0])
def test_the_interval_is_the_poisson_distributions(mean):
    """Outside exactly where one tail probability is under alpha / 2 (the shortcut agrees)."""
    alpha = 0.003
    for n in range(0, int(mean + 12 * math.sqrt(mean) + 12)):
        expected = poisson.cdf(n, mean) < alpha / 2 or poisson.sf(n - 1, mean) < alpha / 2
        assert outside_poisson_interval(n, mean, alpha) == expected, n
    assert not outside_poisson_interval(0, mean, 0.0)      # alpha 0: never


def test_an_emptied_patch_is_refilled_to_the_whole_tumours_density():
    cfg = small()
    sim = build_simulation(cfg, seed=3)
    s, c = sim.state.scalars, sim.state.cells
    alive = _alive_tumour(c)
    c.remove(alive[: len(alive) - 10])                     # the patch's CAR-T "cleared" it
    s["patch_prev_tumour"] = 10.0
    s["patch_prev_tumour_pos"] = float(np.count_nonzero(c.antigen[_alive_tumour(c)] > 0))
    s["tumour_cells"] = 120.0 * bed_scale(cfg)              # the whole tumour: 120 per patch volume
    s["tumour_antigen_negative_cells"] = 0.25 * s["tumour_cells"]
    _relift(sim).step(sim.state)
    alive = _alive_tumour(c)
    assert len(alive) == 120
    assert s["patch_prev_tumour"] == 120.0                  # the lift is not growth
    assert s["patch_prev_tumour_pos"] == np.count_nonzero(c.antigen[alive] > 0)
    assert s["tumour_relifted_in_total"] == 110
    new = alive[c.id[alive] >= c.next_id - 110]
    old = alive[c.id[alive] < c.next_id - 110]
    lat = sim.state.lattice
    beside = set(lat.neighbours[c.site[old]].ravel().tolist())
    bed = set(tumour_sites(lat, cfg.tumour.initial_cells, 3).tolist())
    # copies sit beside the ten survivors while there is room, then in the tumour bed
    assert all(int(x) in beside or int(x) in bed for x in c.site[new])
    assert sum(int(x) in beside for x in c.site[new]) >= 20   # the ten sit in a row: ~24 free sites
    assert not lat.vessel[c.site[new]].any()
    negative = np.count_nonzero(c.antigen[new] == 0.0)
    assert 10 <= negative <= 45                             # ~ Binomial(110, 0.25): 27.5 +- 4.5
    c.check_invariants(sim.state.lattice)


def test_too_many_cells_are_removed_and_a_consistent_patch_is_left_alone():
    cfg = small()
    sim = build_simulation(cfg, seed=4)
    s, c = sim.state.scalars, sim.state.cells
    relift = _relift(sim)
    n0 = len(_alive_tumour(c))
    before = {k: getattr(c, k)[: c.n].copy() for k in ("kind", "site", "antigen")}
    s["tumour_cells"] = (n0 + 25) * bed_scale(cfg)          # 25 above a count of 300: within ~2 SD
    relift.step(sim.state)
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(c, k)[: c.n], v)
    s["tumour_cells"] = 0.4 * n0 * bed_scale(cfg)           # far below: remove down to 120
    relift.step(sim.state)
    assert len(_alive_tumour(c)) == 120
    assert s["patch_prev_tumour"] == 120.0
    assert s["tumour_relifted_out_total"] == n0 - 120
    c.check_invariants(sim.state.lattice)


def test_cart_cells_are_copied_and_trimmed_to_the_pools_density():
    cfg = small()
    sim = build_simulation(cfg, seed=6)
    s, c = sim.state.scalars, sim.state.cells
    relift = _relift(sim)
    S = bed_scale(cfg)
    free = np.flatnonzero((c.occ < 0) & ~sim.state.lattice.vessel)[:5]
    c.add(CART, free, phenotype=2, activation=0.7, divisions_left=4, glycolytic=0.3, oxidative=0.1,
          target=-1)
    s["patch_prev_cart"] = 5.0
    s["tumour_cart_cells"] = 40.0 * S
    relift.step(sim.state)
    rows = c.rows_of(CART)
    assert len(rows) == 40 and s["patch_prev_cart"] == 40.0
    # copies of the five: the same states
    assert set(c.divisions_left[rows].tolist()) == {4}
    np.testing.assert_array_equal(c.activation[rows], 0.7)
    np.testing.assert_array_equal(c.target[rows], -1)
    s["tumour_cart_cells"] = 2.0 * S
    relift.step(sim.state)
    assert len(c.rows_of(CART)) == 2 and s["cart_relifted_out_total"] == 38
    c.check_invariants(sim.state.lattice)


def test_each_patch_is_lifted_to_the_tumours_cart_density():
    """With K patches each is a sample of the tumour: CAR-T cells crowded into one patch (as its
    first entrants' offspring) are trimmed there, and a patch none reached gets its share, copies
    of the other patches' CAR-T (one pool) on free sites of its own (the tumour bed first)."""
    cfg = small({"lattice": {"shape": [24, 24], "patches": 3}, "tumour": {"initial_cells": 100},
                 "coupling": {"cart_lift": "per_patch"}})
    sim = build_simulation(cfg, seed=7)
    s, c, lat = sim.state.scalars, sim.state.cells, sim.state.lattice
    S = bed_scale(cfg)
    in_first = np.flatnonzero((c.occ < 0) & ~lat.vessel & (lat.patch_of(np.arange(lat.n_sites)) == 0))
    c.add(CART, in_first[:60], phenotype=1, activation=0.9, divisions_left=3, target=-1)
    s["patch_prev_cart"] = 60.0
    s["tumour_cart_cells"] = 60.0 * S             # the right total, all of it in patch 0
    s["cart_pool_divisions_left"] = 12.0
    _relift(sim).step(sim.state)
    rows = c.rows_of(CART)
    per_patch = np.bincount(lat.patch_of(c.site[rows]), minlength=3)
    assert per_patch.tolist() == [20, 20, 20]     # 60 vs Poisson(20), 0 vs Poisson(20): all lifted
    assert s["patch_prev_cart"] == 60.0
    assert s["cart_relifted_in_total"] == 40 and s["cart_relifted_out_total"] == 40
    new = rows[lat.patch_of(c.site[rows]) > 0]
    assert set(c.divisions_left[new].tolist()) == {3} and (c.phenotype[new] == 1).all()
    np.testing.assert_array_equal(c.activation[new], 0.9)
    assert not lat.vessel[c.site[new]].any()
    c.check_invariants(lat)                       # distinct sites, occupancy consistent
    s["tumour_cart_cells"] = 66.0 * S             # within the interval in every patch: no change
    before = c.site[c.rows_of(CART)].copy()
    _relift(sim).step(sim.state)
    np.testing.assert_array_equal(c.site[c.rows_of(CART)], before)


def test_a_share_under_one_cell_keeps_one_test_cell_per_patch():
    """When the whole tumour's CAR-T give each patch less than one cell, each patch holds one
    (naive-like, the blood pool's potential, while no patch has any), crowds are trimmed to
    Poisson(1), and the density ratio weighs the test cell by the share."""
    cfg = small({"lattice": {"shape": [24, 24], "patches": 3}, "tumour": {"initial_cells": 100},
                 "coupling": {"cart_lift": "per_patch"}})
    sim = build_simulation(cfg, seed=7)
    s, c, lat = sim.state.scalars, sim.state.cells, sim.state.lattice
    S = bed_scale(cfg)
    s["patch_prev_cart"] = 0.0
    s["cart_pool_divisions_left"] = 9.0           # under the product's potential: the pool's
    s["tumour_cart_cells"] = 0.5                  # under one cell in the whole tumour: nothing
    _relift(sim).step(sim.state)
    assert len(c.rows_of(CART)) == 0
    s["tumour_cart_cells"] = 0.3 * S              # 0.1 cell per patch
    _relift(sim).step(sim.state)
    rows = c.rows_of(CART)
    assert np.bincount(lat.patch_of(c.site[rows]), minlength=3).tolist() == [1, 1, 1]
    assert set(c.divisions_left[rows].tolist()) == {9} and s["patch_prev_cart"] == 3.0
    in_first = np.flatnonzero((c.occ < 0) & ~lat.vessel & (lat.patch_of(np.arange(lat.n_sites)) == 0))
    c.add(CART, in_first[:9], phenotype=1, activation=0.9, divisions_left=3, target=-1)
    s["patch_prev_cart"] = 12.0                   # 10 in patch 0: outside Poisson(1), back to 1
    _relift(sim).step(sim.state)
    rows = c.rows_of(CART)
    assert np.bincount(lat.patch_of(c.site[rows]), minlength=3).tolist() == [1, 1, 1]
    c.check_invariants(lat)
    rates = PatchRates(cfg)
    s["patch_ema_cart"] = 3.0                     # one cell per patch
    assert rates.density_ratio(s, s["tumour_cart_cells"], S) == pytest.approx(0.1)


def test_direct_coupling_and_alpha_zero_never_relift():
    for extra in ({"coupling": {"mode": "direct"}, "patient": {"tumour_burden_cells": 300.0},
                   "tumour": {"homing_reference_burden_cells": 300.0}},
                  {"coupling": {"relift_alpha": 0.0}}):
        sim = build_simulation(small(extra), seed=2)
        s, c = sim.state.scalars, sim.state.cells
        n0 = len(_alive_tumour(c))
        s["tumour_cells"] = 0.1 * s["tumour_cells"]
        _relift(sim).step(sim.state)
        assert len(_alive_tumour(c)) == n0


def _worst_deviation(cfg, seed):
    """Largest |count - mean| / sqrt(mean + 1) over a run: the patches' tumour cells against
    pool / S_v; the CAR-T of all patches against pool / S_v (total lift) or of each patch against
    its share pool / (K S_v), at least one cell (the test cell) once the pool holds one (per patch)."""
    sim = build_simulation(cfg, seed=seed)
    c, lat = sim.state.cells, sim.state.lattice
    S, K = bed_scale(cfg), lat.n_patches
    per_patch_lift = cfg.coupling.cart_lift == "per_patch"
    worst = 0.0
    while sim.state.step < cfg.run.n_steps:
        sim.step()
        s = sim.state.scalars
        counts = [(s["patch_prev_tumour"], s["tumour_cells"] / S)]
        if per_patch_lift:
            share = s["tumour_cart_cells"] / (K * S)
            share = max(share, 1.0 if s["tumour_cart_cells"] >= 1.0 else 0.0)
            counts += [(n, share) for n in np.bincount(lat.patch_of(c.site[c.rows_of(CART)]), minlength=K)]
        else:
            counts.append((s["patch_prev_cart"], s["tumour_cart_cells"] / S))
        for n, mean in counts:
            worst = max(worst, abs(n - mean) / math.sqrt(mean + 1.0))
    return worst, s


@pytest.mark.parametrize("lift", ["total", "per_patch"])
def test_the_patches_stay_a_poisson_sample_of_the_whole_patient(lift):
    """Over the expansion, the patches' tumour and CAR-T stay within the interval of the pools;
    without the lift they drift far outside it (the CAR-T's early noise, then the tumour)."""
    from abm.config import load_config

    def default(alpha):
        return load_config("configs/default.toml",
                           overrides={"run": {"end_day": 8.0},
                                      "coupling": {"relift_alpha": alpha, "cart_lift": lift},
                                      "output": {"fields": False, "cells": False}})
    worst, s = _worst_deviation(default(0.003), seed=20261121)
    free, _ = _worst_deviation(default(0.0), seed=20261121)
    # one step of the agents may move a count a little past the interval before the next lift
    assert worst < 4.5
    assert free > 4.5 and free > 1.5 * worst     # outside the band the lift keeps
    assert s["cart_relifted_in_total"] + s["cart_relifted_out_total"] > 0
