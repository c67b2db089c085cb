"""Figures (matplotlib, Agg backend): patient course, field snapshot, population risk.

Every function returns a :class:`matplotlib.figure.Figure` (``save(fig, path)``
writes a PNG and closes it). Axes carry units; grades use one colour scale
throughout (grade 0 grey to grade 4 dark red); groups keep one colour each
across figures.

* :func:`plot_patient`: one run: blood CAR-T, plasma cytokines (log),
  temperature, MAP and SpO2, organ support, CRS / ICANS grade, the ICE score
  on its own 0-10 panel when recorded, drug doses.
* :func:`plot_field_snapshot`: a cytokine field with the cells on top.
* :func:`plot_risk_vs_covariate`: risk versus a covariate (tumour burden by
  default): binned risk with Wilson intervals, fitted logistic curve with its
  95 % band, and each run as a tick.
* :func:`plot_grade_distribution`: max-grade distribution by group.
* :func:`plot_onset`: cumulative incidence of onset by group (Kaplan-Meier),
  with the numbers at risk per group under each panel.
* :func:`plot_cart_course`: blood CAR-T over time by group (median, IQR band)
  with reference points.
* :func:`plot_posterior_risk`: risk over posterior draws: each draw's rate,
  the pooled rate with its Wilson interval, the per-draw range and the total
  interval.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed (before pyplot is imported)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from analysis import endpoints as E  # noqa: E402
from analysis.risk import (group_order, binned_risk, cumulative_incidence,  # noqa: E402
                           fit_logistic, numbers_at_risk)

#: Grade colours, 0..4.
GRADE_COLOURS = ("#d9d9d9", "#fdd49e", "#fc8d59", "#d7301f", "#7f0000")
CYTOKINE_LABELS = {"il6": "IL-6", "ifng": "IFN-γ", "il1": "IL-1", "gmcsf": "GM-CSF",
                   "il7_15": "IL-7/IL-15", "ang2": "ANG-2", "damage": "damage signal",
                   "il10": "IL-10", "tnf": "TNF"}
KIND_STYLE = {  # cell kind name -> scatter style
    "tumour": dict(marker="o", s=9, c="#f0f0f0", edgecolors="#404040", linewidths=0.4,
                   label="tumour"),
    "cart": dict(marker="^", s=16, c="#e41a1c", edgecolors="black", linewidths=0.4,
                 label="CAR-T"),
    "myeloid": dict(marker="D", s=12, c="#ff7f00", edgecolors="black", linewidths=0.4,
                    label="monocyte / macrophage"),
    "endothelial": dict(marker="s", s=12, c="#377eb8", edgecolors="white", linewidths=0.4,
                        label="endothelial (vessel)"),
}
DEFAULT_KINDS = {0: "tumour", 1: "cart", 2: "myeloid", 3: "endothelial"}
PALETTE = plt.get_cmap("tab10").colors

plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
                     "axes.spines.top": False, "axes.spines.right": False,
                     "font.size": 9.5, "axes.titlesize": 10.5, "legend.fontsize": 8.5,
                     "legend.framealpha": 0.85})


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def save(fig, path, dpi: int = 120):
    """Write ``fig`` as PNG to ``path`` and close it; returns the path."""
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def group_colours(groups) -> dict:
    """One colour per group label (sorted order), stable across figures."""
    labels = sorted({str(g) for g in groups})
    return {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(labels)}


def _values(ds, name):
    return np.asarray(ds[name].values, float) if name in ds else None


def _label(ds, name, fallback):
    if name in ds and ds[name].attrs.get("units") not in (None, "", "unknown", "1"):
        return f"{fallback} ({ds[name].attrs['units']})"
    return fallback


def _run_title(ds) -> str:
    a = ds.attrs
    cov = a.get("covariates")
    parts = [str(a.get("run_name", ds["run"].item() if "run" in ds.coords else ""))]
    try:
        import json
        c = json.loads(cov) if isinstance(cov, str) else (cov or {})
    except ValueError:
        c = {}
    for k in ("product_preset", "burden_cells", "dose_cells"):
        if k not in c and k in ds.coords and ds[k].ndim == 0:
            c[k] = ds[k].item()
    if c.get("product_preset"):
        parts.append(f"product {c['product_preset']}")
    if c.get("burden_cells"):
        parts.append(f"burden {c['burden_cells']:.2g} cells")
    if c.get("dose_cells"):
        parts.append(f"dose {c['dose_cells']:.2g} cells")
    if "seed" in a:
        parts.append(f"seed {a['seed']}")
    return ", ".join(p for p in parts if p)


# -- one patient -------------------------------------------------------------------

def plot_patient(ds: xr.Dataset, *, title: str | None = None):
    """Time-course panel of one run (a Dataset from ``open_run`` or ``ds.abm.patient``)."""
    t = np.asarray(ds["time"].values, float)
    series = [k for k, v in ds.data_vars.items() if "time" in v.dims]
    drugs = E.drug_names(series)
    ice = _values(ds, "ice_score")
    # the ICE score (0-10, 10 = normal) gets its own panel: on the grade axis (0-4) a
    # second scale would read as a grade
    heights = [1.3, 1.3, 0.8, 1.0, 0.8, 0.9] + ([0.7] if ice is not None else []) \
        + [0.25 + 0.18 * max(len(drugs), 1)]
    fig, axes = plt.subplots(len(heights), 1, sharex=True,
                             figsize=(10, 15.5 + (1.4 if ice is not None else 0.0)),
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    ax_cart, ax_cyt, ax_temp, ax_hd, ax_sup, ax_grade = axes[:6]
    ax_ice = axes[6] if ice is not None else None
    ax_drug = axes[-1]
    fig.suptitle(title or _run_title(ds), fontsize=11.5)

    # CAR-T in blood (log) and the whole tumour
    cart = _values(ds, E.CART_VAR)
    if cart is not None:
        ax_cart.semilogy(t, np.where(cart > 0, cart, np.nan), color="#e41a1c", lw=1.6,
                         label="CAR-T in blood")
    ax_cart.set_ylabel("CAR-T in blood\n(cells/µL, log)")
    tum = _values(ds, E.TUMOUR_VAR)
    handles = ax_cart.get_legend_handles_labels()[0]
    if tum is not None:
        ax_t = ax_cart.twinx()
        ax_t.spines["right"].set_visible(True)
        ax_t.plot(t, tum, color="#525252", lw=1.2, ls="--", label="tumour cells (whole tumour)")
        ax_t.set_ylabel("tumour cells (whole tumour)")
        ax_t.set_ylim(bottom=0)
        ax_t.grid(False)
        handles += ax_t.get_legend_handles_labels()[0]
    if handles:
        ax_cart.legend(handles=handles, loc="upper right")

    # plasma cytokines (log)
    for i, c in enumerate(E.cytokine_names(series)):
        y = _values(ds, f"plasma_{c}")
        ax_cyt.semilogy(t, np.where(y > 0, y, np.nan), lw=1.3, color=PALETTE[i % 10],
                        label=CYTOKINE_LABELS.get(c, c))
    ax_cyt.set_ylabel("plasma\n(pg/mL, log)")
    if ax_cyt.lines:
        lo, hi = ax_cyt.get_ylim()
        ax_cyt.set_ylim(lo, hi * 30)   # room for the legend above the curves
        ax_cyt.legend(ncol=6, loc="upper left", fontsize=8)

    # temperature
    temp = _values(ds, "temperature_c")
    if temp is not None:
        ax_temp.plot(t, temp, color="#d95f02", lw=1.4)
        ax_temp.axhline(38.0, color="#d95f02", ls=":", lw=1)
        ax_temp.text(t[0], 38.0, " fever 38 °C", va="bottom", fontsize=8, color="#d95f02")
    ax_temp.set_ylabel("temperature\n(°C)")

    # MAP and SpO2
    mp = _values(ds, "map_mmhg")
    if mp is not None:
        ax_hd.plot(t, mp, color="#1b9e77", lw=1.4, label="MAP (mmHg)")
        ax_hd.axhline(65, color="#1b9e77", ls=":", lw=1)
    ax_hd.set_ylabel("MAP\n(mmHg)", color="#1b9e77")
    sp = _values(ds, "spo2_pct")
    if sp is not None:
        ax_s = ax_hd.twinx()
        ax_s.spines["right"].set_visible(True)
        ax_s.plot(t, sp, color="#7570b3", lw=1.4, label="SpO2 (%)")
        ax_s.set_ylabel("SpO2 (%)", color="#7570b3")
        ax_s.set_ylim(min(85.0, np.nanmin(sp) - 1), 100.5)
        ax_s.grid(False)
        h = ax_hd.get_legend_handles_labels()[0] + ax_s.get_legend_handles_labels()[0]
        ax_hd.legend(handles=h, loc="lower right")

    # organ support
    sup = [("hypotension_support", "hypotension support (0 none, 1 fluids, 2 one, 3 several pressors)",
            "#1b9e77"),
           ("oxygen_support", "oxygen support (0 none, 1 low-flow, 2 high-flow, 3 positive pressure)",
            "#7570b3"),
           ("vasopressors", "vasopressors running", "#e7298a")]
    styles = (dict(lw=3.0, alpha=0.6), dict(lw=1.6, ls="--"), dict(lw=1.3, ls=":"))
    for (name, lab, col), st in zip(sup, styles):
        y = _values(ds, name)
        if y is not None:
            ax_sup.step(t, y, where="post", color=col, label=lab, **st)
    ax_sup.set_ylabel("support\nlevel")
    ax_sup.set_yticks([0, 1, 2, 3])
    ax_sup.set_ylim(-0.3, 3.4)
    if ax_sup.lines:
        ax_sup.legend(loc="upper right", fontsize=7.5)

    # grades
    any_grade = False
    for kind, col in (("crs", "#d7301f"), ("icans", "#2166ac")):
        g = _values(ds, f"{kind}_grade")
        if g is not None:
            ax_grade.step(t, g + (0.05 if kind == "icans" else 0), where="post", color=col,
                          lw=1.8, label=f"{kind.upper()} grade (ASTCT)")
            any_grade = True
        else:
            ax_grade.plot([], [], color=col, lw=1.8, ls=":",
                          label=f"{kind.upper()} grade: not recorded")
    ax_grade.set_ylabel("grade")
    ax_grade.set_yticks(range(5))
    ax_grade.set_ylim(-0.3, 5.7)        # the top strip holds the legend
    ax_grade.legend(loc="upper left", ncol=3, fontsize=8)
    if ax_ice is not None:
        ax_ice.plot(t, ice, color="#2166ac", lw=1.4, label="ICE score (10 = normal)")
        ax_ice.set_ylim(-0.5, 10.5)
        ax_ice.set_yticks([0, 2, 4, 6, 8, 10])
        ax_ice.set_ylabel("ICE score")
        ax_ice.legend(loc="lower left", fontsize=8)
    if not any_grade:
        ax_grade.text(0.5, 0.5, "no grade recorded", transform=ax_grade.transAxes, ha="center")

    # drugs as markers, one row each
    markers = "v^sDoP*X"
    n_doses: list[int] = []
    for i, d in enumerate(drugs):
        times = E.dose_times(t, _values(ds, f"{d}_doses"))
        y = np.full(times.size, len(drugs) - 1 - i)
        ax_drug.plot(times, y, ls="none", marker=markers[i % len(markers)], ms=8,
                     color=PALETTE[(i + 3) % 10])
        n_doses.append(times.size)
    ax_drug.set_yticks(range(len(drugs)))
    ax_drug.set_yticklabels([f"{d} ({n} dose{'s' if n != 1 else ''})"
                             for d, n in zip(reversed(drugs), reversed(n_doses))])
    ax_drug.set_ylim(-0.6, max(len(drugs), 1) - 0.4)
    if not drugs:
        ax_drug.text(0.5, 0.5, "no drug doses recorded", transform=ax_drug.transAxes,
                     ha="center", va="center")
    ax_drug.set_xlabel("day after CAR-T infusion (day 0)")
    for ax in axes:
        if t.size and t[0] < 0 < t[-1]:
            ax.axvline(0.0, color="black", lw=0.8, ls="--", alpha=0.6)
    ax_cart.text(0.0, 1.01, "infusion", transform=ax_cart.get_xaxis_transform(),
                 ha="center", va="bottom", fontsize=8)
    if t.size:
        ax_drug.set_xlim(t[0], t[-1])
    return fig


# -- field snapshot ----------------------------------------------------------------

def _kind_names(cells) -> dict:
    """Cell kind codes from the file's ``kind`` long_name ("0 tumour, 1 CAR-T, ...")."""
    text = str(cells["kind"].attrs.get("long_name", "")) if "kind" in cells else ""
    found = {int(n): w.lower().replace("-", "") for n, w in re.findall(r"(-?\d+)\s+([A-Za-z-]+)",
                                                                       text)}
    found = {k: v for k, v in found.items() if k >= 0}
    return found or dict(DEFAULT_KINDS)


