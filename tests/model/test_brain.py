"""The brain barrier (Starling), CSF, neuro-inflammation, ward neuro signs, ICANS episodes and the
clinician's ICANS / seizure management, on synthetic plasma courses (no cell rules)."""

import math

import pytest

from abm import grading
from abm.model import brain as B
from abm.model.patient import BrainProcess, ClinicianProcess, CRSProcess, DrugProcess
from abm.process import Process
from abm.build import build_simulation

from helpers.brain import config, plasma, run


# -- the Starling model alone ------------------------------------------------------------------

def test_starling_flux_analytic():
    # J_v = L_p A [(P_c - P_i) - sigma (pi_c - pi_i)], cm/s/mmHg x cm^2 = mL/s
    assert B.starling_flux(4e-10, 1.5e5, 32, 7, 1.0, 25, 0.5) == pytest.approx(4e-10 * 1.5e5 * 3600 * 0.5)
    assert B.starling_flux(1e-9, 1e5, 30, 10, 0.5, 25, 1) == pytest.approx(1e-9 * 1e5 * 3600 * (20 - 12))
    assert B.starling_flux(1e-9, 1e5, 20, 10, 1.0, 25, 1) == pytest.approx(1e-9 * 1e5 * 3600 * (10 - 24))  # absorption


def test_barrier_limits():
    p = config().brain
    assert B.barrier(p, 0.0) == (1.0, p.sigma_rest, 1.0)
    lp, sigma, ps = B.barrier(p, 1.0)
    assert lp == pytest.approx(p.lp_max_factor) and sigma == pytest.approx(p.sigma_min)
    assert ps == pytest.approx(p.ps_max_factor)
    assert B.icp_mmhg(p, p.pressure_volume_index_ml) == pytest.approx(10 * p.icp_rest_mmhg)


def test_oedema_grows_as_lp_rises_and_sigma_falls():
    p = config().brain
    assert B.steady_water_ml(p, 1.0, 1.0, hours=200) == pytest.approx(0.0, abs=1e-9)   # resting barrier
    by_lp = [B.steady_water_ml(p, lp, 0.8, hours=400) for lp in (1, 2, 5, 10)]
    by_sigma = [B.steady_water_ml(p, 5.0, sg, hours=400) for sg in (1.0, 0.9, 0.7, 0.5)]
    assert all(b > a for a, b in zip(by_lp, by_lp[1:])), by_lp
    assert all(b > a for a, b in zip(by_sigma, by_sigma[1:])), by_sigma
    # ICP rises with the water excess and holds the flux back: W stays below the balance point
    lp, sigma, _ = B.barrier(p, 1.0)
    w = B.steady_water_ml(p, lp, sigma, hours=800)
    balance = p.capillary_pressure_mmhg - sigma * (p.plasma_oncotic_mmhg - p.interstitial_oncotic_mmhg)
    assert B.icp_mmhg(p, w) < balance


def test_water_step_is_stable_at_any_dt():
    p = config().brain
    lp, sigma, _ = B.barrier(p, 1.0)
    fine = B.steady_water_ml(p, lp, sigma, hours=600, dt_h=0.05)
    coarse = B.steady_water_ml(p, lp, sigma, hours=600, dt_h=6.0)
    assert coarse == pytest.approx(fine, rel=1e-3)
    w = 0.0
    for _ in range(50):
        w, _ = B.water_step(p, w, lp, sigma, 24.0)
        assert 0 <= w < 50


def test_q_alb_rest_and_activated():
    cfg = config(brain={"endothelial_response": False})
    sim, rows = run(cfg)
    q = rows[-1]["q_alb"]
    assert 4e-3 <= q <= 6.1e-3                       # Hegen 2016 median 4.1-6.1e-3
    sim, rows = run(config(patient={"baseline_endothelial_activation": 1.0, "random_effects": False}))
    assert 15e-3 <= max(r["q_alb"] for r in rows) <= 40e-3     # severe dysfunction band (> 25e-3 severe)


