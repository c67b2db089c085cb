"""Figures and the Markdown summary of a calibration (from its ``calibration.nc`` dataset).

* ``figures/nroy_pairs.png``: the NROY sample, pairwise scatter below the
  diagonal and 1-D marginals on it, over the prior ranges, with the design
  points (ruled out: grey crosses; kept: black dots);
* ``figures/implausibility.png``: each design point's implausibility measure
  by wave, against the cut-off;
* ``figures/check.png`` (with a check): per target the simulated summaries at
  the NROY draws, the predictive interval and the observed value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from abm.studies.calibrate_output import CHECK_LEVELS
from abm.studies.calibrate_targets import SUMMARIES, from_scale


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _label(path: str) -> str:
    return path.replace(".", ".\n", 1)


def write_figures(ds, folder: Path) -> dict:
    """Write the figures; return ``{name: path}``."""
    plt = _plt()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    out["pairs"] = _pairs(plt, ds, folder / "nroy_pairs.png")
    out["implausibility"] = _implausibility(plt, ds, folder / "implausibility.png")
    if "check_simulated" in ds:
        out["check"] = _check(plt, ds, folder / "check.png")
    return out


def _pairs(plt, ds, path: Path) -> Path:
    from matplotlib.ticker import NullFormatter
    params = [str(p) for p in ds["parameter"].values]
    d = len(params)
    s = np.asarray(ds["samples"].values, float)
    x = np.asarray(ds["design"].values, float)
    kept = np.asarray(ds["nroy"].values, bool)
    lo, hi = np.asarray(ds["prior_low"].values, float), np.asarray(ds["prior_high"].values, float)
    log = [str(v) == "log" for v in ds["parameter_scale"].values]
    size = max(2.2, min(3.0, 12.0 / max(d, 1)))
    fig, axes = plt.subplots(d, d, figsize=(size * d + 0.5, size * d + 0.5), squeeze=False)
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                if len(s):
                    bins = (np.geomspace(lo[j], hi[j], 25) if log[j] else np.linspace(lo[j], hi[j], 25))
                    ax.hist(s[:, j], bins=bins, color="tab:blue", alpha=0.7)
                if len(x):   # the design points as a rug
                    ax.plot(x[~kept, j], np.zeros((~kept).sum()), "|", color="0.6", ms=10)
                    ax.plot(x[kept, j], np.zeros(kept.sum()), "|", color="k", ms=10)
                ax.set_yticks([])
            else:
                if len(s):
                    ax.scatter(s[:, j], s[:, i], s=3, alpha=0.3, color="tab:blue", lw=0)
                if len(x):
                    ax.scatter(x[~kept, j], x[~kept, i], s=14, marker="x", color="0.6", lw=0.8)
                    ax.scatter(x[kept, j], x[kept, i], s=12, color="k")
                ax.set_ylim(lo[i], hi[i])
                if log[i]:
                    ax.set_yscale("log")
            ax.set_xlim(lo[j], hi[j])
            if log[j]:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
            if log[i] and i != j:
                ax.yaxis.set_minor_formatter(NullFormatter())
            if i == d - 1:
                ax.set_xlabel(_label(params[j]), fontsize=8)
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(_label(params[i]), fontsize=8)
            elif j > 0 and i != j:
                ax.set_yticklabels([])
            ax.tick_params(labelsize=7)
    frac = float(ds.attrs.get("nroy_fraction_final", math.nan))
    title = f"NROY sample: {len(s)} draws" + (f", {100 * frac:.3g} % of the box" if frac == frac
                                               else "")
    fig.suptitle(title + "\ndesign points: kept (black), ruled out (grey)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _implausibility(plt, ds, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    m = np.asarray(ds["implausibility_measure"].values, float)
    w = np.asarray(ds["point_wave"].values, int)
    rng = np.random.default_rng(0)
    for k in np.unique(w):
        sel = w == k
        ax.scatter(k + rng.uniform(-0.2, 0.2, sel.sum()), m[sel], s=12, label=f"wave {k}")
    ax.axhline(float(ds.attrs["cutoff"]), color="k", ls="--", lw=1, label="cut-off")
    if np.isfinite(m).any() and np.nanmax(m) > 30:
        ax.set_yscale("log")
    ax.set_xlabel("wave")
    ax.set_ylabel(f"implausibility ({ds.attrs['measure']})")
    ax.set_xticks(np.unique(w) if len(w) else [])
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _check(plt, ds, path: Path) -> Path:
    names = [str(t) for t in ds["target"].values]
    n = len(names)
    fig, axes = plt.subplots(n, 1, figsize=(6.5, 0.62 * n + 0.9), squeeze=False)
    sim = np.asarray(ds["check_simulated"].values, float)
    z = np.asarray(ds["observed"].values, float)
    lo, hi = np.asarray(ds["check_lo"].values, float), np.asarray(ds["check_hi"].values, float)
    for j in range(n):
        ax = axes[j, 0]
        ax.plot([lo[j], hi[j]], [0, 0], color="tab:blue", lw=6, alpha=0.35,
                label="predictive 5-95 %")
        ax.scatter(sim[:, j], np.zeros(sim.shape[0]), s=14, color="tab:blue", zorder=3,
                   label="simulated at NROY draws")
        ax.scatter([z[j]], [0], marker="D", color="tab:red", s=28, zorder=4, label="observed")
        rate = str(ds["target_scale"].values[j]) == "rate"
        ax.set_yticks([0])
        ax.set_yticklabels([f"{names[j]}\n({'fraction' if rate else 'log10 ' + str(ds['target_unit'].values[j])})"],
                           fontsize=7)
        if rate:
            ax.set_xlim(-0.02, 1.02)
        ax.tick_params(axis="x", labelsize=7)
        if j == 0:
            ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, 1.9), ncol=3,
                      frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------


def _g(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}"


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _natural(summary: str, v: float) -> str:
    s = SUMMARIES[summary]
    if not math.isfinite(v):
        return "-"
    if s.kind == "rate":
        return f"{100 * v:.0f} %"
    return f"{float(from_scale(s, v)):.3g} {s.unit}"


def write_summary(ds, path: Path, figures: dict | None = None, *, folder: Path | None = None) -> Path:
    """The Markdown summary: method, waves, parameter summaries, targets, check, how to reproduce."""
    path = Path(path)
    folder = Path(folder) if folder else path.parent
    params = [str(p) for p in ds["parameter"].values]
    tnames = [str(t) for t in ds["target"].values]
    s = np.asarray(ds["samples"].values, float)
    frac = float(ds.attrs.get("nroy_fraction_final", math.nan))
    arms = json.loads(ds.attrs.get("arms", "{}"))
    lines = [f"# Calibration `{ds.attrs.get('title', '').split(':')[0].replace('abm calibrate ', '')}`",
             "",
             "History matching with Gaussian-process emulators (docs/calibration.md section 7): "
             f"a point is ruled out when its {ds.attrs['measure']} implausibility over the targets "
             f"exceeds {float(ds.attrs['cutoff']):g} under the emulators of any wave. The NROY "
             "sample (the region not ruled out) is the calibration posterior: `samples(draw, "
             "parameter)` in calibration.nc.", ""]
    for m in json.loads(ds.attrs.get("messages", "[]")):
        lines += [f"**Note:** {m}", ""]
    lines += ["## Waves", ""]
    rows = []
    wp = np.asarray(ds["wave_points"].values, int)
    nf = np.asarray(ds["nroy_fraction"].values, float)
    pw = np.asarray(ds["point_wave"].values, int)
    kept = np.asarray(ds["nroy"].values, bool)
    tr = np.asarray(ds["emulator_trained_on"].values, int)
    for i, w in enumerate(np.asarray(ds["wave"].values, int)):
        rows.append([w, wp[i], int(kept[pw == w].sum()), tr[i], f"{100 * nf[i]:.3g} %"])
    lines += [_table(["wave", "design points", "still NROY at the end", "emulators fitted on",
                      "NROY share of the box after the wave"], rows), ""]
    lines += [f"Arms: " + "; ".join(f"{k} ({v['costimulation']}, {v['patients']} patients per "
                                    f"point, {v['batch']})" for k, v in arms.items()) + ".", ""]
    lines += ["## Parameters", ""]
    rows = []
    def span(a, b):
        a, b = float(a), float(b)
        return f"{_g(a)} - {_g(b)}" if math.isfinite(a) else "-"

    for j, p in enumerate(params):
        rows.append([f"`{p}`", f"{span(ds['prior_low'][j], ds['prior_high'][j])}"
                     f" ({str(ds['parameter_scale'].values[j])})",
                     span(ds["nroy_min"][j], ds["nroy_max"][j]),
                     _g(float(ds["nroy_median"][j])),
                     span(ds["nroy_q05"][j], ds["nroy_q95"][j]),
                     _g(float(ds["best_estimate"][j]), 3) if "best_estimate" in ds else "-"])
    lines += [f"NROY sample: {len(s)} draws, {_g(100 * frac)} % of the parameter box. Best "
              "estimate: the draw the emulators find least implausible (`best_estimate`; its "
              "measure " + (_g(float(np.min(ds["sample_implausibility"].values)), 3)
                            if "sample_implausibility" in ds and ds.sizes["draw"] else "-")
              + ").", "",
              _table(["parameter", "prior range", "range kept", "median", "5-95 %",
                      "best estimate"], rows), ""]
    lines += ["## Targets", ""]
    rows = []
    sim = np.asarray(ds["simulated"].values, float)
    imp = np.asarray(ds["implausibility"].values, float)
    meas = np.asarray(ds["implausibility_measure"].values, float)
    best = int(np.nanargmin(meas)) if np.isfinite(meas).any() else None
    for j, t in enumerate(tnames):
        summ = str(ds["target_summary"].values[j])
        z = float(ds["observed"][j])
        col = sim[:, j]
        rng_txt = (f"{_natural(summ, float(np.nanmin(col)))} - {_natural(summ, float(np.nanmax(col)))}"
                   if np.isfinite(col).any() else "-")
        rows.append([t, _natural(summ, z), _g(float(ds["observed_sd"][j])),
                     _g(float(ds["discrepancy_sd"][j])), rng_txt,
                     _natural(summ, float(col[best])) if best is not None else "-",
                     _g(float(imp[best, j]), 2) if best is not None else "-",
                     str(ds["target_source"].values[j]) or "-"])
    lines += [_table(["target", "observed", "obs sd", "discrepancy sd", "simulated range (design)",
                      "least implausible point", "its I", "source"], rows), "",
              "sd columns are on the emulated scale: fractions for rates, log10 units for "
              "kinetics.", ""]
    if best is not None:
        lines += ["Least implausible design point (measure "
                  f"{_g(float(meas[best]), 3)}): " + ", ".join(
                      f"`{p}` = {_g(float(ds['design'][best, k]), 4)}" for k, p in enumerate(params))
                  + ".", ""]
    if "check_simulated" in ds:
        lines += ["## Posterior predictive check", "",
                  f"{ds.sizes['check_draw']} NROY draws re-simulated with fresh virtual patients; "
                  f"predictive {100 * CHECK_LEVELS[0]:.0f}-{100 * CHECK_LEVELS[1]:.0f} % interval "
                  "of the observation (simulated summary plus population-sampling, observation "
                  "and discrepancy noise).", ""]
        rows = []
        cov = np.asarray(ds["check_covered"].values, int)
        for j, t in enumerate(tnames):
            summ = str(ds["target_summary"].values[j])
            rows.append([t, _natural(summ, float(ds["observed"][j])),
                         f"{_natural(summ, float(ds['check_lo'][j]))} - "
                         f"{_natural(summ, float(ds['check_hi'][j]))}",
                         {1: "yes", 0: "**no**"}.get(int(cov[j]), "n/a")])
        lines += [_table(["target", "observed", "predictive interval", "covered"], rows), "",
                  f"Coverage: {int((cov == 1).sum())} of {int((cov >= 0).sum())} targets.", ""]
    if figures:
        lines += ["## Figures", ""]
        for name, p in figures.items():
            rel = Path(p).relative_to(path.parent) if Path(p).is_relative_to(path.parent) else p
            lines += [f"![{name}]({rel})", ""]
    lines += ["## Provenance", "",
              f"abm {ds.attrs.get('software_version', '')}, git {ds.attrs.get('git_commit') or '-'}, "
              f"created {ds.attrs.get('created', '')}; config {ds.attrs.get('config_file', '')} "
              f"(copied to {folder.name}/calibration.toml); seeds {ds.attrs.get('seeds', '')}.", "",
              "Reproduce / continue: `abm calibrate "
              f"{ds.attrs.get('config_file', 'CONFIG')} --out {folder.parent} --resume`.", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


__all__ = ["write_figures", "write_summary"]
