"""The two-scale patient: no shot noise in blood, and multiscale = direct coupling when the tumour fits.

``python -m validation multiscale`` runs two checks (docs/multiscale.md section 6):

* **shot noise**: the default patient over ``--n-multiscale`` seeds (20); after
  the infusion no step may change the blood CAR-T pool by more than 5 %;
* **consistency**: a tumour that fits in the patch (``S_v = 1``) simulated with
  ``coupling.mode = "multiscale"`` and ``"direct"`` over the same seeds; the
  endpoint distributions (the days the whole tumour halves and is cleared,
  cells killed, tumour CAR-T peak, blood CAR-T at the end) must agree within
  sampling error: a two-sided Mann-Whitney test per endpoint at alpha = 0.01
  (Holm over the endpoints).

Cleared means under half a cell: the direct tumour is a whole number of cells
(``S_v`` times the patch's count), the multiscale tumour a continuous pool that
decays towards zero without reaching it, so the cells left at the end compare
an integer 0 with a pool of 1e-50 cells and test nothing; the day the pool
falls under half a cell is the same event as the last cell's death. A tumour
not halved or not cleared by the end counts as the last day plus one step.

Results go to ``--multiscale-out`` (JSON) and are printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from validation import ROOT

TITLE = "Two-scale patient: no shot noise; multiscale equals direct coupling when the tumour fits the patch"
#: Largest change of blood CAR-T allowed in one step after the infusion.
MAX_STEP_CHANGE = 0.05
ALPHA = 0.01
#: A patient whose whole tumour fits in one small patch (S_v = 1).
SMALL_PATIENT = {
    "run": {"start_day": -1.0, "end_day": 10.0},
    "lattice": {"shape": [32, 32]},
    "tumour": {"initial_cells": 300, "homing_reference_burden_cells": 300.0},
    "patient": {"tumour_burden_cells": 300.0},
    "product": {"dose_cells": 3000.0},
    "output": {"fields": False, "cells": False},
}
ENDPOINTS = ("tumour_half_day", "tumour_cleared_day", "tumour_killed", "tumour_cart_peak",
             "blood_cart_end")
#: Fewer whole-tumour cells than this count as cleared.
CLEARED_CELLS = 0.5


def add_arguments(ap) -> None:
    g = ap.add_argument_group("multiscale (docs/multiscale.md)")
    g.add_argument("--n-multiscale", type=int, default=20, help="seeds per check (default 20)")
    g.add_argument("--multiscale-days", type=float, default=28.0,
                   help="days of the default patient for the shot-noise check (default 28)")
    g.add_argument("--multiscale-out", type=Path, default=ROOT / "runs" / "validate_multiscale.json",
                   help="results file (JSON)")


def max_blood_step_change(config, seed: int) -> float:
    """Largest relative one-step change of the blood CAR-T pool after the infusion step."""
    from abm.build import build_simulation
    sim = build_simulation(config, seed=seed)
    worst, prev, infused = 0.0, None, False
    while sim.state.step < config.run.n_steps:
        sim.step()
        b = sim.state.scalars["blood_cart_cells"]
        if infused and prev:
            worst = max(worst, abs(b - prev) / prev)
        infused = infused or sim.state.scalars["cart_infused"] > 0
        prev = b
    return worst


def small_patient_endpoints(mode: str, seed: int) -> dict:
    """Endpoints of the small patient under one coupling mode."""
    from abm.build import build_simulation
    from abm.config import config_from_dict
    data = {k: dict(v) for k, v in SMALL_PATIENT.items()}
    data["coupling"] = {"mode": mode}
    sim = build_simulation(config_from_dict(data), seed=seed)
    run = sim.config.run
    never = run.end_day + run.dt_s / 86400.0
    peak, half_day, cleared_day, t0 = 0.0, never, never, None
    while sim.state.step < run.n_steps:
        sim.step()
        s = sim.state.scalars
        peak = max(peak, s["tumour_cart_cells"])
        day, tumour = sim.state.time_day, s["tumour_cells"]
        if t0 is None and day >= 0.0:
            t0 = tumour            # the whole tumour on the infusion day
        if t0 is not None and half_day == never and tumour < 0.5 * t0:
            half_day = day
        if cleared_day == never and tumour < CLEARED_CELLS:
            cleared_day = day
    s = sim.state.scalars
    return {"tumour_half_day": half_day, "tumour_cleared_day": cleared_day,
            "tumour_killed": s["tumour_lysed_patient_cells"], "tumour_cart_peak": peak,
            "blood_cart_end": s["blood_cart_cells"]}


def consistency(n: int, seed0: int = 1) -> dict:
    from scipy.stats import mannwhitneyu
    from statsmodels.stats.multitest import multipletests
    runs = {m: [small_patient_endpoints(m, seed0 + i) for i in range(n)] for m in ("multiscale", "direct")}
    rows, ps = [], []
    for key in ENDPOINTS:
        a = np.array([r[key] for r in runs["multiscale"]])
        b = np.array([r[key] for r in runs["direct"]])
        p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue) if np.ptp(np.r_[a, b]) > 0 else 1.0
        ps.append(p)
        rows.append({"endpoint": key, "multiscale_median": float(np.median(a)), "direct_median": float(np.median(b)),
                     "multiscale_iqr": [float(np.percentile(a, 25)), float(np.percentile(a, 75))],
                     "direct_iqr": [float(np.percentile(b, 25)), float(np.percentile(b, 75))], "p": p})
    reject = multipletests(ps, alpha=ALPHA, method="holm")[0]
    for row, r in zip(rows, reject):
        row["differs"] = bool(r)
    return {"n": n, "rows": rows, "pass": not any(reject)}


def shot_noise(n: int, days: float) -> dict:
    from abm.config import load_config
    cfg = load_config(ROOT / "configs" / "default.toml",
                      overrides={"run": {"end_day": days}, "output": {"fields": False, "cells": False}})
    worst = [max_blood_step_change(cfg, seed) for seed in range(1, n + 1)]
    return {"n": n, "days": days, "max_step_change": worst, "worst": float(max(worst)),
            "pass": bool(max(worst) <= MAX_STEP_CHANGE)}


def run(args, error=None) -> int:
    out = {"shot_noise": shot_noise(args.n_multiscale, args.multiscale_days),
           "consistency": consistency(args.n_multiscale)}
    sn, co = out["shot_noise"], out["consistency"]
    print(f"multiscale: shot noise over {sn['n']} default patients ({sn['days']:g} days): largest one-step "
          f"change of blood CAR-T after infusion {100 * sn['worst']:.2f} % (limit {100 * MAX_STEP_CHANGE:.0f} %) "
          f"[{'PASS' if sn['pass'] else 'FAIL'}]")
    for row in co["rows"]:
        print(f"  {row['endpoint']:18s} multiscale median {row['multiscale_median']:.4g} "
              f"[{row['multiscale_iqr'][0]:.4g}, {row['multiscale_iqr'][1]:.4g}]  direct "
              f"{row['direct_median']:.4g} [{row['direct_iqr'][0]:.4g}, {row['direct_iqr'][1]:.4g}]  "
              f"Mann-Whitney p = {row['p']:.3g}{'  DIFFERS' if row['differs'] else ''}")
    print(f"multiscale: consistency with direct coupling (S_v = 1, {co['n']} seeds per mode, Holm alpha "
          f"{ALPHA}) [{'PASS' if co['pass'] else 'FAIL'}]")
    path = Path(args.multiscale_out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return 0 if sn["pass"] and co["pass"] else 1
