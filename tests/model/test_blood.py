"""Blood compartment: exact ODE steps, lymphodepletion and the IL-7/IL-15 sink,
conservation of cytokine mass across the tumour <-> plasma coupling, myeloid pool, metabolites.
(CAR-T pools: tests/model/test_kinetics.py.)"""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from abm.config import config_from_dict
from abm.model import odes
from abm.model.blood import PLASMA_SPECIES
from abm.model.coupling import bed_scale as patient_scale
from abm.model.patient import BloodProcess, WholePatientProcess
from abm.process import Process
from abm.build import build_simulation

#: "No clearance": a half-life no run comes near (configs take finite numbers only).
INF = 1e15
SMALL = {"lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 100},
         "patient": {"random_effects": False}, "run": {"seed": 11}}


def make(extra=None, processes=(BloodProcess,)):
    data = {k: dict(v) for k, v in SMALL.items()}
    for k, v in (extra or {}).items():
        data.setdefault(k, {}).update(v)
    return build_simulation(config_from_dict(data), processes=list(processes))


def plasma_ml(cfg) -> float:
    return cfg.blood.plasma_volume_ml_per_kg * cfg.patient.weight_kg


def no_clearance():
    """Blood with every clearance, production, death and growth switched off."""
    blood = {f"{sp}_half_life_min": INF for sp in ("ifng", "gmcsf", "il6", "il1", "ang2")}
    blood.update(myeloid_pool_cells=0.0)
    return {"blood": blood, "lymphodepletion": {"il7_15_half_life_min": INF}}


# -- the exact steps ---------------------------------------------------------------

def test_relax_is_exact():
    for c, p, lam, dt in [(3.0, 2.0, 0.5, 0.7), (0.0, 1.0, 1e-14, 2.0), (5.0, 0.0, 0.0, 1.0)]:
        exact = p / lam + (c - p / lam) * math.exp(-lam * dt) if lam > 0 else c + p * dt
        assert odes.relax(c, p, lam, dt) == pytest.approx(exact, rel=1e-12)


def test_linear2_matches_expm_and_stays_positive():
    rng = np.random.default_rng(1)
    for _ in range(200):
        a12, a21 = rng.exponential(size=2) * rng.choice([0.0, 1.0, 30.0], size=2)
        a11, a22 = -rng.exponential(size=2) * 5 + rng.normal(size=2) * 0.1
        x0 = rng.exponential(size=2)
        dt = rng.exponential()
        got = odes.linear2(a11, a12, a21, a22, x0[0], x0[1], dt)
        want = expm(np.array([[a11, a12], [a21, a22]]) * dt) @ x0
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        assert min(got) >= 0.0


def test_logistic_kill_is_exact():
    from abm.model.blood import logistic_kill
    r, k, K, n0 = 0.1, 0.5, 10.0, 3.0
    sol = solve_ivp(lambda t, n: r * n * (1 - n / K) - k * n, (0, 2.0), [n0], rtol=1e-12, atol=1e-12)
    assert logistic_kill(n0, r, k, K, 2.0) == pytest.approx(sol.y[0, -1], rel=1e-9)
    assert logistic_kill(n0, 0.0, 0.0, K, 2.0) == n0


# -- lymphodepletion and the IL-7/IL-15 sink --------------------------------------------

def test_default_80pct_depletion_nearly_triples_il7_15_closed_form():
    cfg = config_from_dict({})
    ld = cfg.lymphodepletion
    assert ld.depth == 0.8
    ratio = ld.steady_state_ratio()
    assert 2.5 <= ratio <= 3.0


def test_simulated_steady_state_matches_closed_form():
    # no recovery, no CAR-T (infusion after the end): N stays at (1 - depth) N0
    sim = make({"lymphodepletion": {"lymphocyte_recovery_per_day": 0.0},
                "blood": {"infusion_day": 500.0}, "run": {"start_day": -6.0, "end_day": 5.0}})
    blood = sim.processes[0].model
    s = sim.state.scalars
    c0 = s["plasma_il7_15"]
    n0 = s["lymphocytes_cells"]
    assert c0 == pytest.approx(blood.p7 / (blood.k7 + blood.q7 * n0), rel=1e-12)
    sim.run()
    n = s["lymphocytes_cells"]
    assert n == pytest.approx(0.2 * n0, rel=1e-9)          # exactly 80 % removed
    closed = blood.p7 / (blood.k7 + blood.q7 * n)         # C = p / (k + q N)
    assert s["plasma_il7_15"] == pytest.approx(closed, rel=1e-9)
    ratio = s["plasma_il7_15"] / c0
    assert 2.5 <= ratio <= 3.0
    assert ratio == pytest.approx(sim.config.lymphodepletion.steady_state_ratio(), rel=1e-9)


