"""Whole-patient kinetics: conservation of the CAR-T pools, exact steps, B cells, tumour response,
the restriction estimators, and no shot noise in blood."""

import math

import numpy as np
import pytest
from scipy.linalg import expm

from abm.build import build_simulation
from abm.model import response as R
from abm.model.coupling import PatchRates, bed_scale
from abm.model.kinetics import CART_POOLS, KineticsParams, PATIENT_SLOTS, cart_rate_matrix
from tests.helpers.patients import small


def test_rate_matrix_conserves_cells_without_birth_or_death():
    p = KineticsParams(blood_death_per_day=0.0, lymphoid_death_per_day=0.0, body_death_per_day=0.0,
                       egress_via_lymph_fraction=0.3)
    a = cart_rate_matrix(p, h_t=0.4, g_h=0.0, g_b=0.0, k_m=0.2, d_mem=0.0, r_c=0.0, eps=1.5)
    np.testing.assert_allclose(a.sum(axis=0), 0.0, atol=1e-15)   # every transfer leaves one pool for another
    x0 = np.array([1e8, 2e7, 0.0, 5e6, 0.0])
    for dt in (0.004, 0.5, 30.0):
        x = expm(a * dt) @ x0
        assert x.sum() == pytest.approx(x0.sum(), rel=1e-12)
        assert x.min() >= 0.0


def test_rate_matrix_growth_is_the_proliferation_minus_death():
    p = KineticsParams(blood_to_lymphoid_per_day=0.0, blood_to_body_per_day=0.0, blood_death_per_day=0.1)
    a = cart_rate_matrix(p, h_t=0.0, g_h=0.05, g_b=0.0, k_m=0.0, d_mem=0.0, r_c=0.0, eps=0.0)
    x = expm(a * 3.0) @ np.array([1.0, 0, 0, 0, 0])
    assert x[0] == pytest.approx(math.exp(-0.05 * 3.0), rel=1e-12)


def test_patient_slots_are_declared_with_units_and_recorded():
    names = [s.name for s in PATIENT_SLOTS]
    assert len(names) == len(set(names))
    assert set(CART_POOLS) <= set(names)
    assert all(s.unit and s.doc for s in PATIENT_SLOTS)
    sim = build_simulation(small(), seed=3)
    row = sim.record_row()
    for n in names:
        assert math.isfinite(row[n]), n


def test_b_cells_relax_to_baseline_and_fall_with_lymphodepletion():
    cfg = small({"lymphodepletion": {"enabled": False}})
    sim = build_simulation(cfg, seed=1)
    b0 = cfg.kinetics.b_cells_per_kg * cfg.patient.weight_kg
    assert sim.state.scalars["b_cells"] == pytest.approx(b0)
    cfg = small({"run": {"start_day": -2.0}})
    sim = build_simulation(cfg, seed=1)
    # started after a 3-day regimen of depth 0.8 that began on day -5: close to 20 % left
    assert 0.15 * b0 < sim.state.scalars["b_cells"] < 0.3 * b0


def test_b_cell_aplasia_follows_expansion():
    sim = build_simulation(small({"run": {"end_day": 10.0}}), seed=2)
    sim.run(sim.config.run.n_steps)
    s = sim.state.scalars
    b0 = sim.config.kinetics.b_cells_per_kg * sim.config.patient.weight_kg
    # lymphodepletion leaves ~25 % of B_0 at infusion; the expansion takes them under 10 % by day 10
    # (they recover afterwards: lasting aplasia is a documented miss, docs/calibration.md 7.15)
    assert s["b_cells"] < 0.1 * b0
    assert s["lymphoid_cart_cells"] > 10 * 0.0 + 1.0


# -- tumour response --------------------------------------------------------------

@pytest.mark.parametrize("ratio,code", [(1.0, R.SD), (0.36, R.SD), (0.34, R.PR), (0.353, R.PR), (0.355, R.SD),
                                        (0.4, R.SD), (1.83, R.SD), (1.85, R.PD), (3.0, R.PD)])
def test_response_categories_follow_the_spd(ratio, code):
    # SPD ~ volume^(2/3): PR at (T/T0)^(2/3) <= 0.5 (T/T0 <= 0.3536), PD at >= 1.5 (T/T0 >= 1.837)
    assert R.category(ratio * 1e11, 1e11, 1e9) == code


def test_complete_response_is_below_the_detection_limit():
    assert R.category(9.9e8, 1e11, 1e9) == R.CR
    assert R.category(1.0e9, 1e11, 1e9) == R.PR
    assert R.category(5e8, 6e8, 1e9) == R.CR


