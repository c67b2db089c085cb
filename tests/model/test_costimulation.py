"""Costimulation as mechanism: the per-cell signalling state of CAR-T cells.

Both products run the same rules; only ``product.costimulation`` (the domain's
gains) differs between the runs compared here. Checks: the signalling update
against its exact exponential solution, the direction of division,
secretion, exhaustion and memory conversion when only the domain is switched
(single cells with fixed seeds, and counts over many cells against the
implied rates), and the mapping of the shared rules onto the former
per-product parameter values.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from abm import cells as C
from abm.config import config_from_dict
from abm.kernels import cells_cart as K
from abm.kernels.cells_common import F_GMCSF, F_IFNG, F_IL7_15
from abm.model import cart

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers
from helpers.cells import add_cart, grid_sites, make_sim  # noqa: E402

DOMAINS = ("CD28", "4-1BB")

#: Cells that neither die, divide, move nor leave: only the rule under test acts.
STILL = {"basal_death_per_day": 0.0, "activation_death_per_day": 0.0,
         "memory_death_per_day": 0.0, "exhausted_death_per_day": 0.0,
         "max_divisions": 0, "homeostatic_division_per_day": 0.0,
         "speed_um_per_min": 0.0, "kill_rate_per_h": 0.0, "detach_rate_per_h": 0.0,
         "rest_recovery_per_day": 0.0}

#: The per-product values the presets set before costimulation became a
#: mechanism (CD28, 4-1BB); the shared rules must reproduce them.
FORMER = {
    "division_time_h": (10.0, 19.0),
    "ifng_secretion_fg_per_h": (2.0, 0.5),
    "gmcsf_secretion_fg_per_h": (1.5, 0.35),
    "il6_secretion_fg_per_h": (0.03, 0.02),
    "activation_death_per_day": (0.35, 0.25),
    "exhaustion_engagements": (10, 20),
    "memory_conversion_per_day": (0.02, 0.5),
    "memory_death_per_day": (0.01, 0.003),
    "exhausted_death_per_day": (0.3, 0.2),
}


def arena(costimulation: str, product: dict | None = None, seed: int = 3):
    """A 64 x 64 lattice without vessels or cells; every product key but ``costimulation`` fixed."""
    prod = dict(STILL, **(product or {}), costimulation=costimulation)
    return make_sim({"lattice": {"shape": [64, 64], "vessel_fraction": 0.0},
                     "product": prod,
                     "tumour": {"growth_rate_per_day": 0.0, "death_rate_per_day": 0.0}}, seed=seed)


def engaged_pairs(sim, spacing: int = 3, antigen: float = 1e6, **cols):
    """CAR-T cells on a grid, each engaged with a tumour cell on its right; returns the CAR-T ids."""
    c, lat = sim.state.cells, sim.state.lattice
    sites = grid_sites(lat, spacing, offset=1)
    c.add(C.TUMOUR, sites + 1, phenotype=C.TUMOUR_ALIVE, antigen=antigen)
    rows = add_cart(sim, sites, activation=1.0, target=sites + 1, **cols)
    return c.id[rows].copy()


def column_by_id(sim, ids, name):
    c = sim.state.cells
    n = c.n
    order = {int(i): r for r, i in enumerate(c.id[:n])}
    return np.array([getattr(c, name)[order[int(i)]] for i in ids])


@pytest.mark.parametrize("costimulation", DOMAINS)
def test_signalling_state_follows_its_exact_exponential_solution(costimulation):
    """Engaged (a = 1) and resting (a = 0) cells: g and o relax exactly as the ODE says."""
    sim = arena(costimulation)
    p = sim.config.product
    G, O = cart.domain_gains(costimulation)
    r = p.oxidative_tonic_fraction
    engaged = engaged_pairs(sim, spacing=8, glycolytic=0.3, oxidative=0.9)
    lat = sim.state.lattice
    resting_sites = grid_sites(lat, 8, offset=5)
    rest_rows = add_cart(sim, resting_sites, activation=0.0, glycolytic=0.8, oxidative=0.1)
    resting = sim.state.cells.id[rest_rows].copy()
    dt_h = sim.config.run.dt_min / 60.0
    for steps in (1, 7, 30):
        sim.run(steps=steps if steps == 1 else steps - sim.state.step)
        t = sim.state.step * dt_h
        eg, eo = math.exp(-t / p.glycolytic_time_h), math.exp(-t / p.oxidative_time_h)
        # engaged: targets G and O
        np.testing.assert_allclose(column_by_id(sim, engaged, "glycolytic"), G + (0.3 - G) * eg,
                                   rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(column_by_id(sim, engaged, "oxidative"), O + (0.9 - O) * eo,
                                   rtol=1e-12, atol=1e-15)
        # resting, no target in reach: g -> 0, o -> O r (tonic)
        np.testing.assert_allclose(column_by_id(sim, resting, "glycolytic"), 0.8 * eg,
                                   rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(column_by_id(sim, resting, "oxidative"),
                                   O * r + (0.1 - O * r) * eo, rtol=1e-12, atol=1e-15)
    assert np.all(column_by_id(sim, engaged, "activation") == 1.0)


def test_signalling_state_is_inherited_and_bounded():
    """A daughter is born with its parent's state; the state stays in [0, 1] (table invariants)."""
    sim = arena("CD28", {"max_divisions": 1, "division_time_h": 0.5})
    C.CellTable.check_each_step = True
    born = 0
    try:
        ids = engaged_pairs(sim, spacing=4, glycolytic=1.0, oxidative=0.04)
        seen = set(ids.tolist())
        c = sim.state.cells
        for _ in range(30):
            sim.step()
            n = c.n
            new = [r for r in np.flatnonzero(c.kind[:n] == C.CART) if int(c.id[r]) not in seen]
            for r in new:
                # parents are engaged in their steady state (g = 1, o = O): so are newborns
                assert c.glycolytic[r] == pytest.approx(1.0, rel=1e-12)
                assert c.oxidative[r] == pytest.approx(0.04, rel=1e-12)
                seen.add(int(c.id[r]))
            born += len(new)
    finally:
        C.CellTable.check_each_step = False
    assert born > 0.5 * len(ids)
    sim.state.cells.check_invariants(sim.state.lattice)