# -- the brain on a synthetic surge -------------------------------------------------------------

def test_endothelial_switch_off_means_no_icans_2():
    sim, rows = run(config(brain={"endothelial_response": False}), il6=5000.0, il1=200.0, ifng=2000.0)
    s = sim.state.scalars
    assert s["brain_endothelial_activation_max"] == 0.0
    assert s["icans_max_grade"] <= 1 and s["neuroinflammation_max"] < 0.2
    assert s["brain_water_excess_max_ml"] == 0.0


def test_icans_follows_the_surge_with_a_lag():
    sim, rows = run(config(run={"end_day": 12.0}))
    s = sim.state.scalars
    assert s["icans_max_grade"] >= 2
    assert s["icans_onset_day"] >= 0.5 + 0.5            # CSF entry and oedema take time
    # E, CSF IL-6 and N rise after the surge, in that order
    first = {k: next(r["time"] for r in rows if r[k] > thr)
             for k, thr in (("brain_endothelial_activation", 0.2), ("csf_il6", 5.0), ("neuroinflammation", 0.3))}
    assert 0.5 <= first["brain_endothelial_activation"] <= first["csf_il6"] <= first["neuroinflammation"]
    assert s["icans_active"] == 0 and s["icans_duration_days"] > 0     # resolves after the surge
    kinds = [e[1] for e in sim.state.events]
    assert kinds.index("icans_onset") < kinds.index("icans_resolved")


class HoldBarrier(Process):
    """Holds the brain barrier activation A at 0.6 (set before the brain steps; response off)."""
    phase = "tissue_to_blood"

    def step(self, state):
        state.scalars["brain_barrier_activation"] = 0.6


def test_csf_il6_entry_does_not_depend_on_tocilizumab_occupancy():
    # barrier held at a fixed activation (response off, A set to 0.6): same plasma IL-6 -> same CSF IL-6
    cfg = config(brain={"endothelial_response": False})
    sims = [build_simulation(cfg, processes=[plasma(occupancy=occ), HoldBarrier, BrainProcess]) for occ in (0.0, 0.99)]
    for sim in sims:
        sim.run()
    a, b = (sim.state.scalars for sim in sims)
    assert a["csf_il6_peak"] == pytest.approx(b["csf_il6_peak"])
    assert a["csf_il6_peak"] > 5.0                  # the held barrier lets plasma IL-6 into the CSF


def test_steroids_damp_neuroinflammation():
    a = run(config())[0].state.scalars
    b = run(config(), steroid=1.0)[0].state.scalars
    assert b["neuroinflammation_max"] < 0.6 * a["neuroinflammation_max"]


def test_baseline_activation_is_a_risk_factor():
    kw = dict(il6=300.0, il1=15.0, ifng=50.0)
    low = run(config(), **kw)[0].state.scalars
    high = run(config(patient={"baseline_endothelial_activation": 0.3, "random_effects": False}), **kw)[0].state.scalars
    assert high["neuroinflammation_max"] > low["neuroinflammation_max"]
    assert high["icans_max_grade"] >= low["icans_max_grade"]


@pytest.mark.parametrize("sensitivity", [1.0, 3.0, 10.0])
def test_local_il6_loop_does_not_sustain_itself(sensitivity):
    """Whatever the patient's neuro sensitivity s: the loop's IL-6 is counted in units of the
    patient's own potency EC_N6 / s, so a gain < 2 never holds N up without a drive (with the
    potency alone, s > ~2.3 made the loop bistable: any seed ignited ICANS)."""
    cfg = config()
    sim = build_simulation(cfg, processes=[plasma(t_on=99, t_off=99), BrainProcess])
    sim.processes[1].model.neuro_sens = sensitivity
    s = sim.state.scalars
    s["neuroinflammation"], s["csf_il6"] = 1.0, 200.0
    sim.run()
    assert s["neuroinflammation"] < 0.01 and s["csf_il6"] < 1.0