# -- restriction ------------------------------------------------------------------

class _Cells:
    def __init__(self, kinds, phen, antigen=None):
        self.kind = np.array(kinds, dtype=np.int8)
        self.phenotype = np.array(phen, dtype=np.int8)
        self.antigen = np.ones(len(kinds)) if antigen is None else np.asarray(antigen, float)
        self.n = len(kinds)


def test_patch_rates_converge_to_the_windowed_ratio_and_start_from_priors():
    from abm.cells import CART, CART_EFFECTOR, TUMOUR, TUMOUR_ALIVE
    cfg = small({"coupling": {"cart_lift": "total"}})
    rates = PatchRates(cfg)
    cells = _Cells([TUMOUR] * 100 + [CART] * 10, [TUMOUR_ALIVE] * 100 + [CART_EFFECTOR] * 10)
    s = {}
    rates.init_state(s, cells)
    assert rates.kill_hazard(s) == 0.0
    assert rates.cart_net_proliferation(s) == pytest.approx(-cfg.product.basal_death_per_day / 86400)
    for _ in range(5000):
        # counts unchanged: 2 kills balanced by 2 births, 1 egress by 1 birth; the cells expect 0.3
        # net births a step
        s.update(cart_kills_step=2, cart_entered_step=0, cart_egressed_step=1,
                 cart_expected_growth_step=0.3)
        rates.update(s, cells)
    dt = cfg.run.dt_s
    assert rates.kill_hazard(s) == pytest.approx(2 / (100 * dt), rel=1e-9)
    assert rates.tumour_growth(s) == pytest.approx(2 / (100 * dt), rel=1e-9)
    assert rates.cart_egress(s) == pytest.approx(1 / (10 * dt), rel=1e-9)
    # net proliferation is the cells' expected net births per cell-time, not the realised ones
    assert rates.cart_net_proliferation(s) == pytest.approx(0.3 / (10 * dt), rel=1e-9)
    # the patient holds exactly the patch density: rho = 1
    S = bed_scale(cfg)
    assert rates.density_ratio(s, 10 * S, S) == pytest.approx(1.0, rel=1e-9)
    assert rates.density_ratio(s, 21 * S, S) == pytest.approx(2.0, rel=1e-9)   # (21 + 1) / (10 + 1)
    # per patch: the share over the patches' mean, without the pseudo-count while Nbar >= c0
    per_patch = PatchRates(small({"coupling": {"cart_lift": "per_patch"}}))
    assert per_patch.density_ratio(s, 21 * S, S) == pytest.approx(2.1, rel=1e-9)


def test_cart_rates_are_per_cell_the_agent_phase_acted_on():
    """Entrants enter before the agent phase and may leave, die or divide in the same step: the
    CAR-T rates are per cell exposed to the step (last step's cells plus this step's entrants)."""
    from abm.cells import CART, CART_EFFECTOR
    cfg = small()
    dt = cfg.run.dt_s
    rates = PatchRates(cfg)
    cells = _Cells([CART] * 10, [CART_EFFECTOR] * 10)
    s = {}
    rates.init_state(s, cells)
    for _ in range(5000):   # 10 cells stay; 5 enter and leave again each step
        s.update(cart_kills_step=0, cart_entered_step=5, cart_egressed_step=5,
                 cart_expected_growth_step=0.0)
        rates.update(s, cells)
    assert rates.cart_egress(s) == pytest.approx(5 / (15 * dt), rel=1e-9)
    assert rates.cart_net_proliferation(s) == pytest.approx(0.0, abs=1e-12)
    for _ in range(5000):   # 5 enter each step; the 15 cells expect 1.5 deaths
        s.update(cart_kills_step=0, cart_entered_step=5, cart_egressed_step=0,
                 cart_expected_growth_step=-1.5)
        rates.update(s, cells)
    assert rates.cart_net_proliferation(s) == pytest.approx(-1.5 / (15 * dt), rel=1e-9)


def test_an_entrant_that_dies_in_an_empty_patch_counts_its_expected_death():
    cfg = small()
    rates = PatchRates(cfg)
    empty = _Cells([], [])
    s = {}
    rates.init_state(s, empty)
    # one cell entered the empty patch and died in the same step, with probability 0.2
    s.update(cart_kills_step=0, cart_entered_step=1, cart_egressed_step=0,
             cart_expected_growth_step=-0.2)
    rates.update(s, empty)
    assert rates.cart_net_proliferation(s) == pytest.approx(-0.2 / cfg.run.dt_s, rel=1e-12)
    assert rates.cart_egress(s) == 0.0


