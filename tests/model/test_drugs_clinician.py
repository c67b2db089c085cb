"""Drug PK/PD and the virtual clinician, driven by synthetic cytokine inputs."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from abm import grading
from abm.config import config_from_dict
from abm.errors import ConfigError
from abm.model import drugs
from abm.model.coupling import bed_scale as patient_scale
from abm.model.patient import (SYSTEMIC_PROCESSES, ClinicianProcess, CRSProcess, DrugProcess,
                               PhysiologyProcess)
from abm.process import Process
from abm.build import build_simulation

BASE = {"lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 100},
        "patient": {"random_effects": False}, "run": {"seed": 8, "start_day": 0.0, "end_day": 30.0}}


def config(extra=None):
    data = {k: dict(v) for k, v in BASE.items()}
    for k, v in (extra or {}).items():
        data.setdefault(k, {}).update(v)
    return config_from_dict(data)


def clamp(values: dict, t_on=0.0, t_off=math.inf):
    """A process that holds plasma concentrations (pg/mL) fixed between t_on and t_off."""

    class Clamp(Process):
        phase = "tissue_to_blood"

        def step(self, state):
            if t_on <= state.time_day < t_off:
                for sp, c in values.items():
                    state.scalars[f"plasma_{sp}"] = c
            else:
                for sp in values:
                    state.scalars[f"plasma_{sp}"] = 0.0
    return Clamp


def patch_efflux(cfg, levels: dict, t_on: float, t_off: float):
    """A field-phase process whose patch efflux holds plasma near ``levels`` (pg/mL)."""
    S, vp, dt = patient_scale(cfg), cfg.blood.plasma_volume_ml_per_kg * cfg.patient.weight_kg, cfg.run.dt_s
    half = {"ifng": cfg.blood.ifng_half_life_min, "gmcsf": cfg.blood.gmcsf_half_life_min}

    class Efflux(Process):
        phase = "fields"

        def step(self, state):
            on = t_on <= state.time_day < t_off
            for sp, c in levels.items():
                k = math.log(2) / (half[sp] * 60)
                state.scalars[f"exchange_{sp}_pg"] = k * c * vp * dt / S if on else 0.0
    return Efflux


def run_recorded(sim, every=1):
    rows = []
    sim.add_writer(every, lambda s: rows.append(s.record_row()))
    sim.run()
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


# -- PK / PD -------------------------------------------------------------------------

def test_tocilizumab_pk_matches_the_frey_ode():
    cfg = config({"run": {"end_day": 28.0}})
    sim = build_simulation(cfg, processes=[DrugProcess])
    drugs.give(sim.state, "tocilizumab", 560.0)
    ts = run_recorded(sim, every=40)
    k = sim.processes[0].model.tcz
    assert k["cl"] == 0.3 and k["v1"] == 3.5 and k["v2"] == 2.9 and k["vmax"] == 7.5

    def rhs(t, a):
        c1 = a[0] / 3.5
        return [-(0.3 / 3.5) * a[0] - 7.5 * c1 / (2.7 + c1) - (0.2 / 3.5) * a[0] + (0.2 / 2.9) * a[1],
                (0.2 / 3.5) * a[0] - (0.2 / 2.9) * a[1]]

    t = ts["time"] - ts["time"][0]
    ref = solve_ivp(rhs, (0, t[-1]), [560.0, 0.0], t_eval=t, rtol=1e-10, atol=1e-10)
    # (the record before the first step precedes the PK update of the dose)
    np.testing.assert_allclose(ts["tcz_ug_ml"][1:], ref.y[0][1:] / 3.5, rtol=2e-3)
    assert ts["tcz_ug_ml"][1] == pytest.approx(160.0, rel=0.03)   # label Cmax ~183 ug/mL after 8 mg/kg
    # receptor occupancy stays near 1 for weeks (Nishimoto 2008: saturated while TCZ detectable)
    days = ts["time"] - ts["time"][0]
    assert ts["il6r_occupancy"][1:][days[1:] <= 14].min() > 0.99
    assert ts["il6r_occupancy"][-1] > 0.9
    assert ts["tocilizumab_total_mg"][-1] == 560.0


def test_tocilizumab_random_effects_follow_frey_variability():
    from abm.model.effects import patient_effects
    p = config().drugs
    cls = [drugs.tcz_parameters(p, patient_effects(seed))["cl"] for seed in range(300)]
    sd = np.std(np.log(cls))
    assert 0.3 < sd < 0.45                      # omega_CL = 0.376


def test_dexamethasone_half_life_and_concentration():
    cfg = config({"run": {"end_day": 1.0}})
    sim = build_simulation(cfg, processes=[DrugProcess])
    drugs.give(sim.state, "dexamethasone", 10.0)
    ts = run_recorded(sim)
    c0 = 10.0 / 60.0 / 392.5 * 1e6                     # nM: 10 mg in 60 L
    assert ts["dex_nm"][1] == pytest.approx(c0 * 0.5 ** (0.1 / 3.0), rel=1e-9)
    i3 = np.argmin(abs(ts["time"] - 3.0 / 24.0))
    assert ts["dex_nm"][i3] == pytest.approx(c0 / 2, rel=1e-6)   # t1/2 = 3 h


def test_steroid_effect_has_an_onset_lag_and_stays_in_0_1():
    cfg = config({"run": {"end_day": 3.0}})
    sim = build_simulation(cfg, processes=[DrugProcess])
    drugs.give(sim.state, "dexamethasone", 10.0)
    ts = run_recorded(sim)
    e, t = ts["steroid_effect"], ts["time"] * 24.0
    assert e[1] < 0.1                                   # not immediate
    assert e[np.argmin(abs(t - 6.0))] > 0.8             # developed within hours
    assert e[-1] < 0.01                                  # washed out after 3 days
    assert (e >= 0).all() and (e <= 1).all()


def test_methylprednisolone_counts_as_dexamethasone_equivalent():
    cfg = config({"run": {"end_day": 0.01}})
    sim = build_simulation(cfg, processes=[DrugProcess])
    drugs.give(sim.state, "methylprednisolone", 1000.0)
    sim.step()
    s = sim.state.scalars
    assert s["steroid_dexeq_nm"] == pytest.approx(0.179 * s["mp_nm"])
    assert s["mp_nm"] > 1000.0


def test_anakinra_blocks_il1_signalling():
    cfg = config({"run": {"end_day": 0.01}})
    sim = build_simulation(cfg, processes=[DrugProcess])
    drugs.give(sim.state, "anakinra", 100.0)
    sim.step()
    assert sim.state.scalars["il1r_blockade"] > 0.95


def test_give_counts_doses_and_logs_events():
    sim = build_simulation(config(), processes=[DrugProcess])
    drugs.give(sim.state, "tocilizumab", 560.0, "CRS grade 2")
    drugs.give(sim.state, "tocilizumab", 560.0)
    s = sim.state.scalars
    assert s["tocilizumab_doses"] == 2 and s["tocilizumab_total_mg"] == 1120.0
    assert [e[1] for e in sim.state.events] == ["tocilizumab", "tocilizumab"]
    with pytest.raises(ValueError):
        drugs.give(sim.state, "aspirin", 1.0)


# -- the clinician -----------------------------------------------------------------------

CLINICAL = [PhysiologyProcess, ClinicianProcess, CRSProcess]


def test_tocilizumab_at_grade_2_quenches_fever_and_vasopressor_need_while_il6_rises():
    """docs/model.md 10.5, with a synthetic CAR-T surge (patch IFN-gamma / GM-CSF efflux, days 1-5)."""
    out = {}
    for tcz in (True, False):
        cfg = config({"run": {"end_day": 4.0},
                      "clinician": {"tocilizumab": tcz, "dexamethasone": False, "methylprednisolone": False}})
        sim = build_simulation(cfg, processes=[patch_efflux(cfg, {"ifng": 300.0, "gmcsf": 100.0}, 1.0, 5.0),
                                         *SYSTEMIC_PROCESSES])
        out[tcz] = (sim, run_recorded(sim))
    sim, ts = out[True]
    doses = [e for e in sim.state.events if e[1] == "tocilizumab"]
    t_dose = doses[0][0]
    i0 = np.argmin(abs(ts["time"] - t_dose))
    i1 = np.argmin(abs(ts["time"] - (t_dose + 1.0)))
    assert ts["crs_grade"][i0] == 2                      # given at grade 2
    assert ts["temperature_c"][i0] >= 38.0
    # within a day: afebrile, no vasopressor, hypotension support gone
    assert ts["temperature_c"][i1] < 38.0
    assert ts["vasopressors"][i0:i1 + 1].max() == 0
    assert ts["hypotension_support"][i1] < ts["hypotension_support"][i0]
    # ... while serum IL-6 rises (IL-6R-mediated clearance blocked)
    assert ts["plasma_il6"][i1] > 1.5 * ts["plasma_il6"][i0]
    # the same patient without tocilizumab stays febrile and needs a vasopressor
    _, ref = out[False]
    assert ref["temperature_c"][i1] >= 38.0
    assert ref["vasopressors"][i0:i1 + 1].max() >= 1
    assert ref["crs_grade"][i1] >= 3
    assert ref["plasma_il6"][i1] < ts["plasma_il6"][i1]


def test_vasopressor_ladder_vasopressin_is_not_a_second_vasopressor():
    cfg = config({"run": {"end_day": 1.5},
                  "physiology": {"map_max_drop_mmhg": 80.0},
                  "clinician": {"tocilizumab": False, "dexamethasone": False, "methylprednisolone": False,
                                "map_noise_sd_mmhg": 0.0}})
    sim = build_simulation(cfg, processes=[clamp({"il6": 5000.0}, t_on=0.2), *CLINICAL])
    ts = run_recorded(sim)
    ev = [(e[0], e[1], e[3]) for e in sim.state.events if e[1] in ("fluid_bolus", "vasopressor_up")]
    kinds = [k for _, k, _ in ev]
    assert kinds[:3] == ["fluid_bolus"] * 3                   # fluids first
    assert kinds[3:6] == ["vasopressor_up"] * 3
    assert "1 vasopressor(s);" in ev[3][2]                     # norepinephrine
    assert "1 vasopressor(s) + vasopressin" in ev[4][2]        # vasopressin add-on
    assert "2 vasopressor(s) + vasopressin" in ev[5][2]
    # grades along the ladder: fluids 2, one vasopressor (+/- vasopressin) 3, two 4
    for t, kind, detail in ev[2:6]:
        i = np.argmin(abs(ts["time"] - t))
        expected = 2 if kind == "fluid_bolus" else (4 if detail.startswith("2 ") else 3)
        assert ts["crs_grade"][i] == expected, detail
    # escalation waits escalate_after_h on each rung
    assert ev[4][0] - ev[3][0] >= 2.0 / 24 - 1e-9
    assert ts["crs_max_grade"][-1] == 4


def test_vasopressors_are_weaned_when_map_recovers():
    cfg = config({"run": {"end_day": 3.0},
                  "clinician": {"tocilizumab": False, "dexamethasone": False, "methylprednisolone": False}})
    sim = build_simulation(cfg, processes=[clamp({"il6": 3000.0}, t_on=0.2, t_off=1.0), *CLINICAL])
    ts = run_recorded(sim)
    assert ts["vasopressors"].max() >= 1
    assert ts["vasopressors"][-1] == 0 and ts["vasopressin"][-1] == 0
    downs = [e for e in sim.state.events if e[1] == "vasopressor_down"]
    assert len(downs) >= 1
    assert ts["crs_active"][-1] == 0 and ts["crs_resolved_day"][-1] > 1.0


def oxygen_config(half, extra_clin=None):
    clin = {"tocilizumab": False, "dexamethasone": False, "methylprednisolone": False,
            "spo2_noise_sd_pct": 0.0, "map_noise_sd_mmhg": 0.0}
    clin.update(extra_clin or {})
    return config({"run": {"end_day": 1.0}, "physiology": {"pulmonary_leak_half": half, "map_max_drop_mmhg": 0.0},
                   "clinician": clin})


@pytest.mark.parametrize("half,level,grade", [(1.1, grading.O2_LOW_FLOW, 2),
                                              (0.6, grading.O2_HIGH_FLOW, 3),
                                              (0.25, grading.O2_POSITIVE_PRESSURE, 4)])
def test_oxygen_ladder_sets_the_hypoxia_grade(half, level, grade):
    sim = build_simulation(oxygen_config(half), processes=[clamp({"il6": 2000.0}, t_on=0.1), *CLINICAL])
    ts = run_recorded(sim)
    assert ts["oxygen_support"][-1] == level
    assert ts["crs_grade"][-1] == grade
    assert ts["spo2_pct"][-1] >= 92.0                      # titrated to target
    if level == grading.O2_LOW_FLOW:
        assert ts["oxygen_flow_l_min"][-1] <= 6.0


def test_oxygen_for_comfort_does_not_count():
    cfg = config({"run": {"end_day": 1.0},
                  "physiology": {"shunt_baseline": 0.3, "map_max_drop_mmhg": 0.0},
                  "clinician": {"spo2_noise_sd_pct": 0.0, "tocilizumab": False}})
    sim = build_simulation(cfg, processes=[clamp({"il6": 100.0}), *CLINICAL])
    ts = run_recorded(sim)
    late = ts["time"] > 0.5
    assert (ts["temperature_c"][late] >= 38.0).all()
    assert 92.0 <= ts["spo2_pct"][late].min()
    assert (ts["oxygen_for_comfort"][late] == 1).all()     # given ...
    assert (ts["fio2"][late] > 0.21).all()                 # ... and delivered ...
    assert (ts["oxygen_support"][late] == 0).all()         # ... but not counted
    assert (ts["crs_grade"][late] == 1).all()


def test_tocilizumab_repeat_limits_and_dose_cap():
    cfg = config({"run": {"end_day": 4.0}, "patient": {"weight_kg": 120.0},
                  "clinician": {"dexamethasone": False, "methylprednisolone": False}})
    # IFN-gamma keeps the endothelium activated whatever tocilizumab does: CRS stays >= 2
    sim = build_simulation(cfg, processes=[clamp({"ifng": 6000.0, "il6": 300.0}, t_on=0.1), DrugProcess, *CLINICAL])
    run_recorded(sim, every=10)
    doses = [e for e in sim.state.events if e[1] == "tocilizumab"]
    times = np.array([e[0] for e in doses])
    assert len(doses) == 4                                  # tocilizumab_max_doses
    assert all(e[3].startswith("800 mg") for e in doses)    # 8 mg/kg x 120 kg capped at 800 mg
    assert (np.diff(times) >= 8.0 / 24 - 1e-9).all()
    for t in times:
        assert ((times > t - 1.0) & (times <= t)).sum() <= 3


def test_dexamethasone_for_grade_3_and_methylprednisolone_for_grade_4():
    cfg = config({"run": {"end_day": 2.0}, "physiology": {"map_max_drop_mmhg": 80.0},
                  "clinician": {"tocilizumab": False, "map_noise_sd_mmhg": 0.0}})
    sim = build_simulation(cfg, processes=[clamp({"ifng": 20000.0, "il6": 2000.0}, t_on=0.2), DrugProcess, *CLINICAL])
    ts = run_recorded(sim)
    dex = [e for e in sim.state.events if e[1] == "dexamethasone"]
    mp = [e for e in sim.state.events if e[1] == "methylprednisolone"]
    first3 = ts["time"][np.argmax(ts["crs_grade"] >= 3)]
    assert dex and dex[0][0] == pytest.approx(first3, abs=1e-9)
    assert dex[0][3].startswith("10 mg")
    assert np.all(np.diff([e[0] for e in dex]) >= 6.0 / 24 - 1e-9)
    assert not mp or ts["crs_max_grade"][-1] == 4
    # grade 4 (positive pressure): dexamethasone 20 mg and methylprednisolone 1 g
    cfg = oxygen_config(0.25, {"dexamethasone": True, "methylprednisolone": True})
    cfg = cfg.replace(physiology=cfg.physiology.replace(endothelial_steroid_imax=0.0))  # steroids cannot help
    sim = build_simulation(cfg, processes=[clamp({"il6": 2000.0}, t_on=0.1), DrugProcess, *CLINICAL])
    ts = run_recorded(sim)
    assert ts["crs_max_grade"][-1] == 4
    dex = [e for e in sim.state.events if e[1] == "dexamethasone"]
    mp = [e for e in sim.state.events if e[1] == "methylprednisolone"]
    assert dex[0][3].startswith("10 mg; CRS grade 3")
    assert mp[0][3].startswith("1000 mg; CRS grade 4")
    at4 = [e for e in dex if e[0] >= mp[0][0]]
    assert at4 and all(e[3].startswith("20 mg") for e in at4)   # 20 mg q6h at grade 4
    assert ts["methylprednisolone_doses"][-1] == 1            # daily


def test_dexamethasone_course_runs_to_grade_1_then_tapers():
    cfg = config({"run": {"end_day": 6.0}, "physiology": {"map_max_drop_mmhg": 80.0},
                  "clinician": {"tocilizumab": False, "map_noise_sd_mmhg": 0.0}})
    sim = build_simulation(cfg, processes=[clamp({"ifng": 20000.0, "il6": 2000.0}, t_on=0.2, t_off=1.5),
                                     DrugProcess, *CLINICAL])
    ts = run_recorded(sim)
    dex = [e for e in sim.state.events if e[1] == "dexamethasone"]
    full = [e for e in dex if e[3] != "5 mg; taper"]
    taper = [e for e in dex if e[3] == "5 mg; taper"]
    assert full and taper
    assert max(e[0] for e in full) < min(e[0] for e in taper)
    assert 3 <= len(taper) <= 4                    # 5 mg q12h for 2 days, at ward assessments
    assert (np.diff([e[0] for e in taper]) >= 0.5 - 1e-9).all()
    assert taper[-1][0] <= taper[0][0] + 2.0
    end = ts["time"][np.flatnonzero(ts["crs_grade"] >= 2)[-1]]     # last time at grade >= 2
    assert taper[0][0] >= end


def test_refractory_grade_2_gets_dexamethasone_after_24h():
    cfg = config({"run": {"end_day": 3.0},
                  "physiology": {"pulmonary_leak_half": 1.1, "map_max_drop_mmhg": 0.0},
                  "clinician": {"spo2_noise_sd_pct": 0.0}})
    # a tocilizumab-resistant (IFN-gamma driven) lung leak: low-flow oxygen, grade 2 throughout
    sim = build_simulation(cfg, processes=[clamp({"ifng": 6000.0, "il6": 300.0}, t_on=0.1), DrugProcess, *CLINICAL])
    ts = run_recorded(sim, every=10)
    ev = sim.state.events
    tcz = [e[0] for e in ev if e[1] == "tocilizumab"]
    dex = [e for e in ev if e[1] == "dexamethasone"]
    assert ts["crs_max_grade"][-1] == 2
    assert tcz and dex
    assert dex[0][0] == pytest.approx(tcz[0] + 1.0, abs=1.01 / 24)   # at the first assessment 24 h later
    assert "refractory" in dex[0][3]


def test_refractoriness_counts_from_the_current_episode():
    """Tocilizumab in an earlier episode does not make a new grade-2 episode refractory at once."""
    cfg = config({"run": {"end_day": 6.0}, "clinician": {"map_noise_sd_mmhg": 0.0, "max_boluses_per_24h": 10}})
    # an IL-6 burst (fever, hypotension: grade 2, tocilizumab), then 3 days later an
    # IFN-gamma-driven leak (tocilizumab still on board: masked, fluids, grade 2)
    burst = clamp({"il6": 400.0}, t_on=0.2, t_off=0.6)

    class Second(Process):
        phase = "tissue_to_blood"

        def step(self, state):
            if 3.2 <= state.time_day < 5.0:
                state.scalars["plasma_ifng"] = 700.0

    sim = build_simulation(cfg, processes=[burst, Second, DrugProcess, *CLINICAL])
    ts = run_recorded(sim, every=10)
    ev = sim.state.events
    assert sum(1 for e in ev if e[1] == "crs_onset") == 2
    tcz = [e[0] for e in ev if e[1] == "tocilizumab"]
    assert any(t > 3.0 for t in tcz) and any(t < 1.0 for t in tcz)
    assert ts["crs_max_grade"][-1] == 2
    dex = [e for e in ev if e[1] == "dexamethasone"]
    # refractory: 24 h after the second episode's first tocilizumab, not at once
    second_tcz = min(t for t in tcz if t > 3.0)
    assert dex and dex[0][0] == pytest.approx(second_tcz + 1.0, abs=1.01 / 24)
    assert "refractory" in dex[0][3]


def test_without_tocilizumab_refractoriness_counts_from_onset():
    cfg = config({"run": {"end_day": 3.0},
                  "clinician": {"tocilizumab": False, "map_noise_sd_mmhg": 0.0, "max_boluses_per_24h": 10}})
    sim = build_simulation(cfg, processes=[clamp({"il6": 150.0, "ifng": 700.0}, t_on=0.2), DrugProcess, *CLINICAL])
    ts = run_recorded(sim, every=10)
    onset = ts["crs_onset_day"][-1]
    dex = [e for e in sim.state.events if e[1] == "dexamethasone"]
    assert ts["crs_max_grade"][-1] == 2
    assert dex and dex[0][0] == pytest.approx(onset + 1.0, abs=1.01 / 24) and "refractory" in dex[0][3]


def test_icans_triggers_dexamethasone():
    class Icans(Process):
        phase = "tissue_to_blood"

        def step(self, state):
            state.scalars["icans_grade"] = 2.0 if state.time_day >= 0.5 else 0.0

    sim = build_simulation(config({"run": {"end_day": 1.0}}), processes=[Icans, DrugProcess, *CLINICAL])
    run_recorded(sim)
    dex = [e for e in sim.state.events if e[1] == "dexamethasone"]
    assert dex and dex[0][0] >= 0.5 and "ICANS" in dex[0][3]


def test_no_tocilizumab_and_prophylactic_dex_presets():
    cfg = config({"run": {"end_day": 3.5}, "clinician": {"preset": "prophylactic_dex"}})
    assert cfg.clinician.prophylactic_dex_days == (0.0, 1.0, 2.0)
    sim = build_simulation(cfg, processes=[DrugProcess, *CLINICAL])
    ts = run_recorded(sim)
    dex = [e for e in sim.state.events if e[1] == "dexamethasone"]
    assert [e[0] for e in dex] == pytest.approx([0.1 / 24, 1.0, 2.0], abs=1e-9)
    assert ts["dexamethasone_total_mg"][-1] == 30.0
    assert ts["crs_masked"].max() == 0                     # no CRS before: no masking
    cfg = config({"run": {"end_day": 3.0}, "clinician": {"preset": "no_tocilizumab"}})
    sim = build_simulation(cfg, processes=[clamp({"ifng": 300.0, "il6": 800.0}, t_on=0.2), DrugProcess, *CLINICAL])
    ts = run_recorded(sim)
    assert ts["crs_max_grade"][-1] >= 2
    assert ts["tocilizumab_doses"][-1] == 0


def test_masking_after_tocilizumab_keeps_grading_without_fever():
    cfg = config({"run": {"end_day": 2.0},
                  "clinician": {"dexamethasone": False, "methylprednisolone": False, "map_noise_sd_mmhg": 0.0}})
    sim = build_simulation(cfg, processes=[clamp({"ifng": 6000.0, "il6": 300.0}, t_on=0.1), DrugProcess, *CLINICAL])
    ts = run_recorded(sim)
    after = ts["time"] > ts["time"][np.argmax(ts["tocilizumab_doses"] > 0)] + 0.5
    afebrile = after & (ts["temperature_c"] < 38.0)
    assert afebrile.any()
    assert (ts["crs_masked"][afebrile] == 1).all()
    supported = afebrile & (ts["hypotension_support"] > 0)
    assert supported.any()
    assert (ts["crs_grade"][supported] >= 2).all()


def test_decisions_happen_at_ward_assessments():
    cfg = config({"run": {"end_day": 2.0}, "clinician": {"tocilizumab": False}})
    sim = build_simulation(cfg, processes=[clamp({"il6": 3000.0}, t_on=0.3), DrugProcess, *CLINICAL])
    run_recorded(sim)
    acts = [e[0] for e in sim.state.events if e[1] in ("fluid_bolus", "vasopressor_up", "vasopressor_down",
                                                       "oxygen_up", "oxygen_down", "dexamethasone")]
    assert acts
    hours = (np.array(acts) - cfg.run.start_day) * 24.0 - cfg.run.dt_min / 60.0
    np.testing.assert_allclose(hours, np.round(hours), atol=1e-6)   # on the assessment grid


def test_clinician_config_errors():
    with pytest.raises(ConfigError, match="map_severe_mmhg"):
        config({"clinician": {"map_severe_mmhg": 70.0}})
    with pytest.raises(ConfigError, match="preset"):
        config({"clinician": {"preset": "aggressive"}})
    with pytest.raises(ConfigError, match="did you mean"):
        config({"clinician": {"tocilizumab_min_grad": 2}})