#: The 4-1BB gains set when costimulation became a mechanism, before the
#: second-stage calibration (docs/calibration.md 7.9) changed them.
FORMER_41BB_GAINS = {"glycolytic_gain": 0.2, "oxidative_gain": 1.0}


def test_mapping_onto_the_former_product_values():
    """Effective rates of the shared rules at full activation / rest: within 10 % of the old presets
    (4-1BB with the gains it had then: the calibration has since moved them)."""
    for i, preset in enumerate(("cd28", "4-1bb")):
        gains = FORMER_41BB_GAINS if preset == "4-1bb" else {}
        eff = cart.effective_rates(config_from_dict({"product": {"preset": preset, **gains}}).product)
        for key, values in FORMER.items():
            assert eff[key] == pytest.approx(values[i], rel=0.10), (preset, key)
    # integer engagement counts: the limits the kernel applies are exactly the former ones
    cd = cart.effective_rates(config_from_dict({"product": {"preset": "cd28"}}).product)
    bb = cart.effective_rates(config_from_dict({"product": {"preset": "4-1bb", **FORMER_41BB_GAINS}}).product)
    assert math.ceil(cd["exhaustion_engagements"]) == 10
    assert math.ceil(bb["exhaustion_engagements"]) == 20


def test_calibrated_4_1bb_gains_keep_the_direction_of_every_rate():
    """After the calibration 4-1BB still divides slower, secretes less IFN-gamma and GM-CSF, dies
    less by AICD, tolerates more engagements and converts more to long-lived memory than CD28."""
    cd = cart.effective_rates(config_from_dict({"product": {"preset": "cd28"}}).product)
    bb = cart.effective_rates(config_from_dict({"product": {"preset": "4-1bb"}}).product)
    assert bb["division_time_h"] > 1.5 * cd["division_time_h"]
    assert bb["ifng_secretion_fg_per_h"] < cd["ifng_secretion_fg_per_h"] / 2
    assert bb["activation_death_per_day"] < cd["activation_death_per_day"]
    assert bb["exhaustion_engagements"] > cd["exhaustion_engagements"]
    assert bb["memory_conversion_per_day"] > 3 * cd["memory_conversion_per_day"]
    assert bb["memory_death_per_day"] < cd["memory_death_per_day"]


