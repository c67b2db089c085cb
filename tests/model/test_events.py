"""Infusion reaction (never graded as CRS), Cairo-Bishop laboratory TLS, and the event classification."""

import pytest

from abm.config import config_from_dict
from abm.model.events import cairo_bishop_criteria, classify_events, lab_tls
from abm.model.patient import (BloodProcess, ClinicianProcess, CRSProcess, DrugProcess, EventsProcess,
                               PhysiologyProcess)
from abm.process import Process
from abm.build import build_simulation

BASE = {"lattice": {"shape": [16, 16]}, "tumour": {"initial_cells": 20},
        "run": {"seed": 5, "start_day": -4.0, "end_day": 9.0}, "patient": {"random_effects": False}}
NORMAL = {"uric_acid_mg_dl": 5.0, "potassium_mmol_l": 4.2, "phosphate_mg_dl": 3.5, "calcium_mg_dl": 9.4}


def config(**sections):
    data = {k: dict(v) for k, v in BASE.items()}
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    return config_from_dict(data)


# -- Cairo-Bishop, pure functions --------------------------------------------------------------

@pytest.mark.parametrize("labs, met", [
    (dict(NORMAL), []),
    (dict(NORMAL, uric_acid_mg_dl=8.0), ["uric_acid_mg_dl"]),
    (dict(NORMAL, potassium_mmol_l=6.0), ["potassium_mmol_l"]),
    (dict(NORMAL, phosphate_mg_dl=4.5), ["phosphate_mg_dl"]),
    (dict(NORMAL, calcium_mg_dl=7.0), ["calcium_mg_dl"]),
    (dict(NORMAL, uric_acid_mg_dl=7.9, potassium_mmol_l=5.9, phosphate_mg_dl=4.4, calcium_mg_dl=7.1), []),
])
def test_absolute_thresholds(labs, met):
    assert cairo_bishop_criteria(labs, relative_change=0) == met


def test_relative_change_from_baseline():
    base = dict(NORMAL, uric_acid_mg_dl=3.0)
    labs = dict(NORMAL, uric_acid_mg_dl=3.75, calcium_mg_dl=9.4 * 0.75)     # +25 % and -25 %
    assert cairo_bishop_criteria(labs, base) == ["uric_acid_mg_dl", "calcium_mg_dl"]
    assert cairo_bishop_criteria(labs, base, relative_change=0) == []
    labs = dict(NORMAL, uric_acid_mg_dl=3.7)                                 # +23 %
    assert cairo_bishop_criteria(labs, base) == []


@pytest.mark.parametrize("labs, day, tls", [
    (dict(NORMAL, uric_acid_mg_dl=9.0, potassium_mmol_l=6.5), 2.0, True),      # meets: two criteria
    (dict(NORMAL, uric_acid_mg_dl=9.0), 2.0, False),                           # misses: one criterion
    (dict(NORMAL, uric_acid_mg_dl=9.0, potassium_mmol_l=6.5), 8.0, False),     # outside: after day +7
    (dict(NORMAL, uric_acid_mg_dl=9.0, potassium_mmol_l=6.5), -3.5, False),    # outside: before day -3
    (dict(NORMAL, phosphate_mg_dl=5.0, calcium_mg_dl=6.5), -3.0, True),        # window edges included
    (dict(NORMAL, phosphate_mg_dl=5.0, calcium_mg_dl=6.5), 7.0, True),
])
def test_lab_tls(labs, day, tls):
    assert lab_tls(labs, day, NORMAL) == tls


# -- TLS on synthetic lab trajectories through the process ---------------------------------------

def labs_course(course):
    """A process writing lab values ``course(t) -> dict`` (phase patient, before the events process)."""
    class Labs(Process):
        phase = "patient"

        def step(self, state):
            state.scalars.update(course(state.time_day + state.config.run.dt_min / 1440.0))
    return Labs


def run_labs(course, **cfg):
    sim = build_simulation(config(**cfg), processes=[labs_course(course), EventsProcess])
    sim.state.scalars.update({f"tls_baseline_{k}": v for k, v in NORMAL.items()})    # pre-lysis labs
    sim.run()
    return sim


def test_tls_process_meets_the_criteria():
    def course(t):
        rise = 1.0 if 2.0 <= t < 3.0 else 0.0
        return dict(NORMAL, uric_acid_mg_dl=5.0 + 4.0 * rise, potassium_mmol_l=4.2 + 2.0 * rise)
    sim = run_labs(course)
    s = sim.state.scalars
    assert s["tls_lab_any"] == 1 and 2.0 <= s["tls_onset_day"] < 2.1 and s["tls_max_criteria"] == 2
    kinds = [e[1] for e in sim.state.events]
    assert kinds == ["tls_lab", "tls_resolved"]


