"""Check 1 (docs/model.md 10.1): 80 % lymphodepletion raises IL-7/IL-15 2.5-3x.

The blood model alone (no CAR-T: the infusion is after the end of the run),
against the closed form ``1 / (1 - f d)`` of the default config.
"""

from __future__ import annotations

import numpy as np

from validation import ROOT
from validation.cohort import BASE
from validation.report import result
from validation.stats import median

NUMBER = 1
TITLE = "80 % lymphodepletion raises IL-7/IL-15 2.5-3x"
COHORTS: tuple[str, ...] = ()
IL7_BAND = (2.5, 3.0)                  # fold over the pre-regimen level


def _blood_sim(depth: float, recovery: bool, end_day: float = 6.0, random_effects: bool = False, seed: int = 11):
    from abm.config import load_config
    from abm.model.patient import BloodProcess
    from abm.build import build_simulation
    ld = {"depth": float(depth), "enabled": depth > 0}
    if not recovery:
        ld["lymphocyte_recovery_per_day"] = 0.0
    over = {"lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 100},
            "patient": {"random_effects": random_effects},
            "run": {"seed": seed, "start_day": -6.0, "end_day": end_day},
            "blood": {"infusion_day": 500.0}, "lymphodepletion": ld}
    cfg = load_config(ROOT / "configs" / BASE, over)
    return build_simulation(cfg, processes=[BloodProcess])


def check_il7_15(depths=(0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95), n_random: int = 20) -> dict:
    """docs/model.md 10.1 with the blood model alone (no CAR-T: infusion after the end).

    The closed form ``1 / (1 - f d)`` of the default config at its default depth, and the simulated steady
    state (lymphocyte recovery off, so the depleted level is held) of the typical patient (random effects off)
    relative to its pre-regimen level, at several depths. PASS: both in [2.5, 3] at the default depth
    (0.8) and the simulation equals the closed form to 1e-6.
    """
    from abm.config import load_config
    cfg = load_config(ROOT / "configs" / BASE)
    ld = cfg.lymphodepletion
    d0 = ld.depth
    closed = ld.steady_state_ratio()
    sims = {}
    for d in sorted(set(depths) | {d0}):
        sim = _blood_sim(d, recovery=False)
        c0 = sim.state.scalars["plasma_il7_15"]
        sim.run()
        sims[d] = sim.state.scalars["plasma_il7_15"] / c0
    simulated = sims[d0]
    worst = max(abs(sims[d] - ld.steady_state_ratio(d)) / ld.steady_state_ratio(d) for d in sims)
    # course of the typical patient with lymphocyte recovery (as in a run): the peak fold
    sim = _blood_sim(d0, recovery=True, end_day=28.0)
    c0 = sim.state.scalars["plasma_il7_15"]
    course_t, course_y = [], []
    sim.add_writer(sim.config.run.every_steps(60.0),
                   lambda s: (course_t.append(s.state.time_day), course_y.append(s.state.scalars["plasma_il7_15"] / c0)))
    sim.run()
    i = int(np.argmax(course_y))
    # per-patient spread with random effects (lymphocyte baseline, production) at the default depth
    rnd = []
    for seed in range(1, n_random + 1):
        s = _blood_sim(d0, recovery=False, random_effects=True, seed=seed)
        c = s.state.scalars["plasma_il7_15"]
        s.run()
        rnd.append(s.state.scalars["plasma_il7_15"] / c)
    lo, hi = IL7_BAND
    passed = lo <= closed <= hi and lo <= simulated <= hi and worst < 1e-6
    figs = {"default_depth": d0, "consumption_fraction": ld.il7_15_consumption_fraction,
            "closed_form_ratio": closed, "simulated_ratio": simulated, "max_rel_error_vs_closed_form": worst,
            "depths": {str(d): r for d, r in sims.items()},
            "peak_fold_with_recovery": course_y[i], "peak_day_with_recovery": course_t[i],
            "random_effects_range": [min(rnd), max(rnd)], "random_effects_median": median(rnd)}
    lines = [f"closed form 1/(1 - f d), f = {ld.il7_15_consumption_fraction:g}, d = {d0:g}: {closed:.3f}x",
             f"simulated steady state (blood model, typical patient, recovery off): {simulated:.3f}x "
             f"(max relative difference from the closed form over {len(sims)} depths {worst:.1e})",
             f"info: with lymphocyte recovery (as in a run) the typical patient peaks at {course_y[i]:.2f}x "
             f"on day {course_t[i]:.1f}; with random effects (N0, production; {n_random} patients, recovery off) "
             f"{min(rnd):.2f}-{max(rnd):.2f}x (median {median(rnd):.2f}x)"]
    res = result(1, TITLE, f"closed form and simulated steady state at depth {d0:g} both within {lo:g}-{hi:g}x, and "
                    "equal to 1e-6", passed, figs, lines)
    res["_course"] = (course_t, course_y)
    return res


def run(ctx) -> dict:
    """The check at its default depths and 20 patients with random effects (no cohort needed)."""
    return check_il7_15()
