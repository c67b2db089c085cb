"""Pre-existing (baseline) brain endothelial activation E_0 is a risk factor, not a disease
(docs/model.md 7 and 10.6; docs/brain.md 2-3): at rest a patient with a high E_0 has no oedema, no
neuro-inflammation and no ICANS sign; under the same cytokine exposure a higher E_0 gives more."""

import pytest

from abm.config import config_from_dict
from abm.model import brain as B
from abm.model.patient import SYSTEMIC_PROCESSES
from abm.build import build_simulation

from helpers.brain import config, run

AT_REST = dict(t_on=99.0, t_off=99.0)               # plasma stays at the patient's baseline
MILD = dict(il6=400.0, il1=2.0, ifng=25.0)          # a mild surge, days 0.5-3.5 (0.8 x the brain IL-6 potency)


def rest_q_alb(p):
    lp, sigma, ps = B.barrier(p, 0.0)
    jv = B.resting_flux_ml_h(p)
    ps_a = p.albumin_ps_ml_h * ps
    return ((1.0 - sigma) * jv + ps_a) / (ps_a + p.csf_outflow_ml_h + jv)


def assert_no_icans_sign(sim, rows, e0):
    s = sim.state.scalars
    assert all(r["icans_grade"] == 0 for r in rows)
    assert all(r["ice_score"] == 10 and r["consciousness_level"] == 0 for r in rows)
    assert all(r["seizure_level"] == 0 and r["motor_weakness"] == 0 and r["oedema_level"] == 0 for r in rows)
    assert s["seizures"] == 0 and s["icans_max_grade"] == 0 and s["icans_onset_day"] != s["icans_onset_day"]
    assert s["brain_water_excess_max_ml"] < 1e-9
    assert s["icp_max_mmhg"] == pytest.approx(sim.config.brain.icp_rest_mmhg)
    assert s["neuroinflammation_max"] < 1e-9
    assert s["brain_barrier_activation_max"] == 0.0
    assert all(r["brain_endothelial_activation"] == pytest.approx(e0) for r in rows)
    assert all(r["q_alb"] <= rest_q_alb(sim.config.brain) * (1 + 1e-9) for r in rows)
    assert not [e for e in sim.state.events if e[1].startswith("icans") or e[1] == "seizure"]


@pytest.mark.parametrize("e0", [0.6, 0.9, 1.0])
@pytest.mark.parametrize("seed, effects", [(3, False), (11, True), (12, True)])
def test_baseline_activation_alone_causes_no_icans(e0, seed, effects):
    cfg = config(patient={"baseline_endothelial_activation": e0, "random_effects": effects}, run={"seed": seed})
    sim, rows = run(cfg, **AT_REST)
    assert_no_icans_sign(sim, rows, e0)


@pytest.mark.parametrize("e0", [0.6, 0.9])
def test_baseline_activation_alone_no_icans_in_the_whole_patient_model(e0):
    # blood, physiology, clinician and grades without cell rules: no cytokine above baseline, but the
    # blood's plasma ANG-2 climbs from the healthy baseline to the patient's resting level (x (1 + gain E_0))
    cfg = config_from_dict({"lattice": {"shape": [16, 16]}, "tumour": {"initial_cells": 20},
                            "run": {"seed": 5, "start_day": -3.0, "end_day": 4.0},
                            "patient": {"baseline_endothelial_activation": e0}})
    sim = build_simulation(cfg, processes=list(SYSTEMIC_PROCESSES))
    rows = []
    sim.add_writer(1, lambda x: rows.append(x.record_row()))
    sim.run()
    assert max(r["ang2_ang1_ratio"] for r in rows) > 1.5 * rows[0]["ang2_ang1_ratio"]    # it does climb
    assert_no_icans_sign(sim, rows, e0)


def test_baseline_activation_raises_the_response_to_the_same_exposure():
    out = {}
    for e0 in (0.0, 0.3, 0.6, 0.9):
        sim, rows = run(config(patient={"baseline_endothelial_activation": e0, "random_effects": False},
                               run={"end_day": 10.0}), **MILD)
        out[e0] = sim.state.scalars
    e0s = sorted(out)
    for key in ("brain_barrier_activation_max", "brain_water_excess_max_ml", "q_alb_max", "csf_il6_peak",
                "neuroinflammation_max"):
        vals = [out[e][key] for e in e0s]
        assert all(b > a for a, b in zip(vals, vals[1:])), (key, vals)
    grades = [out[e]["icans_max_grade"] for e in e0s]
    assert all(b >= a for a, b in zip(grades, grades[1:])), grades
    assert grades[-1] >= grades[0] + 2, grades
    assert out[0.9]["neuroinflammation_max"] > 3 * out[0.0]["neuroinflammation_max"]
    # ICANS still follows the surge (day 0.5) through the barrier lag, whatever E_0
    assert all(out[e]["icans_onset_day"] >= 1.0 for e in e0s if out[e]["icans_max_grade"] >= 1)


@pytest.mark.parametrize("e0", [0.0, 0.9])
def test_endothelial_switch_off_means_no_icans_2_even_with_high_baseline(e0):
    cfg = config(brain={"endothelial_response": False},
                 patient={"baseline_endothelial_activation": e0, "random_effects": False})
    sim, rows = run(cfg, il6=5000.0, il1=200.0, ifng=2000.0)
    s = sim.state.scalars
    assert s["icans_max_grade"] <= 1 and s["neuroinflammation_max"] < 0.2
    assert s["brain_water_excess_max_ml"] == 0.0 and s["brain_barrier_activation_max"] == 0.0
    assert s["brain_endothelial_activation_max"] == pytest.approx(e0)