def plot_field_snapshot(path, *, species: str = "il6", time: float | None = None,
                        z: int | None = None, title: str | None = None):
    """A cytokine field at one snapshot with the cells of that snapshot overlaid.

    Args:
        path: run file.
        species: field variable (``il6``, ``ifng``, ...).
        time: snapshot day (nearest); default: the snapshot where the field's
            patch maximum is highest.
        z: slice of a 3-D lattice, or patch of a layered one (default: the middle).
    """
    from analysis.io import cell_snapshot, open_group
    fields = open_group(path, "fields")
    if species not in fields:
        raise KeyError(f"{path}: no field {species!r} (have {', '.join(fields.data_vars)})")
    f = fields[species]
    times = np.asarray(fields["snapshot_time"].values, float)
    if times.size == 0:
        raise ValueError(f"{path}: no field snapshots")
    if time is None:
        peaks = [float(f.isel(snapshot=i).max()) for i in range(times.size)]
        i = int(np.argmax(peaks))
    else:
        i = int(np.argmin(np.abs(times - time)))
    img = np.asarray(f.isel(snapshot=i).values, float)
    zsel = None
    if img.ndim == 3:
        zsel = img.shape[0] // 2 if z is None else int(z)
        img = img[zsel]
    x = np.asarray(fields["x"].values, float)
    y = np.asarray(fields["y"].values, float)
    hx = (x[1] - x[0]) if x.size > 1 else 1.0
    hy = (y[1] - y[0]) if y.size > 1 else 1.0
    extent = (x[0] - hx / 2, x[-1] + hx / 2, y[0] - hy / 2, y[-1] + hy / 2)
    fig, ax = plt.subplots(figsize=(7.6, 7.8), layout="constrained")
    pos = img[img > 0]
    norm = None
    if pos.size and pos.max() / max(pos.min(), 1e-30) > 100:
        norm = LogNorm(vmin=max(pos.min(), pos.max() * 1e-4), vmax=pos.max())
    im = ax.imshow(np.where(img > 0, img, np.nan) if norm else img, origin="lower",
                   extent=extent, cmap="viridis", norm=norm, interpolation="nearest")
    units = f.attrs.get("units", "")
    name = CYTOKINE_LABELS.get(species, species)
    cb = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
    cb.set_label(f"tissue {name} ({units}{', log scale' if norm else ''})")
    cells = open_group(path, "cells")
    counts = {}
    if "count" in cells and cells.sizes.get("snapshot", 0) > i:
        snap = cell_snapshot(cells, i).load()
        kinds = _kind_names(cells)
        k = np.asarray(snap["kind"].values)
        cx = np.asarray(snap["x"].values, float)
        cy = np.asarray(snap["y"].values, float)
        keep = np.ones(k.size, bool)
        if zsel is not None and "z" in snap:
            zc = np.asarray(fields["z"].values, float)[zsel]
            keep = np.isclose(np.asarray(snap["z"].values, float), zc)
        elif zsel is not None and "patch" in snap:
            keep = np.asarray(snap["patch"].values) == np.asarray(fields["patch"].values)[zsel]
        for code in sorted(kinds, key=lambda c: ["endothelial", "tumour", "myeloid",
                                                 "cart"].index(kinds[c])
                           if kinds[c] in ("endothelial", "tumour", "myeloid", "cart") else 9):
            sel = keep & (k == code)
            style = dict(KIND_STYLE.get(kinds[code], dict(marker=".", s=8, c="white",
                                                          label=kinds[code])))
            counts[style["label"]] = int(sel.sum())
            style["label"] = f"{style['label']} ({int(sel.sum())})"
            ax.scatter(cx[sel], cy[sel], **style)
        fig.legend(loc="outside lower center", ncol=2, fontsize=8.5, frameon=False,
                   markerscale=1.5, title="cells in the snapshot (count)")
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    ax.set_aspect("equal")
    ax.grid(False)
    zt = f", z slice {zsel}" if zsel is not None else ""
    run = Path(str(path)).stem
    ax.set_title(title or f"{run}: tissue {name} and cells at day {times[i]:g}{zt}")
    return fig


