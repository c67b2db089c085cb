"""Check 6 (docs/model.md 10.6): ICANS follows CRS and requires barrier disruption."""

from __future__ import annotations

import math

from validation.cohort import paired
from validation.report import result
from validation.stats import fmt, median

NUMBER = 6
TITLE = "ICANS follows CRS and requires barrier disruption"
COHORTS = ("mech_paired", "mech_burden")


def check_icans_crs(runs) -> dict:
    on = [r for r in runs if r["config"]["brain"].get("endothelial_response", True)
          and r["config"]["run"]["end_day"] >= 28]
    both, after, lags, without, before_inf = 0, 0, [], [], 0
    for r in on:
        ic, crs = r["ep"]["icans_onset_day"], r["ep"]["crs_onset_day"]
        if r["ep"]["icans_max_grade"] >= 1:
            if ic < 0:
                before_inf += 1
            if crs == crs:
                both += 1
                lags.append(ic - crs)
                after += int(ic > crs)
            else:
                without.append(r["run_id"])
    off_a, on_a = paired(runs, "cd28_endo_off", "cd28")
    off2 = sum(1 for r in off_a if r["ep"]["icans_max_grade"] >= 2)
    off1 = sum(1 for r in off_a if r["ep"]["icans_max_grade"] >= 1)
    on2 = sum(1 for r in on_a if r["ep"]["icans_max_grade"] >= 2)
    off_max = max((r["ep"]["icans_max_grade"] for r in off_a), default=math.nan)
    eoff = median([r["ep"].get("brain_barrier_activation_max", math.nan) for r in off_a])
    eon = median([r["ep"].get("brain_barrier_activation_max", math.nan) for r in on_a])
    crit = {"icans_after_crs": both == after and not without, "off_no_grade2": off2 == 0 and len(off_a) > 0}
    lines = [f"{len(on)} runs with the endothelial response on (all arms, all burdens): ICANS in "
             f"{both + len(without)}; with both CRS and ICANS {both}, ICANS onset after CRS onset in {after}/{both} "
             f"(lag median {fmt(median(lags))} d, min {fmt(min(lags) if lags else math.nan)} d); ICANS without CRS "
             f"{len(without)}; ICANS before infusion {before_inf} [{'ok' if crit['icans_after_crs'] else 'NO'}]",
             f"endothelial response off, {len(off_a)} patients: ICANS >= 2 in {off2} (any {off1}, max grade "
             f"{fmt(off_max)}); the same patients with it on: ICANS >= 2 in {on2}; median peak barrier activation "
             f"A {fmt(eoff)} off vs {fmt(eon)} on [{'ok' if crit['off_no_grade2'] else 'NO'}]"]
    figs = {"n_on": len(on), "with_both": both, "icans_after_crs": after, "lag_median_d": median(lags),
            "lag_min_d": min(lags) if lags else math.nan, "icans_without_crs": len(without),
            "icans_without_crs_runs": without[:10], "icans_before_infusion": before_inf,
            "off_n": len(off_a), "off_icans_ge2": off2, "off_icans_any": off1, "off_max_grade": off_max,
            "on_paired_icans_ge2": on2, "barrier_activation_max_off": eoff, "barrier_activation_max_on": eon,
            "criteria": crit}
    return result(6, TITLE, "every run (endothelial response on) with ICANS has CRS and ICANS onset > CRS onset; "
                     "with brain.endothelial_response = false no ICANS grade >= 2",
                  all(crit.values()), figs, lines,
                  "" if all(crit.values()) else "failed: " + ", ".join(k for k, v in crit.items() if not v))


def run(ctx) -> dict:
    return check_icans_crs(ctx.runs("mech_paired", "mech_burden"))
