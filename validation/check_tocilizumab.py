"""Check 5 (docs/model.md 10.5): tocilizumab quenches fever and hypotension, does not prevent ICANS.

Each CD28 patient of ``mech_paired`` given tocilizumab against the same
patient under the clinician preset ``no_tocilizumab``, over the 72 h after
the first dose; the two arms are identical until that dose.
"""

from __future__ import annotations

import math

import numpy as np

from validation.cohort import paired
from validation.report import result
from validation.stats import ALPHA, fmt, fmt_p, mcnemar_exact, median, wilcoxon

NUMBER = 5
TITLE = "Tocilizumab quenches fever and hypotension, does not prevent ICANS; serum IL-6 rises"
COHORTS = ("mech_paired",)
TCZ_WINDOW_H = 72.0                    # hours after the first tocilizumab dose compared between arms


def _window(r, t0, hours):
    t = r["ts"]["time"]
    return (t >= t0 - 1e-9) & (t <= t0 + hours / 24.0 + 1e-9)


def _record_h(r):
    t = r["ts"]["time"]
    return float(np.median(np.diff(t))) * 24.0 if t.size > 1 else 1.0


def _first_dose_day(r):
    t, d = r["ts"]["time"], r["ts"]["tocilizumab_doses"]
    ev = [e[0] for e in r["events"] if e[1] == "tocilizumab"]
    if ev:
        return min(ev)
    sel = d > 0
    return float(t[sel][0]) if sel.any() else math.nan


def tocilizumab_pairs(runs):
    """(tcz run, no-tcz run, first-dose day) for the CD28 patients given tocilizumab in the default arm."""
    a, b = paired(runs, "cd28", "cd28_no_tcz")
    out = []
    for x, y in zip(a, b):
        td = _first_dose_day(x)
        if td == td:
            out.append((x, y, td))
    return out