def test_tls_process_misses_with_one_criterion_and_outside_the_window():
    sim = run_labs(lambda t: dict(NORMAL, uric_acid_mg_dl=9.0 if 2 <= t < 3 else 5.0))
    assert sim.state.scalars["tls_lab_any"] == 0 and sim.state.scalars["tls_max_criteria"] == 1
    late = lambda t: dict(NORMAL, uric_acid_mg_dl=9.0, potassium_mmol_l=6.5) if t >= 7.5 else dict(NORMAL)  # noqa: E731
    sim = run_labs(late)
    assert sim.state.scalars["tls_lab_any"] == 0 and sim.state.events == []
    early = lambda t: dict(NORMAL, uric_acid_mg_dl=9.0, potassium_mmol_l=6.5) if t < -3.2 else dict(NORMAL)  # noqa: E731
    sim = run_labs(early)
    assert sim.state.scalars["tls_lab_any"] == 0


def test_tls_from_labs_not_fever():
    hot = lambda t: dict(NORMAL, temperature_c=39.5)      # noqa: E731
    sim = run_labs(hot)
    assert sim.state.scalars["tls_lab_any"] == 0


# -- the infusion reaction is never graded as CRS ------------------------------------------------

def patient_processes():
    return [DrugProcess, BloodProcess, PhysiologyProcess, EventsProcess, ClinicianProcess, CRSProcess]


def test_infusion_reaction_with_fever_is_not_crs():
    cfg = config(run={"end_day": 1.0}, events={"reaction_probability": 1.0, "fever_probability": 1.0,
                                               "fever_c": [38.8, 38.8], "duration_min_h": 3.0,
                                               "duration_max_h": 3.0})
    sim = build_simulation(cfg, processes=patient_processes())
    temps, grades = [], []

    def watch(s):
        sc = s.state.scalars
        if sc["infusion_reaction_active"] > 0:
            temps.append(sc["temperature_c"])
            grades.append(sc["crs_grade"])
    sim.add_writer(1, watch)
    sim.run()
    s = sim.state.scalars
    assert s["infusion_reaction"] == 1 and 0.0 <= s["infusion_reaction_onset_day"] <= 2.0 / 24 + 1e-9
    assert max(temps) >= 38.8 and len(temps) >= 25          # febrile for ~3 h
    assert max(grades) == 0 and s["crs_max_grade"] == 0
    kinds = [e[1] for e in sim.state.events]
    assert "infusion_reaction" in kinds and "infusion_reaction_resolved" in kinds and "crs_onset" not in kinds
    assert "tocilizumab" not in kinds


def test_infusion_reaction_probability_and_timing():
    hits = 0
    for seed in range(200):
        cfg = config(run={"seed": seed, "end_day": 0.0 + 1e-3}, events={"reaction_probability": 0.3})
        sim = build_simulation(cfg, processes=[EventsProcess])
        s = sim.state.scalars
        if s["infusion_reaction_planned"]:
            hits += 1
            assert 0.0 <= s["infusion_reaction_start_day"] <= 2.0 / 24
            assert 1.0 / 24 <= s["infusion_reaction_end_day"] - s["infusion_reaction_start_day"] <= 4.0 / 24 + 1e-12
    assert 40 <= hits <= 80                                  # 60 expected (binomial SD 6.5)


# -- classification -------------------------------------------------------------------------------

def test_classify_events():
    events = [(0.05, "infusion_reaction", 0, "1.2 h after infusion; flushing"),
              (0.06, "dexamethasone", 0, "..."),
              (1.5, "crs_onset", 1, "episode 1"), (2.5, "tls_lab", 0, "K 6.1, UA 8.2"),
              (3.4, "icans_onset", 2, "ICE 5"), (20.0, "icans_onset", 1, "ICE 9")]
    out = classify_events(events)
    assert [r["class"] for r in out] == ["infusion reaction", "CRS", "TLS", "ICANS", "ICANS"]
    assert all(r["typical_timing"] for r in out[:4])
    assert out[3]["note"] == "during or after CRS"
    early = classify_events([(0.5, "icans_onset", 1, "ICE 8"), (1.0, "crs_onset", 1, "")])
    assert not early[0]["typical_timing"] and "other causes" in early[0]["note"]
    assert not classify_events([(9.0, "tls_lab", 0, "")])[0]["typical_timing"]