@pytest.mark.parametrize("scope", ["all", "cytokines"])
def test_neuro_sensitivity_scope_decides_whether_oedema_is_amplified(scope):
    """The patient's neuro sensitivity weighs CSF cytokines and oedema (scope all, the default) or
    the cytokines only (scope cytokines: oedema acts through pressure, the same in every patient).
    A slight water excess through a barrier barely open (the first hours of a mild inflammation):
    with scope cytokines it moves N* the same in a 20-fold sensitive patient as in anyone, while CSF
    IL-6 above the resting level moves it 20-fold more either way."""
    # oedema potency W_50 = 12 mL (the value at which the "all" scope put ICANS before CRS)
    sim = build_simulation(config(brain={"neuro_sensitivity_scope": scope, "neuro_oedema_ec50_ml": 12.0}),
                           processes=[BrainProcess])
    brain = sim.processes[0].model
    s = sim.state.scalars
    p = brain.p
    rest = brain.csf_rest(s, "il6")

    def target(sens, water_ml, csf_il6):
        brain.neuro_sens = sens
        s["brain_water_excess_ml"], s["csf_il6"] = water_ml, rest + csf_il6
        return brain.neuro_target(s)

    def h(x):
        return x ** p.neuro_hill / (1.0 + x ** p.neuro_hill)

    w = 0.6                                    # mL: what A ~ 0.03 builds in two days
    amplified = 20.0 if scope == "all" else 1.0
    assert target(20.0, w, 0.0) == pytest.approx(h(amplified * w / p.neuro_oedema_ec50_ml))
    assert target(1.0, w, 0.0) == pytest.approx(h(w / p.neuro_oedema_ec50_ml))
    if scope == "cytokines":
        assert target(20.0, w, 0.0) < 0.01    # no ICE item fails (lowest N50 0.30)
    else:
        assert target(20.0, w, 0.0) > 0.30    # the amplified oedema alone fails ICE items (N = 0.5)
    d = 0.1                                    # pg/mL of CSF IL-6 above the resting level
    assert target(20.0, 0.0, d) == pytest.approx(h(20.0 * d / p.neuro_il6_ec50_pg_ml))
    assert target(20.0, 0.0, d) > 10.0 * target(1.0, 0.0, d)


def test_ice_is_10_without_inflammation_and_noisy_item_by_item():
    sim, rows = run(config(), t_on=99, t_off=99)
    assert all(r["ice_score"] == 10 and r["consciousness_level"] == 0 for r in rows)
    # item-level noise at a fixed intermediate N: scores vary between assessments
    cfg = config()
    sim = build_simulation(cfg, processes=[BrainProcess])
    brain = sim.processes[0].model
    s = sim.state.scalars
    scores = []
    for step in range(200):
        sim.state.step = step
        s["neuroinflammation"] = 0.5
        brain._assess(sim.state, s, 0.0)
        scores.append(s["ice_score"])
    assert 2 <= min(scores) < max(scores) <= 10
    assert 4.0 <= sum(scores) / len(scores) <= 8.0


def test_ward_schedule():
    sim, rows = run(config(), t_on=99, t_off=99)
    times = {round(r["time"], 4) for r in rows}
    assert sim.state.scalars["brain_next_assessment_day"] > 7.9
    assert len(times) > 100


def test_ice_5_then_a_brief_seizure_makes_grade_3():
    cfg = config(brain={"seizure_max_rate_per_h": 1e6, "seizure_n50": 1e-6, "seizure_prolonged_n50": 1e6})
    sim = build_simulation(cfg, processes=[plasma(), BrainProcess])
    s = sim.state.scalars
    brain = sim.processes[1].model
    s["neuroinflammation"] = 0.5
    s["ice_score"], s["consciousness_level"] = 5.0, 0.0
    s["brain_next_assessment_day"] = math.inf
    assert grading.icans_grade(5) == 2
    sim.run(steps=1)
    assert s["seizures"] == 1 and s["seizures_prolonged"] == 0
    assert s["ice_score"] == 5 and s["icans_grade"] == 3
    assert [e[1] for e in sim.state.events] == ["seizure"]
    del brain