def check_tocilizumab(runs) -> dict:
    a, b = paired(runs, "cd28", "cd28_no_tcz")
    pairs = tocilizumab_pairs(runs)
    H = TCZ_WINDOW_H
    fever, hypo, press, e_sys, il6max, il6_at, ratio, ic_after = ([], []), ([], []), ([], []), ([], []), \
        ([], []), [], [], ([], [])
    for x, y, td in pairs:
        for i, r in enumerate((x, y)):
            w = _window(r, td, H)
            ts, dh = r["ts"], _record_h(r)
            fever[i].append(float(np.sum(ts["temperature_c"][w] >= 38.0)) * dh)
            hypo[i].append(float(np.sum((ts["map_mmhg"][w] < 65.0) | (ts["hypotension_support"][w] >= 1))) * dh)
            press[i].append(float(np.sum(ts["vasopressors"][w] >= 1)) * dh)
            e_sys[i].append(float(np.nanmean(ts["endothelial_activation_systemic"][w])))
            il6max[i].append(float(np.nanmax(ts["plasma_il6"][w])))
            after = r["ts"]["time"] >= td - 1e-9
            ic_after[i].append(bool(np.nanmax(ts["icans_grade"][after]) >= 1))
            if i == 0:
                j = int(np.argmax(w))
                il6_at.append(float(ts["plasma_il6"][max(j - 1, 0)]))
        ratio.append(il6max[0][-1] / il6_at[-1] if il6_at[-1] > 0 else math.nan)
    n = len(pairs)
    same = 0.0          # the two arms of a patient must be identical before the first dose
    for x, y, td in pairs:
        pre = x["ts"]["time"] < td - 1e-9
        for k in ("plasma_il6", "temperature_c", "map_mmhg", "blood_cart_per_ul", "icans_grade"):
            if pre.any():
                same = max(same, float(np.nanmax(np.abs(x["ts"][k][pre] - y["ts"][k][pre]))))
    tf = wilcoxon(fever[0], fever[1], "less")
    th = wilcoxon(hypo[0], hypo[1], "less")
    tp = wilcoxon(press[0], press[1], "less")
    te = wilcoxon(e_sys[0], e_sys[1], "less")
    ti = wilcoxon(il6max[0], il6max[1], "greater")
    mc = mcnemar_exact(ic_after[0], ic_after[1])
    icans_any = mcnemar_exact([r["ep"]["icans_max_grade"] >= 1 for r in a], [r["ep"]["icans_max_grade"] >= 1 for r in b])
    icans_2 = mcnemar_exact([r["ep"]["icans_max_grade"] >= 2 for r in a], [r["ep"]["icans_max_grade"] >= 2 for r in b])
    rise = int(np.sum(np.array(ratio) > 1.0))
    crit = {"fever_quenched": tf["p"] < ALPHA, "hypotension_quenched": th["p"] < ALPHA,
            "il6_rises": ti["p"] < ALPHA and median(ratio) > 1.0,
            "icans_not_prevented": mc["a_events"] >= 1 and mc["p_a_fewer"] >= ALPHA}
    lines = [f"{len(a)} paired CD28 patients, default clinician vs preset no_tocilizumab; {n} got tocilizumab "
             f"(first dose median day {fmt(median([p[2] for p in pairs]))}); the arms are identical until that dose, "
             f"compared over the {H:g} h after it (with vs without, medians; paired one-sided Wilcoxon); largest "
             f"difference between the arms before the dose {same:.1g}",
             f"fever (T >= 38 C): {fmt(tf['median_a'])} vs {fmt(tf['median_b'])} h (less with tocilizumab in "
             f"{tf['a_lt_b']}/{tf['n_pairs']}, {fmt_p(tf['p'])}) [{'ok' if crit['fever_quenched'] else 'NO'}]",
             f"hypotension (MAP < 65 or on fluids/vasopressors): {fmt(th['median_a'])} vs {fmt(th['median_b'])} h (less in "
             f"{th['a_lt_b']}, more in {th['a_gt_b']}, {fmt_p(th['p'])}) [{'ok' if crit['hypotension_quenched'] else 'NO'}]; "
             f"vasopressor hours {sum(press[0]):.0f} vs {sum(press[1]):.0f} in all ({fmt_p(tp['p'])}); mean systemic "
             f"endothelial activation {fmt(te['median_a'])} vs {fmt(te['median_b'])} ({fmt_p(te['p'])})",
             f"plasma IL-6 max in the window {fmt(ti['median_a'])} vs {fmt(ti['median_b'])} pg/mL (higher with tocilizumab "
             f"in {ti['a_gt_b']}/{ti['n_pairs']}, {fmt_p(ti['p'])}); with tocilizumab it rose above its level at the dose "
             f"in {rise}/{n} (median {fmt(median(ratio))}x) [{'ok' if crit['il6_rises'] else 'NO'}]",
             f"ICANS after the first dose: {mc['a_events']}/{n} with vs {mc['b_events']}/{n} without (discordant "
             f"{mc['a_only']} with only / {mc['b_only']} without only; exact one-sided p that tocilizumab lowers it "
             f"{mc['p_a_fewer']:.2g}) [{'ok' if crit['icans_not_prevented'] else 'NO'}]",
             f"info: all {len(a)} patients, ICANS any {icans_any['a_events']} vs {icans_any['b_events']}, "
             f">= 2 {icans_2['a_events']} vs {icans_2['b_events']}"]
    figs = {"n_patients": len(a), "n_tocilizumab": n, "fever_h": tf, "hypotension_h": th, "vasopressor_h": tp,
            "systemic_endothelial_activation": te, "il6_max": ti, "il6_rise_ratio_median": median(ratio),
            "il6_rose": rise, "icans_after_dose": mc, "icans_any_all": icans_any, "icans_ge2_all": icans_2,
            "window_h": H, "max_difference_before_dose": same, "criteria": crit}
    res = result(5, TITLE, f"over the {H:g} h after the first tocilizumab dose, paired with the same patient without "
                    "tocilizumab: fewer fever hours and fewer hypotension hours (one-sided p < 0.05 each), higher "
                    "plasma IL-6 (p < 0.05, median rise above the level at the dose > 1x); ICANS still occurs after "
                    "tocilizumab (>= 1 patient) and is not significantly lower (exact McNemar one-sided p >= 0.05)",
                 n > 0 and all(crit.values()), figs, lines,
                 "" if n and all(crit.values()) else ("no patient got tocilizumab" if not n else
                                                      "failed: " + ", ".join(k for k, v in crit.items() if not v)))
    res["_pairs"] = pairs
    return res


def run(ctx) -> dict:
    return check_tocilizumab(ctx.runs("mech_paired"))