def test_the_patches_see_the_dose_in_the_step_the_patient_pools_first_receive_it():
    """The dose is in blood at the start of the infusion step, so the patches' entries (phase
    blood_to_tissue) and the whole tumour's homing inflow start in the same step."""
    cfg = small({"run": {"end_day": 0.05}})
    sim = build_simulation(cfg, seed=3)
    s = sim.state.scalars
    dt = cfg.run.dt_min / 1440.0
    while s["tumour_cart_cells"] == 0.0:
        blood_seen = s["blood_cart_cells"]     # what Extravasation reads this step
        t = sim.state.time_day
        sim.step()
    assert blood_seen == cfg.product.dose_cells
    assert abs(t - cfg.blood.infusion_day) <= 0.5 * dt


def test_a_run_that_starts_at_the_infusion_holds_the_dose_from_the_start():
    cfg = small({"run": {"start_day": 0.0, "end_day": 0.01}})
    sim = build_simulation(cfg, seed=3)
    s = sim.state.scalars
    assert s["cart_infused"] == 1.0 and s["blood_cart_cells"] == cfg.product.dose_cells
    assert s["cart_total_cells"] == cfg.product.dose_cells


def test_kill_hazard_counts_only_antigen_positive_targets():
    from abm.cells import TUMOUR, TUMOUR_ALIVE
    cfg = small()
    rates = PatchRates(cfg)
    cells = _Cells([TUMOUR] * 100, [TUMOUR_ALIVE] * 100, antigen=[0.0] * 60 + [5e3] * 40)
    s = {}
    rates.init_state(s, cells)
    for _ in range(3000):
        s.update(cart_kills_step=1, cart_entered_step=0, cart_egressed_step=0)
        rates.update(s, cells)
    assert rates.kill_hazard(s) == pytest.approx(1 / (40 * cfg.run.dt_s), rel=1e-9)


def test_antigen_negative_cells_of_the_whole_tumour_are_never_killed():
    # bystander killing (which does reach antigen-negative cells) off: its own tests are in test_bystander
    cfg = small({"tumour": {"antigen_negative_fraction": 0.25, "bystander_kill_per_day": 0.0},
                 "run": {"end_day": 8.0}})
    sim = build_simulation(cfg, seed=4)
    s = sim.state.scalars
    assert s["tumour_antigen_negative_cells"] == pytest.approx(0.25 * cfg.patient.burden_cells)
    sim.run(cfg.run.n_steps)
    assert s["tumour_lysed_patient_cells"] > 0
    # negative cells only grow or shrink with the patches' net growth, never by killing
    assert s["tumour_antigen_negative_cells"] > 0.2 * cfg.patient.burden_cells
    assert s["tumour_cells"] >= s["tumour_antigen_negative_cells"]


def test_direct_coupling_needs_the_tumour_in_the_patches():
    from abm.errors import ConfigError
    with pytest.raises(ConfigError, match="coupling.mode"):
        small({"coupling": {"mode": "direct"}})
    cfg = small({"coupling": {"mode": "direct"}, "patient": {"tumour_burden_cells": 300.0}})
    assert bed_scale(cfg) == pytest.approx(1.0)


# -- no shot noise (the full 20-seed default-patient version is in validation) ---

def max_blood_step_change(cfg, seed) -> float:
    sim = build_simulation(cfg, seed=seed)
    worst, prev = 0.0, None
    infused_at = None
    while sim.state.step < cfg.run.n_steps:
        sim.step()
        s = sim.state.scalars
        b = s["blood_cart_cells"]
        if s["cart_infused"] and infused_at is None:
            infused_at = sim.state.step
        elif infused_at is not None and prev:
            worst = max(worst, abs(b - prev) / prev)
        prev = b
    return worst


def test_no_step_after_infusion_moves_blood_cart_by_more_than_5_percent():
    cfg = small({"run": {"end_day": 4.0}})
    for seed in (1, 2, 3):
        assert max_blood_step_change(cfg, seed) < 0.05


def test_small_matrix_exponential_matches_scipy():
    from abm.kernels.matrix_exp import expm_small
    rng = np.random.default_rng(4)
    for scale in (0.0, 1e-3, 0.3, 5.0, 40.0):
        a = rng.normal(size=(5, 5)) * scale
        want = expm(a)
        np.testing.assert_allclose(expm_small(a), want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
