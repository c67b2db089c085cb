"""Brain tests on synthetic plasma courses: a small config and a run without cell rules."""

from abm.config import config_from_dict
from abm.model.patient import BrainProcess, ICANSProcess
from abm.process import Process
from abm.build import build_simulation

BASE = {"lattice": {"shape": [16, 16]}, "tumour": {"initial_cells": 20},
        "run": {"seed": 3, "start_day": -1.0, "end_day": 8.0}, "patient": {"random_effects": False}}
BASELINE = {"il6": 5.2, "il1": 1.0, "ifng": 5.0, "gmcsf": 3.0, "ang2": 2000.0}


def config(**sections):
    data = {k: dict(v) for k, v in BASE.items()}
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    return config_from_dict(data)


def plasma(t_on=0.5, t_off=3.5, il6=1500.0, il1=60.0, ifng=300.0, occupancy=0.0, steroid=0.0):
    """A synthetic plasma course (phase tissue_to_blood): a cytokine surge from t_on to t_off."""

    class Plasma(Process):
        phase = "tissue_to_blood"

        def step(self, state):
            s, t = state.scalars, state.time_day
            on = t_on <= t < t_off
            for sp, base in BASELINE.items():
                s[f"baseline_{sp}"] = base
                s[f"plasma_{sp}"] = base
            if on:
                s["plasma_il6"], s["plasma_il1"], s["plasma_ifng"] = il6, il1, ifng
            s["il6r_occupancy"] = occupancy
            s["steroid_effect"] = steroid
            s["crs_grade"] = 1.0 if on else 0.0
            s.setdefault("crs_onset_day", t_on)
    return Plasma


def run(cfg, **kw):
    sim = build_simulation(cfg, processes=[plasma(**kw), BrainProcess, ICANSProcess])
    rows = []
    sim.add_writer(1, lambda s: rows.append(s.record_row()))
    sim.run()
    return sim, rows