# -- population --------------------------------------------------------------------

def _kind_available(ep, kind) -> bool:
    v = ep.get(f"{kind}_max_grade")
    return v is not None and bool(np.isfinite(np.asarray(v.values, float)).any())


def _not_available(ax, kind):
    ax.text(0.5, 0.5, f"{kind.upper()} not available\n({kind}_grade not recorded in these runs)",
            transform=ax.transAxes, ha="center", va="center", fontsize=10, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def plot_risk_vs_covariate(ep: xr.Dataset, covariate: str = "burden_cells", *,
                           kinds=("crs", "icans"), thresholds=(1, 3), label: str | None = None,
                           log: bool = True):
    """Risk versus a covariate: binned (Wilson), logistic fit with 95 % band, runs as ticks.

    One panel per kind; curves for each threshold (any grade, grade >= 3).
    """
    if covariate not in ep.coords and covariate not in ep:
        raise KeyError(f"no covariate {covariate!r} (have {', '.join(ep.coords)})")
    x = np.asarray(ep[covariate].values, float)
    label = label or ("tumour burden (cells)" if covariate == "burden_cells" else covariate)
    missing = [k for k in kinds if not _kind_available(ep, k)]
    kinds = [k for k in kinds if k not in missing] or list(kinds[:1])
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.4 * len(kinds), 5.9), squeeze=False,
                             layout="constrained")
    if missing:
        fig.suptitle("not available (no grade recorded): "
                     + ", ".join(k.upper() for k in missing), fontsize=8.5, color="#555555",
                     x=0.99, ha="right")
    colours = {1: "#fc8d59", 2: "#ef6548", 3: "#b30000", 4: "#7f0000"}
    notes = []
    for ax, kind in zip(axes[0], kinds):
        if not _kind_available(ep, kind):
            _not_available(ax, kind)
            ax.set_title(f"{kind.upper()} risk vs {label}")
            continue
        g = np.asarray(ep[f"{kind}_max_grade"].values, float)
        ok = np.isfinite(x) & np.isfinite(g) & ((x > 0) if log else True)
        grid = (np.logspace(np.log10(x[ok].min()), np.log10(x[ok].max()), 200) if log
                else np.linspace(x[ok].min(), x[ok].max(), 200)) if ok.any() else np.array([])
        for j, k in enumerate(thresholds):
            col = colours.get(k, PALETTE[j])
            name = "any grade" if k == 1 else f"grade ≥ {k}"
            ev = np.where(ok, (g >= k).astype(float), np.nan)
            b = binned_risk(x, ev, log=log)
            dx = 1.0 + 0.04 * (j - (len(thresholds) - 1) / 2)
            if len(b):
                xm = b["x_mid"].to_numpy() * (dx if log else 1)
                ax.errorbar(xm, b["p"], yerr=[b["p"] - b["lo"], b["hi"] - b["p"]],
                            xerr=[np.maximum(xm - b["x_min"], 0), np.maximum(b["x_max"] - xm, 0)],
                            fmt="o", color=col,
                            capsize=3, ms=5, elinewidth=1.2,
                            label=f"{name}: share per bin, 95 % Wilson")
                for xi, r in zip(xm, b.itertuples()):
                    ax.annotate(f"{int(r.k)}/{int(r.n)}", (xi, r.p), textcoords="offset points",
                                xytext=(6, 4), ha="left", fontsize=7.5, color=col)
            fit = fit_logistic(x, ev, log=log)
            if fit is not None and grid.size:
                p, lo, hi = fit.predict(grid)
                firth = " (0 events)" if fit.k == 0 else \
                    " (all events)" if fit.k == fit.n else ""
                ax.plot(grid, p, color=col, lw=1.6,
                        label=f"{name}: logistic fit, OR {fit.odds_ratio_per_unit:.2g}"
                              f"{' per 10x' if log else ''}{firth}")
                ax.fill_between(grid, lo, hi, color=col, alpha=0.15, lw=0)
                if fit.note:
                    notes.append(f"{kind.upper()} {name}: {fit.note}")
        # covariate value of each run
        ax.plot(x[ok], np.full(int(ok.sum()), -0.06), "|", color="#444444", ms=7, alpha=0.7,
                label="runs")
        if log:
            ax.set_xscale("log")
        ax.set_ylim(-0.1, 1.1)
        ax.set_xlabel(label + (", log scale" if log else ""))
        ax.set_ylabel(f"P(max {kind.upper()} grade ≥ k)")
        ax.set_title(f"{kind.upper()} risk vs {label} (n = {int(ok.sum())} runs)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=7.5,
                  frameon=False)
    return fig