@pytest.mark.parametrize("depth", [0.3, 0.5, 0.9])
def test_closed_form_at_other_depths(depth):
    sim = make({"lymphodepletion": {"lymphocyte_recovery_per_day": 0.0, "depth": depth},
                "blood": {"infusion_day": 500.0}, "run": {"start_day": -6.0, "end_day": 3.0}})
    c0 = sim.state.scalars["plasma_il7_15"]
    sim.run()
    assert sim.state.scalars["plasma_il7_15"] / c0 == pytest.approx(
        1.0 / (1.0 - 0.8 * depth), rel=1e-9)


def test_lymphocytes_recover_over_weeks_and_cart_consume_il7_15():
    sim = make({"run": {"start_day": -5.0, "end_day": 28.0}})
    s = sim.state.scalars
    n0 = s["lymphocytes_cells"]
    sim.run(steps=int(3 * 240))                           # to day -2: end of Flu/Cy
    nadir = s["lymphocytes_cells"]
    assert 0.18 * n0 < nadir < 0.25 * n0
    sim.run()
    assert nadir < s["lymphocytes_cells"] < n0            # recovering, not recovered
    assert s["alc_per_ul"] == pytest.approx(s["lymphocytes_cells"] * 0.02 / (71.4 * 70 * 1e3))
    # CAR-T add to the sink: the same patient without CAR-T has more IL-7/IL-15
    sim2 = make({"run": {"start_day": -5.0, "end_day": 28.0}, "product": {"dose_cells": 1e10}},
                processes=(WholePatientProcess, BloodProcess))
    sim2.run()
    assert sim2.state.scalars["plasma_il7_15"] < s["plasma_il7_15"]


def test_run_starting_after_lymphodepletion_starts_depleted():
    full = make({"run": {"start_day": -5.0, "end_day": 2.0}, "blood": {"infusion_day": 500.0}})
    full.run(steps=5 * 240)                                # to day 0
    late = make({"run": {"start_day": 0.0, "end_day": 2.0}, "blood": {"infusion_day": 500.0}})
    a, b = full.state.scalars, late.state.scalars
    assert b["lymphocytes_cells"] == pytest.approx(a["lymphocytes_cells"], rel=1e-9)
    assert b["blood_monocytes_per_ul"] == pytest.approx(a["blood_monocytes_per_ul"], rel=1e-9)
    assert b["plasma_il7_15"] == pytest.approx(a["plasma_il7_15"], rel=1e-9)
    assert b["baseline_il7_15"] == pytest.approx(a["baseline_il7_15"], rel=1e-12)


def test_no_lymphodepletion_keeps_baseline():
    sim = make({"lymphodepletion": {"enabled": False}, "blood": {"infusion_day": 500.0},
                "run": {"start_day": -5.0, "end_day": 1.0}})
    c0 = sim.state.scalars["plasma_il7_15"]
    sim.run()
    assert sim.state.scalars["plasma_il7_15"] == pytest.approx(c0, rel=1e-12)


# -- conservation across the coupling ---------------------------------------------------

class Feed(Process):
    """Writes synthetic patch outputs (exchange masses, entries, egress) every step."""

    phase = "fields"
    script = None

    def step(self, state):
        self.script(state)


def test_cytokine_mass_is_conserved_across_the_coupling():
    rng = np.random.default_rng(3)

    def script(state):
        for sp in PLASMA_SPECIES:
            state.scalars[f"exchange_{sp}_pg"] = float(rng.uniform(-5.0, 50.0))

    Feed.script = staticmethod(script)
    sim = make(no_clearance(), processes=(Feed, BloodProcess))
    S, vp = patient_scale(sim.config), plasma_ml(sim.config)
    s = sim.state.scalars
    for sp in PLASMA_SPECIES:
        s[f"plasma_{sp}"] = 1e9     # far from 0: nothing is clamped
    start = {sp: s[f"plasma_{sp}"] * vp for sp in PLASMA_SPECIES}
    moved = {sp: 0.0 for sp in PLASMA_SPECIES}
    for _ in range(300):
        sim.step()
        for sp in PLASMA_SPECIES:
            moved[sp] += S * s[f"exchange_{sp}_pg"]     # patient mass that left the patch
    for sp in PLASMA_SPECIES:
        plasma = s[f"plasma_{sp}"] * vp
        assert s[f"plasma_clamped_{sp}_pg"] == 0.0
        assert plasma == pytest.approx(start[sp] + moved[sp], rel=1e-9, abs=1e-3)
        assert s[f"exchange_in_{sp}_pg"] == pytest.approx(moved[sp], rel=1e-12)


