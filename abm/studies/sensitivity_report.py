"""Figures and the Markdown summary of a sensitivity study (from its ``sensitivity.nc``).

* Morris: one ``morris_<output>.png`` per output, mu* against sigma with the
  bootstrap interval of mu* as a horizontal bar and the parameters labelled
  (near the diagonal sigma = mu*: non-linear or interacting; at the origin:
  inert).
* Sobol: one ``sobol_<output>.png`` per output, first-order (S1) and total
  (ST) indices per parameter with their bootstrap intervals.
* ``summary.md``: what was run, the notes (failed runs, points lacking runs,
  trajectories left out), and per output a ranking table.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "output"


def _short(path: str) -> str:
    """``section.key`` stays; deeper paths keep their last two parts."""
    parts = str(path).split(".")
    return ".".join(parts[-2:])


def write_figures(ds, folder) -> list[Path]:
    """One figure per output (Morris or Sobol); returns their paths."""
    from analysis.plots import plt, save
    folder = Path(folder)
    out = []
    method = ds.attrs.get("method")
    for o, name in enumerate(ds["output"].values):
        expr = str(ds["expression"].values[o]) if "expression" in ds.coords else str(name)
        if method == "morris":
            fig = _morris_figure(ds.isel(output=o), plt, f"{name}: {expr}")
            path = folder / f"morris_{_slug(name)}.png"
        else:
            fig = _sobol_figure(ds.isel(output=o), plt, f"{name}: {expr}")
            path = folder / f"sobol_{_slug(name)}.png"
        save(fig, path)
        out.append(path)
    return out


def _morris_figure(d, plt, title):
    names = [_short(p) for p in d["parameter"].values]
    mu_star = np.asarray(d["mu_star"].values, float)
    sigma = np.asarray(d["sigma"].values, float)
    conf = np.asarray(d["mu_star_conf"].values, float)
    fig, ax = plt.subplots(figsize=(6.4, 5.0), layout="constrained")
    ok = np.isfinite(mu_star)
    ax.errorbar(mu_star[ok], np.nan_to_num(sigma[ok]), xerr=np.nan_to_num(conf[ok]), fmt="o",
                ms=5, capsize=3, color="C0", ecolor="0.6")
    top = max([1e-12] + [float(v) for v in np.concatenate([mu_star[ok] + conf[ok],
                                                           np.nan_to_num(sigma[ok])])
                         if math.isfinite(v)])
    # points that (nearly) coincide share one label, so the names stay readable
    groups: list[list] = []
    for x, y, label in zip(mu_star[ok], np.nan_to_num(sigma[ok]), np.array(names)[ok]):
        for g in groups:
            if abs(g[0] - x) < 0.02 * top and abs(g[1] - y) < 0.02 * top:
                g[2].append(label)
                break
        else:
            groups.append([x, y, [label]])
    for x, y, labels in groups:
        ax.annotate(",\n".join(labels), (x, y), xytext=(4, 3), textcoords="offset points",
                    fontsize=7, va="bottom")
    ax.plot([0, top], [0, top], ls=":", color="0.5", lw=1, label="sigma = mu*")
    ax.set_xlim(0, top * 1.15)
    ax.set_ylim(0, top * 1.15)
    ax.set_xlabel("mu* (mean |elementary effect|, per whole range)")
    ax.set_ylabel("sigma (SD of the elementary effects)")
    used = int(d["trajectories_used"].values) if "trajectories_used" in d else None
    sub = f" ({used} trajectories)" if used is not None else ""
    ax.set_title(f"Morris screening{sub}\n{title}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    if not ok.any():
        ax.text(0.5, 0.5, "no indices (no complete trajectory)", ha="center",
                transform=ax.transAxes)
    return fig


def _sobol_figure(d, plt, title):
    names = [_short(p) for p in d["parameter"].values]
    k = len(names)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * k + 2), 4.2), layout="constrained")
    w = 0.38
    for off, n, label, col in ((-w / 2, "S1", "first order S1", "C0"),
                               (w / 2, "ST", "total ST", "C1")):
        v = np.asarray(d[n].values, float)
        c = np.asarray(d[f"{n}_conf"].values, float)
        ax.bar(x + off, np.nan_to_num(v), w, yerr=np.nan_to_num(c), capsize=3, label=label,
               color=col, ecolor="0.3")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("Sobol index")
    ax.set_title(f"Sobol indices ({int(d.attrs.get('samples', 0))} base samples)\n{title}",
                 fontsize=9)
    ax.legend(fontsize=8)
    return fig


def _fmt(v, digits: int = 3) -> str:
    v = float(v)
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}g}"


def summary_text(ds, figures=()) -> str:
    """The Markdown summary of an analysis dataset."""
    a = ds.attrs
    method = a.get("method", "?")
    lines = [f"# Sensitivity study `{a.get('study', '')}`", ""]
    if a.get("config_file"):
        lines.append(f"Config `{a['config_file']}`, base `{a.get('base_file', '')}`; "
                     f"written by abm {a.get('software_version', '?')}"
                     + (f" (git {str(a['git_commit'])[:10]}"
                        + (", modified" if int(a.get('git_dirty', 0)) else "") + ")"
                        if a.get("git_commit") else "")
                     + f" on {a.get('created', '?')}.")
        lines.append("")
    if method == "morris":
        sizes = f"{a.get('trajectories')} trajectories on a {a.get('levels')}-level grid"
    else:
        sizes = (f"{a.get('samples')} base samples"
                 + (", second order" if int(a.get("second_order", 0)) else ""))
    pop = int(a.get("population_size", 0) or 0)
    who = (f"each point runs a virtual population of {pop} patients"
           if a.get("mode") == "population" else "each point runs the base patient")
    reps = int(a.get("replicates", 1) or 1)
    lines += [f"- method: **{method}**, {sizes}; {int(a.get('n_points', 0))} design points, "
              f"{ds.sizes['parameter']} parameters, seed {a.get('seed')}",
              f"- {who}" + (f", {reps} replicates" if reps > 1 else "")
              + ("; common seeds across points (paired design)"
                 if int(a.get("common_seeds", 0)) else ""),
              f"- runs: {a.get('n_runs_done', '?')} done of {a.get('n_runs', '?')}",
              f"- intervals: {float(a.get('confidence', 0.95)):.0%} bootstrap, "
              f"{a.get('bootstrap')} resamples", ""]
    notes = [n for n in str(a.get("notes", "")).splitlines() if n.strip()]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Parameters", "", "| parameter | range | scale |", "|---|---|---|"]
    for p, lo, hi, sc in zip(ds["parameter"].values, ds["low"].values, ds["high"].values,
                             ds["scale"].values):
        lines.append(f"| `{p}` | {lo:g} .. {hi:g} | {sc} |")
    lines.append("")
    figs = {Path(f).name for f in figures}
    for o, name in enumerate(ds["output"].values):
        d = ds.isel(output=o)
        expr = str(d["expression"].values) if "expression" in d.coords else str(name)
        lines += [f"## Output `{name}` = `{expr}`", ""]
        vals = np.asarray(d["value"].values, float)
        fin = vals[np.isfinite(vals)]
        if fin.size:
            lines += [f"Over the design points: min {_fmt(fin.min())}, median "
                      f"{_fmt(np.median(fin))}, max {_fmt(fin.max())}.", ""]
        order = np.argsort(np.asarray(d["rank"].values))
        if method == "morris":
            lines += ["| rank | parameter | mu* | interval | mu | sigma |",
                      "|---|---|---|---|---|---|"]
            for i in order:
                lines.append(f"| {int(d['rank'].values[i])} | `{d['parameter'].values[i]}` | "
                             f"{_fmt(d['mu_star'].values[i])} | "
                             f"{_fmt(d['mu_star_low'].values[i])} .. "
                             f"{_fmt(d['mu_star_high'].values[i])} | "
                             f"{_fmt(d['mu'].values[i])} | {_fmt(d['sigma'].values[i])} |")
            fig = f"morris_{_slug(name)}.png"
        else:
            lines += ["| rank | parameter | ST | interval | S1 | interval |",
                      "|---|---|---|---|---|---|"]
            for i in order:
                lines.append(f"| {int(d['rank'].values[i])} | `{d['parameter'].values[i]}` | "
                             f"{_fmt(d['ST'].values[i])} | {_fmt(d['ST_low'].values[i])} .. "
                             f"{_fmt(d['ST_high'].values[i])} | {_fmt(d['S1'].values[i])} | "
                             f"{_fmt(d['S1_low'].values[i])} .. {_fmt(d['S1_high'].values[i])} |")
            fig = f"sobol_{_slug(name)}.png"
        lines.append("")
        if fig in figs:
            lines += [f"![{name}]({fig})", ""]
    if a.get("runs_missing"):
        lines += ["## Runs missing", ""]
        lines += [f"- {r.strip()}" for r in str(a["runs_missing"]).split(";") if r.strip()][:50]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_summary(ds, path, figures=()) -> Path:
    path = Path(path)
    path.write_text(summary_text(ds, figures), encoding="utf-8")
    return path


__all__ = ["write_figures", "write_summary", "summary_text"]