def plot_grade_distribution(ep: xr.Dataset, by: str | None = "product", *,
                            kinds=("crs", "icans")):
    """Share of runs by maximal grade (0-4), one bar per group, one panel per kind."""
    if by is not None and by not in ep.coords and by not in ep:
        by = None
    groups = np.asarray(ep[by].values, dtype=object) if by else \
        np.array(["all"] * int(ep.sizes.get("run", 1)), dtype=object)
    by = by or "all runs"
    labels = [str(g) for g in group_order(groups)]
    missing = [k for k in kinds if not _kind_available(ep, k)]
    kinds = [k for k in kinds if k not in missing] or list(kinds[:1])
    fig, axes = plt.subplots(1, len(kinds), figsize=(max(5.2, 1.2 * len(labels) + 3.6)
                                                     * len(kinds), 4.4),
                             squeeze=False, layout="constrained")
    if missing:
        fig.suptitle("not available (no grade recorded): "
                     + ", ".join(k.upper() for k in missing), fontsize=8.5, color="#555555",
                     x=0.99, ha="right")
    for ax, kind in zip(axes[0], kinds):
        if not _kind_available(ep, kind):
            _not_available(ax, kind)
            ax.set_title(f"Maximal {kind.upper()} grade by {by}")
            continue
        g = np.asarray(ep[f"{kind}_max_grade"].values, float)
        xs = np.arange(len(labels))
        bottom = np.zeros(len(labels))
        ns = np.array([np.count_nonzero((groups.astype(str) == lab) & np.isfinite(g))
                       for lab in labels])
        for grade in range(5):
            frac = np.array([np.count_nonzero((groups.astype(str) == lab) & (g == grade))
                             for lab in labels]) / np.maximum(ns, 1)
            ax.bar(xs, frac, bottom=bottom, color=GRADE_COLOURS[grade], edgecolor="white",
                   width=0.6, label=f"grade {grade}")
            for xi, f, b in zip(xs, frac, bottom):
                if f >= 0.06:
                    ax.text(xi, b + f / 2, f"{100 * f:.0f} %", ha="center", va="center",
                            fontsize=8, color="white" if grade >= 3 else "black")
            bottom += frac
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{lab}\n(n = {n})" for lab, n in zip(labels, ns)])
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of runs")
        ax.set_xlabel(by)
        ax.set_title(f"Maximal {kind.upper()} grade by {by}")
        ax.grid(axis="x", visible=False)
        if ax is axes[0][len(kinds) - 1]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="max grade",
                      fontsize=8)
    return fig