def test_cytokine_mass_conserved_with_the_field_solver():
    """Real exchange at vessel sites: S * tissue mass + plasma mass is constant."""
    FieldProcess = pytest.importorskip("abm.model.field_process").FieldProcess

    extra = no_clearance()
    extra["fields"] = {sp: {"tissue_half_life_min": INF, "exchange_per_s": 5e-3}
                       for sp in PLASMA_SPECIES}
    sim = make(extra, processes=(FieldProcess, BloodProcess))
    st = sim.state
    rng = np.random.default_rng(5)
    st.fields[:] = rng.uniform(0.0, 200.0, size=st.fields.shape)
    S, vp = patient_scale(sim.config), plasma_ml(sim.config)
    vox = st.lattice.voxel_ml
    idx = {sp: i for i, sp in enumerate(("ifng", "gmcsf", "il6", "il1", "il7_15", "ang2", "damage"))}

    def total(sp):
        return S * st.fields[idx[sp]].sum() * vox + st.scalars[f"plasma_{sp}"] * vp

    before = {sp: total(sp) for sp in PLASMA_SPECIES}
    for _ in range(100):
        sim.step()
    for sp in PLASMA_SPECIES:
        assert abs(st.scalars[f"exchange_in_{sp}_pg"]) > 1e-6 * before[sp]   # something crossed
        assert total(sp) == pytest.approx(before[sp], rel=1e-9)


def test_blood_never_goes_negative_and_clamped_mass_is_counted():
    sim = make(no_clearance())
    s = sim.state.scalars
    s["exchange_il6_pg"] = -1e12
    sim.step()
    assert s["plasma_il6"] == pytest.approx(0.0, abs=1e-9)   # clearance ~1e-15: not quite off
    assert s["plasma_clamped_il6_pg"] > 0.0


# -- plasma cytokines, myeloid pool, IL-6R -----------------------------------------------

def test_plasma_baselines_are_steady():
    sim = make({"blood": {"infusion_day": 500.0}, "lymphodepletion": {"enabled": False}})
    s = sim.state.scalars
    before = {sp: s[f"plasma_{sp}"] for sp in PLASMA_SPECIES}
    sim.run(steps=500)
    for sp in PLASMA_SPECIES:
        assert s[f"plasma_{sp}"] == pytest.approx(before[sp], rel=1e-9)
    assert s["sys_myeloid_activation"] == 0.0


def test_il6_rises_when_tocilizumab_blocks_receptor_clearance():
    sim = make({"blood": {"infusion_day": 500.0}})
    s = sim.state.scalars
    c0 = s["plasma_il6"]
    s["il6r_occupancy"] = 1.0
    sim.run(steps=200)
    assert s["plasma_il6"] == pytest.approx(c0 / (1.0 - 0.6), rel=1e-6)


def test_systemic_myeloid_pool_steady_state():
    """Clamped plasma IFN-gamma activates the pool to the analytic steady state."""
    sim = make({"blood": {"infusion_day": 500.0, "myeloid_il1_fg_per_h": 0.0}})
    blood = sim.processes[0].model
    p = sim.config.blood
    s = sim.state.scalars
    ifng = 400.0
    for _ in range(2000):
        s["plasma_ifng"] = ifng
        sim.step()
    x = (ifng - blood.baseline["ifng"]) / p.myeloid_ifng_ec50_pg_ml
    h = x ** 2 / (1 + x ** 2)
    a = p.myeloid_activation_per_h * h / (p.myeloid_activation_per_h * h + p.myeloid_deactivation_per_h)
    assert s["sys_myeloid_activation"] == pytest.approx(a, rel=1e-6)
    k6 = math.log(2) / (p.il6_half_life_min * 60)
    il6 = blood.baseline["il6"] + p.myeloid_pool_cells * a * p.myeloid_il6_fg_per_h * 1e-3 / 3600 / plasma_ml(sim.config) / k6
    assert s["plasma_il6"] == pytest.approx(il6, rel=1e-6)
    assert 50 < il6 < 1000           # CRS range (docs/model.md 12.1 sanity check)
    assert s["il6_myeloid_fraction"] == 1.0
    # steroids suppress the pool's secretion by Imax * effect
    s["steroid_effect"] = 1.0
    for _ in range(500):
        s["plasma_ifng"] = ifng
        sim.step()
    assert s["plasma_il6"] == pytest.approx(blood.baseline["il6"] + 0.1 * (il6 - blood.baseline["il6"]), rel=1e-6)


