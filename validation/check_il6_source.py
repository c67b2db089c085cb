"""Check 4 (docs/model.md 10.4): IL-6 comes >= 90 % from myeloid cells, in every CD28 patient."""

from __future__ import annotations

import math

import numpy as np

from validation.report import result
from validation.stats import median

NUMBER = 4
TITLE = "IL-6 comes >= 90 % from myeloid cells"
COHORTS = ("mech_paired", "mech_burden")
IL6_MYELOID_MIN = 0.90


def check_il6_source(runs) -> dict:
    cd28 = [r for r in runs if r["config"]["product"].get("preset") == "cd28" and r["config"]["run"]["end_day"] >= 28]
    f = np.array([r["ep"].get("il6_myeloid_fraction", math.nan) for r in cd28])
    ok = ~np.isnan(f)
    below = [(r["run_id"], float(x)) for r, x in zip(cd28, f) if x == x and x < IL6_MYELOID_MIN]
    figs = {"n": int(ok.sum()), "min": float(np.min(f[ok])) if ok.any() else math.nan,
            "median": median(f), "q05": float(np.quantile(f[ok], 0.05)) if ok.any() else math.nan,
            "n_below": len(below), "below": below[:10], "nan": int((~ok).sum())}
    passed = ok.any() and not below and figs["nan"] == 0
    lines = [f"il6_myeloid_fraction over {figs['n']} CD28 patients (all arms and burdens, full course): "
             f"median {figs['median']:.4f}, 5th percentile {figs['q05']:.4f}, min {figs['min']:.4f}; "
             f"below {IL6_MYELOID_MIN:.2f}: {len(below)}" + (f"; undefined (no IL-6 secreted): {figs['nan']}"
                                                            if figs["nan"] else "")]
    if below:
        lines.append("  below: " + ", ".join(f"{i} {x:.3f}" for i, x in below[:5]))
    return result(4, TITLE, f"il6_myeloid_fraction >= {IL6_MYELOID_MIN:.2f} in every CD28 patient", passed, figs, lines)


def run(ctx) -> dict:
    return check_il6_source(ctx.runs("mech_paired", "mech_burden"))
