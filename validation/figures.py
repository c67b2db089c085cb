"""Figures of the mechanism checks: IL-7/IL-15 vs depth, CD28 vs 4-1BB, risk vs burden, tocilizumab.

Each figure is drawn from the records of the checks (their ``_course``,
``_ep`` and ``_pairs`` entries) and the paired cohort's runs, only when that
check ran; PNG files at 110 dpi in the output folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from validation import ROOT
from validation.check_il7_15 import IL7_BAND
from validation.cohort import BASE, BURDEN, DOSE, paired


def band(runs, name, grid):
    """Quartiles and median over runs of a series interpolated onto ``grid`` (days)."""
    ys = []
    for r in runs:
        t, y = r["ts"]["time"], r["ts"][name]
        ys.append(np.interp(grid, t, y, left=np.nan, right=np.nan))
    ys = np.array(ys)
    return np.nanpercentile(ys, 25, axis=0), np.nanmedian(ys, axis=0), np.nanpercentile(ys, 75, axis=0)


def make_figures(results, runs, out: Path) -> list[str]:
    """Draw the figures of the checks in ``results`` (number -> record) into ``out``; returns the file names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from analysis.risk import fit_logistic
    made = []
    r1 = results.get(1)
    if r1 and "_course" in r1:
        from abm.config import load_config
        ld = load_config(ROOT / "configs" / BASE).lymphodepletion
        fig, ax = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
        d = np.linspace(0, 0.97, 200)
        ax[0].plot(d, [ld.steady_state_ratio(x) for x in d], color="#444", label="closed form 1/(1 - f d)")
        dep = sorted((float(k), v) for k, v in r1["figures"]["depths"].items())
        ax[0].plot([k for k, _ in dep], [v for _, v in dep], "o", color="#d95f02",
                   label="simulated steady state (blood model)")
        ax[0].axhspan(*IL7_BAND, color="#1b9e77", alpha=0.15, label="docs/model.md 10.1: 2.5-3x")
        ax[0].axvline(ld.depth, color="#1b9e77", ls="--", lw=1, label=f"default depth {ld.depth:g}")
        ax[0].set_xlabel("lymphodepletion depth (fraction of lymphocytes removed)")
        ax[0].set_ylabel("IL-7/IL-15 steady state / baseline")
        ax[0].legend(fontsize=8)
        ax[0].set_title("IL-7/IL-15 vs lymphodepletion depth")
        t, y = r1["_course"]
        ax[1].plot(t, y, color="#7570b3", label="with lymphocyte recovery (typical patient)")
        ax[1].axhline(r1["figures"]["closed_form_ratio"], color="#444", ls=":", label="held depletion (closed form)")
        ax[1].axvspan(-5, -2, color="#999", alpha=0.2, label="Flu/Cy days -5..-3")
        ax[1].set_xlabel("day after infusion")
        ax[1].set_ylabel("IL-7/IL-15 / baseline")
        ax[1].legend(fontsize=8, loc="center right")
        ax[1].set_title("course at the default depth")
        fig.savefig(out / "il7_15_vs_depth.png", dpi=110)
        plt.close(fig)
        made.append("il7_15_vs_depth.png")
    a, b = paired(runs, "cd28", "41bb")
    if a:
        grid = np.linspace(-1, 28, 29 * 12 + 1)
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.3), layout="constrained")
        for ax, name, lab in zip(axes, ("plasma_il6", "plasma_ifng", "blood_cart_per_ul"),
                                 ("plasma IL-6 (pg/mL)", "plasma IFN-gamma (pg/mL)", "blood CAR-T (cells/uL)")):
            for rs, arm, col in ((a, "CD28", "#d95f02"), (b, "4-1BB", "#1b9e77")):
                q1, md, q3 = band(rs, name, grid)
                ax.plot(grid, md, color=col, label=f"{arm} median (n = {len(rs)})")
                ax.fill_between(grid, q1, q3, color=col, alpha=0.2, lw=0, label=f"{arm} IQR")
            ax.set_yscale("log")
            ax.set_xlabel("day after infusion")
            ax.set_ylabel(lab)
            ax.legend(fontsize=8)
        axes[0].set_title(f"same patients, dose {DOSE:.0e}, burden {BURDEN:.2g}")
        fig.savefig(out / "cd28_vs_41bb.png", dpi=110)
        plt.close(fig)
        made.append("cd28_vs_41bb.png")
    r3 = results.get(3)
    if r3 and "_ep" in r3:
        x, g, bins = r3["_ep"]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
        for ax, kind in zip(axes, ("crs", "icans")):
            for k, col in ((1, "#fc8d59"), (3, "#b30000")):
                ev = (g[kind] >= k).astype(float)
                ev[np.isnan(g[kind])] = np.nan
                from analysis.risk import binned_risk
                br = binned_risk(x, ev, bins)
                ax.errorbar(br["x_mid"] * (0.93 if k == 1 else 1.07), br["p"], yerr=[br["p"] - br["lo"], br["hi"] - br["p"]], fmt="o",
                            color=col, capsize=3, label=f"{'any grade' if k == 1 else 'grade >= 3'} (95 % Wilson)")
                fit = fit_logistic(x, ev)
                if fit is not None:
                    gx = np.logspace(np.log10(np.nanmin(x)), np.log10(np.nanmax(x)), 100)
                    p, lo, hi = fit.predict(gx)
                    ax.plot(gx, p, color=col, lw=1.2)
                    ax.fill_between(gx, lo, hi, color=col, alpha=0.12, lw=0)
            ax.set_xscale("log")
            ax.set_ylim(-0.05, 1.05)
            ax.set_xlabel("tumour burden (cells)")
            ax.set_ylabel(f"P({kind.upper()})")
            ax.set_title(f"{kind.upper()} risk vs burden (Firth-logistic fit, 95 % band)")
            ax.legend(fontsize=8)
        fig.savefig(out / "risk_vs_burden.png", dpi=110)
        plt.close(fig)
        made.append("risk_vs_burden.png")
    r5 = results.get(5)
    if r5 and r5.get("_pairs"):
        pairs = r5["_pairs"]
        rel = np.linspace(-1, 4, 121)
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
        for ax, name, lab, log in zip(axes, ("temperature_c", "map_mmhg", "plasma_il6"),
                                      ("temperature (C)", "MAP (mmHg)", "plasma IL-6 (pg/mL)"), (False, False, True)):
            for i, (arm, col) in enumerate((("tocilizumab", "#7570b3"), ("no tocilizumab", "#e7298a"))):
                ys = np.array([np.interp(td + rel, pr[i]["ts"]["time"], pr[i]["ts"][name], left=np.nan,
                                         right=np.nan) for *pr, td in pairs])
                ax.plot(rel, np.nanmedian(ys, 0), color=col, label=f"{arm} (n = {len(pairs)})")
                ax.fill_between(rel, np.nanpercentile(ys, 25, 0), np.nanpercentile(ys, 75, 0), color=col,
                                alpha=0.2, lw=0)
            ax.axvline(0, color="#444", ls="--", lw=1)
            if name == "temperature_c":
                ax.axhline(38, color="#999", lw=0.8)
            if name == "map_mmhg":
                ax.axhline(65, color="#999", lw=0.8)
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("days from the first tocilizumab dose")
            ax.set_ylabel(lab)
            ax.legend(fontsize=8)
        axes[0].set_title("same patients with and without tocilizumab: median, IQR")
        fig.savefig(out / "tocilizumab.png", dpi=110)
        plt.close(fig)
        made.append("tocilizumab.png")
    return made

