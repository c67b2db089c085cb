"""Check 2 (docs/model.md 10.2): CD28 vs 4-1BB at equal dose and burden.

The same virtual patients (cohort ``mech_paired``) with either product: CD28
gives earlier and higher cytokine peaks and an earlier CRS onset, 4-1BB
persists longer in blood.
"""

from __future__ import annotations

import math

import numpy as np

from validation.cohort import BURDEN, DOSE, paired, peak_day, value_at
from validation.report import result
from validation.stats import ALPHA, fmt, fmt_p, median, sign_test, wilcoxon

NUMBER = 2
TITLE = "CD28 vs 4-1BB at equal dose and burden"
COHORTS = ("mech_paired",)


def check_products(runs) -> dict:
    a, b = paired(runs, "cd28", "41bb")
    n = len(a)
    ep = lambda rs, k: np.array([r["ep"].get(k, math.nan) for r in rs])   # noqa: E731
    ifng = wilcoxon(ep(a, "plasma_ifng_peak_pg_ml"), ep(b, "plasma_ifng_peak_pg_ml"), "greater")
    il6 = wilcoxon(ep(a, "plasma_il6_peak_pg_ml"), ep(b, "plasma_il6_peak_pg_ml"), "greater")
    ifng_day_a = np.array([peak_day(r, "plasma_ifng") for r in a])
    ifng_day_b = np.array([peak_day(r, "plasma_ifng") for r in b])
    il6_day_a = np.array([peak_day(r, "plasma_il6") for r in a])
    il6_day_b = np.array([peak_day(r, "plasma_il6") for r in b])
    ifng_day = {**sign_test(ifng_day_a, ifng_day_b, "less"), "median_a": median(ifng_day_a),
                "median_b": median(ifng_day_b)}
    il6_day = {**sign_test(il6_day_a, il6_day_b, "less"), "median_a": median(il6_day_a),
               "median_b": median(il6_day_b)}
    on_a, on_b = ep(a, "crs_onset_day"), ep(b, "crs_onset_day")
    onset = {**sign_test(on_a, on_b, "less"), "median_a": median(on_a), "median_b": median(on_b),
             "crs_a": int(np.sum(~np.isnan(on_a))), "crs_b": int(np.sum(~np.isnan(on_b)))}
    both = ~np.isnan(on_a) & ~np.isnan(on_b)
    onset["wilcoxon_both_p"] = wilcoxon(on_b[both], on_a[both], "greater")["p"] if both.sum() else math.nan
    d28_a = np.array([value_at(r, "blood_cart_per_ul", 28.0) for r in a])
    d28_b = np.array([value_at(r, "blood_cart_per_ul", 28.0) for r in b])
    d28 = wilcoxon(d28_b, d28_a, "greater")
    peak = wilcoxon(ep(a, "blood_cart_peak_per_ul"), ep(b, "blood_cart_peak_per_ul"), "greater")
    kept = wilcoxon(d28_b / ep(b, "blood_cart_peak_per_ul"), d28_a / ep(a, "blood_cart_peak_per_ul"), "greater")
    cart_peak_day = {"median_a": median(ep(a, "blood_cart_peak_day")), "median_b": median(ep(b, "blood_cart_peak_day"))}
    crit = {"ifng_higher": ifng["p"] < ALPHA, "il6_higher": il6["p"] < ALPHA,
            "ifng_earlier": ifng_day["p"] < ALPHA, "il6_earlier": il6_day["p"] < ALPHA,
            "crs_earlier": onset["p"] < ALPHA and onset["median_a"] < onset["median_b"],
            "41bb_persists": d28["p"] < ALPHA}
    lines = [f"{n} paired patients (same seeds and covariates), dose {DOSE:.0e}, burden {BURDEN:.2g}; "
             "CD28 vs 4-1BB, medians; one-sided paired tests",
             f"plasma IFN-g peak {fmt(ifng['median_a'])} vs {fmt(ifng['median_b'])} pg/mL (CD28 higher in "
             f"{ifng['a_gt_b']}/{ifng['n_pairs']}, Wilcoxon {fmt_p(ifng['p'])}) [{'ok' if crit['ifng_higher'] else 'NO'}]",
             f"plasma IL-6 peak {fmt(il6['median_a'])} vs {fmt(il6['median_b'])} pg/mL (CD28 higher in "
             f"{il6['a_gt_b']}/{il6['n_pairs']}, Wilcoxon {fmt_p(il6['p'])}) [{'ok' if crit['il6_higher'] else 'NO'}]",
             f"IFN-g peak day {fmt(ifng_day['median_a'])} vs {fmt(ifng_day['median_b'])} (CD28 earlier in "
             f"{ifng_day['a_lt_b']}, later in {ifng_day['a_gt_b']}, sign test {fmt_p(ifng_day['p'])}) "
             f"[{'ok' if crit['ifng_earlier'] else 'NO'}]",
             f"IL-6 peak day {fmt(il6_day['median_a'])} vs {fmt(il6_day['median_b'])} (CD28 earlier in "
             f"{il6_day['a_lt_b']}, later in {il6_day['a_gt_b']}, sign test {fmt_p(il6_day['p'])}) "
             f"[{'ok' if crit['il6_earlier'] else 'NO'}]",
             f"CRS onset day {fmt(onset['median_a'])} vs {fmt(onset['median_b'])} (CRS in {onset['crs_a']} vs "
             f"{onset['crs_b']}; CD28 earlier in {onset['a_lt_b']}, later in {onset['a_gt_b']}, no CRS = later; "
             f"sign test {fmt_p(onset['p'])}; Wilcoxon over {int(both.sum())} with both {fmt_p(onset['wilcoxon_both_p'])}) "
             f"[{'ok' if crit['crs_earlier'] else 'NO'}]",
             f"blood CAR-T day 28 {fmt(d28['median_a'])} (4-1BB) vs {fmt(d28['median_b'])} (CD28) cells/uL (4-1BB higher "
             f"in {d28['a_gt_b']}/{d28['n_pairs']}, Wilcoxon {fmt_p(d28['p'])}) [{'ok' if crit['41bb_persists'] else 'NO'}]",
             f"info: blood CAR-T peak {fmt(peak['median_a'])} vs {fmt(peak['median_b'])} /uL on day "
             f"{fmt(cart_peak_day['median_a'])} vs {fmt(cart_peak_day['median_b'])}; day-28 level / peak {fmt(kept['median_b'])} "
             f"(CD28) vs {fmt(kept['median_a'])} (4-1BB), Wilcoxon for 4-1BB higher {fmt_p(kept['p'])}"]
    figs = {"n_pairs": n, "ifng_peak": ifng, "il6_peak": il6, "ifng_peak_day": ifng_day, "il6_peak_day": il6_day,
            "crs_onset": onset, "blood_cart_d28": d28, "blood_cart_d28_over_peak": kept, "blood_cart_peak": peak,
            "blood_cart_peak_day": cart_peak_day, "criteria": crit}
    diag = ""
    if not all(crit.values()):
        diag = "failed: " + ", ".join(k for k, v in crit.items() if not v)
    return result(2, TITLE, "CD28 vs 4-1BB, paired, one-sided p < 0.05 each: higher IFN-g and IL-6 peaks, earlier IFN-g and "
                     "IL-6 peaks, earlier CRS onset (sign test, no CRS counted as later, and a lower median); "
                     "higher blood CAR-T at day 28 with 4-1BB", all(crit.values()), figs, lines, diag)


def run(ctx) -> dict:
    return check_products(ctx.runs("mech_paired"))