def test_switching_only_the_domain_changes_secretion():
    """One engaged cell in its steady state: IFN-gamma / GM-CSF sources equal the implied rates,
    and the CD28 cell secretes ~4x more than the 4-1BB cell."""
    ifng = {}
    for cs in DOMAINS:
        sim = arena(cs)
        p = sim.config.product
        g, o = cart.signalling_steady_state(p, 1.0)
        sim.state.sources[:] = 0.0
        c = sim.state.cells
        site = 64 * 10 + 10
        c.add(C.TUMOUR, [site + 1], phenotype=C.TUMOUR_ALIVE, antigen=1e6)
        add_cart(sim, [site], activation=1.0, target=site + 1, glycolytic=g, oxidative=o)
        sim.step()
        eff = cart.effective_rates(p)
        src = cart.FG_PER_H_TO_PG_PER_S / sim.state.lattice.voxel_ml
        ifng[cs] = sim.state.sources[F_IFNG, site]
        assert ifng[cs] == pytest.approx(eff["ifng_secretion_fg_per_h"] * src, rel=1e-12)
        assert sim.state.sources[F_GMCSF, site] == pytest.approx(
            eff["gmcsf_secretion_fg_per_h"] * src, rel=1e-12)
    assert ifng["CD28"] > 3.0 * ifng["4-1BB"]


def test_switching_only_the_domain_changes_the_exhaustion_limit():
    """Same keys, CD28 vs 4-1BB: the CD28 cell exhausts at its 10th engagement, the 4-1BB cell not."""
    out = {}
    for cs in DOMAINS:
        sim = arena(cs, {"engagement_rate_per_h": 1e4})
        p = sim.config.product
        g, o = cart.signalling_steady_state(p, 1.0)
        sim.state.sources[:] = 0.0
        c = sim.state.cells
        site = 64 * 10 + 10
        c.add(C.TUMOUR, [site + 1], phenotype=C.TUMOUR_ALIVE, antigen=1e6)
        # free, fully activated, 9 engagements behind it: the next one is the 10th
        rows = add_cart(sim, [site], activation=1.0, engagements=9, glycolytic=g, oxidative=o)
        cid = c.id[rows[0]]
        sim.step()
        r = int(np.flatnonzero(c.id[: c.n] == cid)[0])
        out[cs] = (c.engagements[r], c.phenotype[r])
    assert out["CD28"][0] == out["4-1BB"][0] == 10
    assert out["CD28"][1] == C.CART_EXHAUSTED and out["4-1BB"][1] == C.CART_EFFECTOR


def divided_fraction(costimulation, steps, seed):
    sim = arena(costimulation, {"max_divisions": 1}, seed=seed)
    p = sim.config.product
    g, o = cart.signalling_steady_state(p, 1.0)
    ids = engaged_pairs(sim, spacing=3, divisions_left=1, glycolytic=g, oxidative=o)
    il = float(sim.state.fields.reshape(sim.state.fields.shape[0], -1)[F_IL7_15].mean())
    sim.run(steps=steps)
    done = column_by_id(sim, ids, "divisions_left") == 0
    h_il = il / (il + p.division_il7_15_ec50_pg_ml)
    rate_h = (1.0 + p.division_il7_15_boost * h_il) / cart.effective_rates(p)["division_time_h"]
    rate_h += p.homeostatic_division_per_day / 24.0 * h_il
    expected = 1.0 - math.exp(-rate_h * steps * sim.config.run.dt_min / 60.0)
    return done.mean(), expected, len(ids)