def test_neuroinflammation_reads_csf_above_the_resting_level():
    # what a resting barrier lets through (here a high plasma level) drives nothing
    cfg = config(patient={"baseline_endothelial_activation": 0.9, "random_effects": False})
    sim, _ = run(cfg, **AT_REST)
    brain = sim.processes[1].model
    s = sim.state.scalars
    s["csf_rest_il6"] = 50.0
    s["csf_il6"] = brain.csf_rest(s, "il6")
    assert s["csf_il6"] == 50.0
    assert brain.neuro_target(s) == 0.0
    s["csf_il6"] += 12.0                               # EC_N6 above rest
    assert brain.neuro_target(s) > 0.0


def test_no_cytokine_drive_through_a_resting_barrier_whatever_the_sensitivity():
    """Endothelial response off: the CSF equals its resting-barrier reference, so N stays 0
    even for an extremely sensitive brain and plasma levels far above any CRS."""
    cfg = config(brain={"endothelial_response": False, "neuro_il6_ec50_pg_ml": 1e-3,
                        "neuro_ifng_ec50_pg_ml": 1e-3, "neuro_il1_ec50_pg_ml": 1e-3,
                        "neuro_gmcsf_ec50_pg_ml": 1e-3},
                 patient={"baseline_endothelial_activation": 0.5, "random_effects": False})
    sim, rows = run(cfg, il6=20000.0, il1=500.0, ifng=5000.0)
    s = sim.state.scalars
    assert max(r["csf_il6"] for r in rows) > 1.0          # cytokines do reach the CSF ...
    assert s["neuroinflammation_max"] == 0.0              # ... but only as through a resting barrier
    assert s["icans_max_grade"] == 0
    # with the response on, the same exposure opens the barrier and drives N
    on = config(brain={"neuro_il6_ec50_pg_ml": 1e-3, "neuro_ifng_ec50_pg_ml": 1e-3,
                       "neuro_il1_ec50_pg_ml": 1e-3, "neuro_gmcsf_ec50_pg_ml": 1e-3},
                patient={"baseline_endothelial_activation": 0.5, "random_effects": False})
    sim_on, _ = run(on, il6=20000.0, il1=500.0, ifng=5000.0)
    assert sim_on.state.scalars["neuroinflammation_max"] > 0.5


def test_endothelium_starts_at_its_resting_state():
    """Cells start at the rule's resting fixed point: activation E_0 and the store's expected steady
    value, which the rule then keeps (mean over the patch's cells, no cytokines)."""
    import numpy as np

    from abm.cells import ENDOTHELIAL
    from abm.model import endothelium
    en = config_from_dict({}).endothelium
    assert endothelium.resting_state(en, 0.0, 360.0) == (0.0, 1.0)
    e, w = endothelium.resting_state(en, 0.5, 360.0)
    assert e == 0.5 and 0.0 < w < 0.2    # release 1/h against a 24 h refill: a store mostly spent
    cfg = config_from_dict({"lattice": {"shape": [64, 64], "vessel_fraction": 0.25}, "tumour": {"initial_cells": 2000},
                            "run": {"seed": 9, "start_day": -1.0, "end_day": 1.0},
                            "patient": {"baseline_endothelial_activation": 0.5}})
    sim = build_simulation(cfg)
    c = sim.state.cells
    rows = np.flatnonzero(c.kind[: c.n] == ENDOTHELIAL)
    assert np.all(c.activation[rows] == 0.5) and np.allclose(c.store[rows], w)
    sim.run(120)                                     # 12 h, all before the infusion
    store = c.store[rows]
    assert abs(store.mean() - w) < 4 * store.std() / np.sqrt(rows.size) + 1e-12
    assert np.allclose(c.activation[rows], 0.5, atol=0.02)    # baseline plasma cytokines add a little


@pytest.mark.parametrize("e0", [0.5, 0.9])
def test_no_angiopoietin_burst_at_the_start_of_a_run(e0):
    """With the patches' endothelium on, a chronically activated patient's ANG-2 / ANG-1 stays at or
    below its resting level before any CAR-T or cytokine (no store emptied into plasma at start-up),
    so the brain barrier stays closed."""
    cfg = config_from_dict({"lattice": {"shape": [64, 64]}, "tumour": {"initial_cells": 2000},
                            "run": {"seed": 4, "start_day": -1.0, "end_day": 1.0},
                            "patient": {"baseline_endothelial_activation": e0,
                                        "tumour_burden_cells": 1e11}})
    sim = build_simulation(cfg)
    rows = []
    sim.add_writer(1, lambda x: rows.append(x.record_row()))
    sim.run(239)                                     # day -1 to just before the infusion
    brain = next(p.model for p in sim.processes if isinstance(getattr(p, "model", None), B.Brain))
    s = sim.state.scalars
    rest = brain.ang_ratio_healthy(s) * brain.ang_rest_factor
    assert max(r["ang2_ang1_ratio"] for r in rows) <= rest * (1 + 1e-6)
    assert s["brain_barrier_activation_max"] < 1e-3 and s["icans_max_grade"] == 0