def plot_onset(ep: xr.Dataset, by: str | None = "product", *, kinds=("crs", "icans"),
               thresholds=(1, 3)):
    """Cumulative incidence of onset (Kaplan-Meier, censored at end of follow-up) by group.

    Rows: kinds; columns: any grade, grade >= 3. 95 % log(-log) bands.
    """
    avail = [k for k in kinds if _kind_available(ep, k)] or list(kinds[:1])
    n = int(ep.sizes.get("run", 1))
    groups = np.asarray(ep[by].values, dtype=object).astype(str) if by and (
        by in ep.coords or by in ep) else np.array(["all"] * n)
    labels = [str(g) for g in group_order(groups)]
    cols = group_colours(labels)
    fu = np.asarray(ep["follow_up_day"].values, float).reshape(-1)
    tmax = float(np.nanmax(fu)) if np.isfinite(fu).any() else 1.0
    # under each curve panel a strip with the numbers at risk, one row per group
    strip = 0.45 + 0.28 * len(labels)
    fig = plt.figure(figsize=(5.2 * len(thresholds), (3.9 + 0.3 * strip) * len(avail)),
                     layout="constrained")
    gs = fig.add_gridspec(2 * len(avail), len(thresholds),
                          height_ratios=[3.4, strip] * len(avail))
    axes = np.empty((len(avail), len(thresholds)), dtype=object)
    tables = np.empty_like(axes)
    for r in range(len(avail)):
        for c in range(len(thresholds)):
            axes[r, c] = fig.add_subplot(gs[2 * r, c])
            tables[r, c] = fig.add_subplot(gs[2 * r + 1, c], sharex=axes[r, c])
    for row, trow, kind in zip(axes, tables, avail):
        for ax, tab, k in zip(row, trow, thresholds):
            tab.set_axis_off()
            name = "any grade" if k == 1 else f"grade ≥ {k}"
            ax.set_title(f"{kind.upper()} {name}: time to onset")
            if not _kind_available(ep, kind):
                _not_available(ax, kind)
                continue
            var = f"{kind}_onset_day" if k == 1 else f"{kind}_grade3_onset_day"
            if k not in (1, 3) or var not in ep:
                continue
            onset = np.asarray(ep[var].values, float).reshape(-1)
            for lab in labels:
                sel = groups == lab
                ci = cumulative_incidence(onset[sel], fu[sel],
                                          origin=min(0.0, float(np.nanmin(onset)))
                                          if np.isfinite(onset).any() else 0.0)
                tt = np.append(ci["time"].to_numpy(), tmax)
                yy = np.append(ci["cuminc"].to_numpy(), ci["cuminc"].to_numpy()[-1])
                ax.step(tt, yy, where="post", color=cols[lab], lw=1.8,
                        label=f"{lab} (n = {int(sel.sum())}, "
                              f"{_plural(int(np.isfinite(onset[sel]).sum()), 'event')})")
                lo = np.append(ci["lo"].to_numpy(), ci["lo"].to_numpy()[-1])
                hi = np.append(ci["hi"].to_numpy(), ci["hi"].to_numpy()[-1])
                ok = np.isfinite(lo) & np.isfinite(hi)
                ax.fill_between(tt, np.where(ok, lo, yy), np.where(ok, hi, yy), step="post",
                                color=cols[lab], alpha=0.15, lw=0)
            if not np.isfinite(onset).any():
                ax.text(0.5, 0.5, f"no run reached {kind.upper()} {name}", ha="center",
                        va="center", transform=ax.transAxes, color="#555555")
            x0 = min(0.0, float(np.nanmin(onset))) if np.isfinite(onset).any() else 0.0
            ax.set_xlim(x0, tmax)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("day after CAR-T infusion")
            ax.set_ylabel("cumulative incidence")
            ax.legend(loc="best", fontsize=7.5)
            _at_risk_strip(tab, ax, onset, fu, groups, labels, cols, x0, tmax)
    return fig