def test_systemic_pool_switches_off_when_the_drive_ends():
    """The autocrine IL-1 loop of the pool is not self-sustaining (CRS can resolve)."""
    sim = make({"blood": {"infusion_day": 500.0}})
    s = sim.state.scalars
    for _ in range(1000):
        s["plasma_ifng"] = 2000.0
        s["plasma_gmcsf"] = 500.0
        sim.step()
    assert s["sys_myeloid_activation"] > 0.8     # the maximum is k_on / (k_on + k_off) = 0.83
    assert s["plasma_il6"] > 100.0               # ~124 pg/mL from the default 3e9-cell pool
    sim.run(steps=10 * 240)
    assert s["sys_myeloid_activation"] < 1e-3
    assert s["plasma_il6"] == pytest.approx(s["baseline_il6"], rel=1e-2)


def test_il6_source_fraction_counts_scaled_patch_sources():
    sim = make({"blood": {"infusion_day": 500.0}})
    s = sim.state.scalars
    S = patient_scale(sim.config)
    s["il6_secreted_cart_pg"] = 10.0
    s["il6_secreted_myeloid_pg"] = 30.0
    sim.step()
    sysm = s["il6_secreted_systemic_pg"]
    assert s["il6_myeloid_fraction"] == pytest.approx((30 * S + sysm) / (40 * S + sysm))


# -- tumour lysis and markers --------------------------------------------------------------

def test_tumour_lysis_raises_k_phosphate_urate_and_lowers_calcium():
    sim = make({"blood": {"infusion_day": 500.0}})
    s = sim.state.scalars
    p = sim.config.blood
    n_patient = 2e11
    s["tumour_lysed_patient_step"] = n_patient
    sim.step()
    s["tumour_lysed_patient_step"] = 0.0
    dk = n_patient * p.potassium_release_fmol * 1e-12 / (p.ecf_volume_l_per_kg * sim.config.patient.weight_kg)
    decay = math.exp(-math.log(2) / (p.potassium_half_life_h * 3600) * sim.config.run.dt_s)
    assert s["potassium_mmol_l"] - p.potassium_baseline_mmol_l == pytest.approx(dk * decay, rel=1e-9)
    assert s["uric_acid_mg_dl"] > p.uric_acid_baseline_mg_dl + 5
    assert s["phosphate_mg_dl"] > p.phosphate_baseline_mg_dl + 2
    assert s["calcium_mg_dl"] < p.calcium_baseline_mg_dl - 1
    sim.run(steps=10 * 240)     # renal clearance brings them back
    assert s["potassium_mmol_l"] == pytest.approx(p.potassium_baseline_mmol_l, abs=1e-3)
    assert s["calcium_mg_dl"] == pytest.approx(p.calcium_baseline_mg_dl, abs=1e-3)


def test_ang2_and_vwf_rise_with_systemic_endothelial_activation():
    sim = make({"blood": {"infusion_day": 500.0}})
    s = sim.state.scalars
    a0, v0, r0 = s["plasma_ang2"], s["vwf_iu_dl"], s["ang2_ang1_ratio"]
    for _ in range(20 * 240):
        s["endothelial_activation_systemic"] = 1.0
        sim.step()
    p = sim.config.blood
    assert s["plasma_ang2"] == pytest.approx(a0 * (1 + p.ang2_activation_gain), rel=1e-3)
    assert s["vwf_iu_dl"] == pytest.approx(v0 * (1 + p.vwf_activation_gain), rel=1e-3)
    assert s["ang2_ang1_ratio"] == pytest.approx(r0 * (1 + p.ang2_activation_gain), rel=1e-3)


def test_patient_scale_from_volume():
    cfg = config_from_dict({"patient": {"tumour_volume_ml": 50.0}, "tumour": {"initial_cells": 5000}})
    assert patient_scale(cfg) == pytest.approx(50.0 * 1e9 / 5000)