def test_repetitive_seizures_make_grade_4_and_prophylaxis_lowers_the_hazard():
    cfg = config(brain={"seizure_max_rate_per_h": 1e6, "seizure_n50": 1e-6, "seizure_prolonged_n50": 1e6})
    sim = build_simulation(cfg, processes=[plasma(), BrainProcess])
    s = sim.state.scalars
    s["neuroinflammation"] = 0.5
    sim.run(steps=2)
    assert s["seizures"] == 2 and s["seizures_prolonged"] == 1 and s["icans_grade"] == 4
    # hazard: prophylaxis multiplies it by (1 - efficacy)
    cfg = config()
    counts = {}
    for proph in (0.0, 1.0):
        sim = build_simulation(config(brain={"seizure_max_rate_per_h": 0.5, "seizure_n50": 0.5}),
                         processes=[BrainProcess])
        s = sim.state.scalars
        brain = sim.processes[0].model
        n = 0
        for step in range(4000):
            sim.state.step = step
            s["neuroinflammation"], s["seizure_prophylaxis"] = 0.5, proph
            s["brain_last_seizure_day"] = -math.inf
            before = s["seizures"]
            brain._seizures(sim.state, s, 0.0)
            n += s["seizures"] - before
        counts[proph] = n
    for proph, rate in ((0.0, 0.25), (1.0, 0.125)):      # per hour; binomial, 4 SD
        p = 1 - math.exp(-rate * 0.1)
        assert abs(counts[proph] - 4000 * p) < 4 * math.sqrt(4000 * p * (1 - p)), (proph, counts)


def test_oedema_thresholds_set_focal_then_diffuse():
    cfg = config(brain={"focal_oedema_ml": 3.0, "diffuse_oedema_ml": 8.0})
    sim, rows = run(cfg, t_on=0.0, t_off=99, il6=1e5, il1=1e3)
    levels = [r["oedema_level"] for r in rows]
    assert levels[0] == 0 and 1 in levels and levels[-1] == 2
    assert levels.index(1) < levels.index(2)
    assert rows[-1]["icans_grade"] == 4


# -- clinician: ICANS and seizure management ------------------------------------------------------

def clinician_run(icans, seizures=0, steps=30):
    cfg = config()

    class Fixed(Process):
        phase = "patient"

        def step(self, state):
            state.scalars["icans_grade"] = float(icans)
            state.scalars["seizures"] = float(seizures) if state.step >= 5 else 0.0

    sim = build_simulation(cfg, processes=[DrugProcess, Fixed, ClinicianProcess, CRSProcess])
    sim.state.scalars.update({"temperature_c": 37.0, "endothelial_activation_systemic": 0.0})
    sim.run(steps=steps)
    return sim


@pytest.mark.parametrize("icans, dex, mp", [(1, False, False), (2, True, False), (3, True, False),
                                            (4, True, True)])
def test_clinician_steroids_for_icans_and_never_tocilizumab(icans, dex, mp):
    sim = clinician_run(icans)
    kinds = [e[1] for e in sim.state.events]
    assert ("dexamethasone" in kinds) == dex
    assert ("methylprednisolone" in kinds) == mp
    assert "tocilizumab" not in kinds                 # no tocilizumab for ICANS alone


def test_clinician_treats_a_seizure():
    sim = clinician_run(3, seizures=1)
    kinds = [e[1] for e in sim.state.events]
    assert kinds.count("benzodiazepine") == 1 and kinds.count("levetiracetam") == 1
    assert sim.state.scalars["antiepileptic"] == 1.0