def test_switching_only_the_domain_changes_division_time():
    """Engaged cells at steady state: fraction divided in 10 h matches the implied rate; CD28 faster."""
    got = {}
    for cs in DOMAINS:
        frac, expected, n = divided_fraction(cs, steps=100, seed=7)
        sd = math.sqrt(expected * (1 - expected) / n)
        print(f"{cs}: divided {frac:.3f}, implied {expected:.3f} (n {n})")
        assert abs(frac - expected) < 4 * sd + 0.01
        got[cs] = frac
    assert got["CD28"] > got["4-1BB"] + 0.1


def test_switching_only_the_domain_changes_memory_conversion():
    """Resting effectors (a = 0, tonic o): fraction turned memory in 2 days matches k_mem o; 4-1BB more."""
    got = {}
    for cs in DOMAINS:
        sim = arena(cs, seed=5)
        p = sim.config.product
        _, o = cart.signalling_steady_state(p, 0.0)
        sites = grid_sites(sim.state.lattice, 2, offset=1)
        rows = add_cart(sim, sites, activation=0.0, oxidative=o)
        ids = sim.state.cells.id[rows].copy()
        steps = 480
        sim.run(steps=steps)
        frac = float(np.mean(column_by_id(sim, ids, "phenotype") == C.CART_MEMORY))
        days = steps * sim.config.run.dt_min / 1440.0
        expected = 1.0 - math.exp(-cart.effective_rates(p)["memory_conversion_per_day"] * days)
        sd = math.sqrt(expected * (1 - expected) / len(ids))
        print(f"{cs}: memory {frac:.3f}, implied {expected:.3f} (n {len(ids)})")
        assert abs(frac - expected) < 4 * sd + 0.005
        got[cs] = frac
    assert got["4-1BB"] > 3 * got["CD28"]   # 5.5x the rate since the 4-1BB calibration (7.9)


def test_kernel_vector_carries_the_domain_gains():
    for cs in DOMAINS:
        p = config_from_dict({"product": {"costimulation": cs}}).product
        v = cart.kernel_params(p, 360.0, 8e-9)
        assert (v[K.C_GLYC_GAIN], v[K.C_OXID_GAIN]) == cart.domain_gains(cs)


def test_config_gains_override_the_domain_and_act_through_the_same_rules():
    """``product.glycolytic_gain`` / ``oxidative_gain`` replace the domain's gains: a CD28 product
    given the 4-1BB gains has the 4-1BB effective rates and kernel vector, and unset keys keep the domain's."""
    bb = config_from_dict({"product": {"costimulation": "4-1BB"}}).product
    G, O = cart.domain_gains("4-1BB")
    as_bb = config_from_dict({"product": {"costimulation": "CD28", "glycolytic_gain": G,
                                          "oxidative_gain": O}}).product
    assert cart.effective_rates(as_bb) == cart.effective_rates(bb)
    assert np.array_equal(cart.kernel_params(as_bb, 360.0, 8e-9), cart.kernel_params(bb, 360.0, 8e-9))
    # one gain set, the other from the domain; faster division with a larger glycolytic gain
    half = config_from_dict({"product": {"costimulation": "4-1BB", "glycolytic_gain": 0.6}}).product
    assert cart.signalling_gains(half) == (0.6, O)
    assert cart.effective_rates(half)["division_time_h"] < cart.effective_rates(bb)["division_time_h"]
    assert cart.effective_rates(half)["memory_conversion_per_day"] == cart.effective_rates(bb)[
        "memory_conversion_per_day"]