def test_volumes_and_pools_scale_with_body_weight():
    child = make({"patient": {"weight_kg": 20.0}}, processes=(BloodProcess,))
    adult = make({"patient": {"weight_kg": 70.0}}, processes=(BloodProcess,))
    bc, ba = child.processes[0].model, adult.processes[0].model
    assert ba.vp == pytest.approx(3003.0) and bc.vp == pytest.approx(ba.vp * 20 / 70)
    assert bc.v_blood_ul == pytest.approx(ba.v_blood_ul * 20 / 70)
    assert bc.pool == pytest.approx(ba.pool * 20 / 70)
    assert child.state.scalars["lymphocytes_cells"] == pytest.approx(
        adult.state.scalars["lymphocytes_cells"] * 20 / 70)


def test_random_effects_change_baselines_per_seed():
    a = make({"patient": {"random_effects": True}, "run": {"seed": 1}}).state.scalars
    b = make({"patient": {"random_effects": True}, "run": {"seed": 2}}).state.scalars
    a2 = make({"patient": {"random_effects": True}, "run": {"seed": 1}}).state.scalars
    assert a["baseline_il6"] != b["baseline_il6"]
    assert a["baseline_il6"] == a2["baseline_il6"]
    typical = make().state.scalars
    assert typical["baseline_il6"] == pytest.approx(5.2)


def test_entering_cart_carry_the_pool_potential_on_average():
    """Entrants get floor(m) or floor(m) + 1 with mean m (stochastic rounding)."""
    from abm.model.agents import Extravasation
    sim = make({"product": {"max_divisions": 10}}, processes=(Extravasation,))
    proc = sim.processes[0]
    sim.state.scalars["cart_pool_divisions_left"] = 3.3
    sites = np.arange(4000)
    got = proc._entry_potential(sim.state, sites)
    assert set(np.unique(got)) == {3, 4}
    assert abs(got.mean() - 3.3) < 3 * math.sqrt(0.3 * 0.7 / 4000)
    sim.state.scalars["cart_pool_divisions_left"] = 10.0
    assert np.all(proc._entry_potential(sim.state, sites[:10]) == 10)
    del sim.state.scalars["cart_pool_divisions_left"]      # before infusion: the product's potential
    assert np.all(proc._entry_potential(sim.state, sites[:10]) == 10)


def test_product_division_potential_varies_between_patients_as_a_log_normal():
    """``max_divisions exp(sd z)``, rounded, with z the patient's ``product_fitness`` effect."""
    from abm.model.cart import patient_division_potential
    from abm.model.effects import patient_effects

    def cfg(sd, effects=True):
        return config_from_dict({"product": {"max_divisions": 12, "division_potential_sd": sd},
                                 "patient": {"random_effects": effects}})
    assert {patient_division_potential(cfg(0.0), s) for s in range(50)} == {12}
    assert {patient_division_potential(cfg(0.4, effects=False), s) for s in range(50)} == {12}
    seeds = range(600)
    got = np.array([patient_division_potential(cfg(0.4), s) for s in seeds])
    z = np.array([patient_effects(s)["product_fitness"] for s in seeds])
    np.testing.assert_array_equal(got, np.clip(np.round(12 * np.exp(0.4 * z)), 0, 100))
    log_ratio = np.log(got / 12.0)
    assert abs(np.median(log_ratio)) < 0.05                     # median 12 (z symmetric)
    assert 0.35 < np.std(log_ratio) < 0.45                      # SD 0.4 up to rounding and sampling
    assert np.corrcoef(z, [patient_effects(s)["neuro_sensitivity"] for s in seeds])[0, 1] ** 2 < 0.02


def test_the_patient_pool_and_the_patch_entrants_start_from_the_patients_potential():
    from abm.model.agents import Extravasation
    from abm.model.cart import patient_division_potential
    extra = {"product": {"max_divisions": 12, "division_potential_sd": 0.5},
             "patient": {"random_effects": True}, "run": {"seed": 3}}
    sim = make(extra, processes=(WholePatientProcess, Extravasation))
    m = patient_division_potential(sim.config, sim.seed)
    assert m != 12                                              # seed 3 draws a product unlike the median
    assert sim.state.scalars["cart_pool_divisions_left"] == m
    entry = next(p for p in sim.processes if isinstance(p, Extravasation))
    del sim.state.scalars["cart_pool_divisions_left"]
    assert np.all(entry._entry_potential(sim.state, np.arange(10)) == m)