def at_risk_days(x0: float, x1: float) -> np.ndarray:
    """Whole days for the numbers-at-risk table (the x ticks): about 6 in ``[x0, x1]``."""
    from matplotlib.ticker import MaxNLocator
    ticks = MaxNLocator(nbins=6, integer=True, min_n_ticks=2).tick_values(x0, x1)
    return np.array([d for d in ticks if x0 - 1e-9 <= d <= x1 + 1e-9], float)


def _at_risk_strip(tab, ax, onset, follow_up, groups, labels, cols, x0, x1) -> None:
    """Numbers at risk per group under a curve panel, aligned with its x ticks."""
    days = at_risk_days(x0, x1)
    ax.set_xticks(days)
    tab.set_xlim(x0, x1)
    tab.set_ylim(len(labels) - 0.5, -1.3)
    # group names left of the first column (a count centred on the first tick reaches
    # about 3 % of the width to the left)
    tab.text(-0.05, -1.0, "number at risk", transform=tab.get_yaxis_transform(), ha="right",
             va="center", fontsize=7.5, style="italic")
    for i, lab in enumerate(labels):
        sel = groups == lab
        counts = numbers_at_risk(onset[sel], follow_up[sel], days)
        tab.text(-0.05, i, lab, transform=tab.get_yaxis_transform(), ha="right",
                 va="center", fontsize=7.5, color=cols[lab])
        for d, m in zip(days, counts):
            tab.text(d, i, str(int(m)), ha="center", va="center", fontsize=7.5,
                     color=cols[lab])


def plot_cart_course(courses: dict, *, n_runs: dict | None = None, points=(),
                     points_label: str = "reference", vline: float | None = None,
                     vline_label: str = ""):
    """Blood CAR-T over time by group: median line and IQR band (log scale).

    Args:
        courses: group -> table with ``time, q25, median, q75`` (cells/uL),
            e.g. from :func:`analysis.compare.cart_kinetics`.
        n_runs: group -> number of runs (legend).
        points: reference ``(day, cells/uL)`` points, drawn as black diamonds.
        vline: a reference day (dashed vertical line), e.g. a median peak day.
    """
    fig, ax = plt.subplots(figsize=(9.0, 5.2), layout="constrained")
    cols = group_colours(courses)
    for lab in sorted(courses, key=str):
        c = courses[lab]
        if len(c) == 0:
            ax.plot([], [], color=cols[str(lab)], label=f"{lab}: blood CAR-T not recorded")
            continue
        t = c["time"].to_numpy(float)
        pos = {q: np.where(c[q].to_numpy(float) > 0, c[q].to_numpy(float), np.nan)
               for q in ("q25", "median", "q75")}
        n = f" (n = {n_runs[lab]})" if n_runs and lab in n_runs else ""
        ax.plot(t, pos["median"], color=cols[str(lab)], lw=1.8, label=f"{lab}{n}: median")
        ax.fill_between(t, pos["q25"], pos["q75"], color=cols[str(lab)], alpha=0.2, lw=0,
                        label=f"{lab}: IQR")
    if len(points):
        px, py = zip(*points)
        ax.plot(px, py, ls="none", marker="D", ms=7, color="black", label=points_label)
        for x, y in points:
            ax.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(6, 4),
                        fontsize=8)
    if vline is not None:
        ax.axvline(vline, color="#444444", ls="--", lw=1.2, label=vline_label)
    ax.axvline(0.0, color="black", lw=0.8, ls=":", alpha=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("day after CAR-T infusion")
    ax.set_ylabel("CAR-T cells in blood (cells/µL, log)")
    ax.set_title("Blood CAR-T by trial: median and interquartile range over runs")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


def plot_posterior_risk(pr: xr.Dataset):
    """Risk over posterior draws (:func:`analysis.uncertainty.posterior_risk`): per outcome,
    each draw's rate as a point, the pooled rate with its Wilson interval, the range of the
    per-draw rates (parameter uncertainty) and the total interval; one panel per group."""
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import PercentFormatter
    groups = [str(g) for g in pr["group"].values]
    outcomes = [str(o) for o, a in zip(pr["outcome"].values, pr["available"].values[0]) if a] \
        or [str(pr["outcome"].values[0])]
    conf = float(pr.attrs.get("conf", 0.95))
    fig, axes = plt.subplots(len(groups), 1, figsize=(max(6.4, 1.25 * len(outcomes) + 2.4),
                                                      3.6 * len(groups)),
                             squeeze=False, layout="constrained")
    jitter = np.random.default_rng(0)
    for ax, g in zip(axes[:, 0], groups):
        sub = pr.sel(group=g)
        for x, o in enumerate(outcomes):
            r = sub.sel(outcome=o)
            if not np.isfinite(float(r["p"])):
                ax.text(x, 0.5, "n/a", ha="center", va="center", color="#777777")
                continue
            dp = np.asarray(r["draw_p"].values, float)
            dp = dp[np.isfinite(dp)]
            ax.add_patch(Rectangle(
                (x - 0.32, float(r["param_lo"])), 0.64,
                max(float(r["param_hi"]) - float(r["param_lo"]), 0.004),
                color="#9ecae1", alpha=0.55, lw=0, label="per-draw range" if x == 0 else None))
            ax.scatter(x - 0.18 + 0.36 * jitter.random(dp.size), dp, s=12, color="#4d4d4d",
                       alpha=0.75, zorder=3, label="one draw" if x == 0 else None)
            ax.errorbar(x + 0.42, float(r["p"]), yerr=[[float(r["p"] - r["total_lo"])],
                                                       [float(r["total_hi"] - r["p"])]],
                        fmt="none", ecolor="#d95f02", elinewidth=1.4, capsize=4, zorder=4,
                        label="total" if x == 0 else None)
            ax.errorbar(x, float(r["p"]), yerr=[[float(r["p"] - r["lo"])],
                                                [float(r["hi"] - r["p"])]],
                        fmt="o", color="black", ms=5, elinewidth=1.6, capsize=3, zorder=5,
                        label="pooled (Wilson)" if x == 0 else None)
        ax.set_xticks(range(len(outcomes)))
        ax.set_xticklabels([o.replace(" (best response CR or PR)", "").replace(
            " (best response)", "").replace(" grade", "\ngrade") for o in outcomes])
        ax.set_xlim(-0.6, len(outcomes) - 0.3)
        ax.set_ylim(-0.02, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel("share of runs")
        n_draws = int(np.max(sub["n_draws"].values)) if sub["n_draws"].size else 0
        head = "all runs" if g == "all" else f"{pr.attrs.get('by') or 'group'} {g}"
        ax.set_title(f"Risk over {_plural(n_draws, 'posterior draw')}: {head}")
        ax.grid(axis="x", visible=False)
        if ax is axes[0, 0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
                      title=f"{100 * conf:g} % intervals")
    return fig


__all__ = ["plot_patient", "plot_field_snapshot", "plot_risk_vs_covariate",
           "plot_grade_distribution", "plot_onset", "plot_cart_course",
           "plot_posterior_risk", "save", "group_colours", "GRADE_COLOURS"]
