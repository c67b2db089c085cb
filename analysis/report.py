"""``abm analyze``: a report folder (figures, tables, markdown and HTML) for a batch or a run.

>>> analyze("runs/example")                     # doctest: +SKIP
PosixPath('runs/example/report/report.md')
>>> analyze("runs/default/default_seed1.h5")    # one run: patient panel  # doctest: +SKIP

A batch report holds:

* ``report.md`` (and ``report.html``): what was run (batch config, runs loaded,
  failed and skipped runs with reasons, software versions, follow-up), the
  risk table (CRS and ICANS, any grade and grade >= 3, 95 % Wilson
  intervals; overall and by product, tumour-burden decade, clinician policy
  and any ``by`` coordinate), endpoint summaries, the comparison with the
  calibration bands of MODEL.md section 11 (:func:`in_band`), the
  cross-check of computed against file endpoints, and the figures, with the
  trend test of risk versus tumour burden under the risk figure;
* ``endpoints.csv`` (one row per run), ``risk.csv``, ``trend.csv``,
  ``calibration.csv``, ``cross_check.csv``;
* figures (PNG): risk versus tumour burden, grade distribution by group,
  time to onset by group, the course of the most severe patient and a field
  snapshot of that patient.

Two or more batch folders give the comparison report of :mod:`analysis.compare`.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from abm.errors import FileFormatError
from analysis import plots
from analysis.batch import close_files, open_batch
from analysis.io import open_group, open_run, read_provenance
from analysis.risk import (_group_order, assign_bins, bin_labels, decade_bins, grade_outcomes,
                           median_iqr, risk_table, trend_table)

#: MODEL.md section 11: pivotal-trial rates by costimulation domain, % (CRS any, CRS >= 3,
#: neurotoxicity any, neurotoxicity >= 3).
CALIBRATION = {
    "CD28": ("ZUMA-1 axi-cel (CD28), n ~ 100", 93, 13, 64, 28),
    "4-1BB": ("JULIET tisa-cel (4-1BB), n ~ 110", 58, 22, 21, 12),
}
#: The outcomes compared with CALIBRATION, in its order (ICANS stands for neurotoxicity).
CALIBRATION_OUTCOMES = ("CRS any grade", "CRS grade >= 3", "ICANS any grade", "ICANS grade >= 3")
#: Tolerance of the calibration band, percentage points (see :func:`in_band`).
BAND_PP = 10.0
#: Costimulation of the built-in product presets (when a file's config does not say).
PRESET_COSTIMULATION = {"cd28": "CD28", "4-1bb": "4-1BB"}
KINDS = ("crs", "icans")


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"abm: {msg}", file=sys.stderr)


def analyze(source, out=None, *, by=(), covariate: str = "burden_cells", html_page: bool = True,
            bootstrap: int = 0, progress: bool | None = None, quiet: bool = True) -> Path:
    """Write the report of a batch folder or a run file; returns the markdown file.

    Args:
        source: a batch folder (``runs/<batch>``) or one run file (``.h5``);
            or a list of batch folders: with two or more, the comparison
            report of :func:`analysis.compare.compare_batches` (one trial per
            folder; ``by`` must be empty then).
        out: report folder (default: ``<batch>/report`` or ``<file stem>_report``
            beside the file; for a comparison ``compare_<a>_vs_<b>`` beside
            the first folder).
        by: extra run coordinates to group the risk table by.
        covariate: continuous covariate of the risk curve.
        html_page: also write ``report.html``.
        bootstrap: if > 0, also percentile bootstrap intervals with that many
            resamples (``boot_lo``, ``boot_hi`` in ``risk.csv``).
        progress: progress bars while reading (None: on a terminal, many files).
        quiet: no status lines on stderr.

    Raises:
        FileFormatError: no such path, no readable complete runs, a bad file.
    """
    if not isinstance(source, (str, Path)):
        sources = [Path(x) for x in source]
        if len(sources) != 1:
            from analysis.compare import compare_batches
            if by:
                raise FileFormatError("--by groups the report of one batch; a comparison "
                                      "groups by trial (give one folder, or drop --by)")
            return compare_batches(sources, out, covariate=covariate, html_page=html_page,
                                   bootstrap=int(bootstrap), progress=progress, quiet=quiet)
        source = sources[0]
    source = Path(source)
    if not source.exists():
        raise FileFormatError(f"{source}: no such file or folder")
    if source.is_dir():
        return _batch_report(source, out, by=tuple(by), covariate=covariate,
                             html_page=html_page, bootstrap=int(bootstrap), progress=progress,
                             quiet=quiet)
    return _run_report(source, out, html_page=html_page, quiet=quiet)


# -- formatting ---------------------------------------------------------------------

def _pval(p) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def _pct(p, lo, hi, k=None, n=None) -> str:
    if n == 0 or p is None or not np.isfinite(p):
        return "n/a"
    s = f"{100 * p:.0f} % ({100 * lo:.0f}-{100 * hi:.0f})"
    return s + (f" {k}/{n}" if k is not None else "")


def _num(v, fmt="{:.3g}") -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, (float, np.floating)) and not np.isfinite(v):
        return "n/a"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return fmt.format(float(v))


def md_table(header, rows) -> str:
    """A markdown table (cells escaped for ``|``)."""
    esc = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines)


def _fig(md: list, title: str, fname: str, caption: str, *extra: str) -> None:
    """A figure section; ``extra`` markdown blocks (e.g. a table) follow the caption."""
    md += [f"### {title}", "", f"![{title}]({fname})", "", caption, ""]
    for block in extra:
        md += [block, ""]


# -- batch ------------------------------------------------------------------------

def _groupings(ep, by) -> list[str]:
    """Grouping coordinates for the risk table, those with more than one value."""
    out = []
    for g in ("product", "burden_bin", "policy", *by):
        if g in out:
            continue
        if g not in ep.coords and g not in ep:
            if g in by:
                raise FileFormatError(f"no run coordinate {g!r} to group by (have: "
                                      f"{', '.join(c for c in ep.coords if c != 'run')})")
            continue
        vals = {str(v) for v in np.asarray(ep[g].values, dtype=object) if v not in (None, "")}
        if len(vals) > 1 or g in by:
            out.append(g)
    return out


def risk_rows(ep, groupings, bootstrap: int = 0) -> pd.DataFrame:
    """The report's risk table: overall and by each grouping (long format)."""
    outcomes = grade_outcomes(KINDS)
    frames = [risk_table(ep, outcomes, bootstrap=bootstrap).assign(by="all")]
    for g in groupings:
        frames.append(risk_table(ep, outcomes, by=g, bootstrap=bootstrap))
    df = pd.concat(frames, ignore_index=True)
    cols = ["by", "group", "outcome", "endpoint", "threshold", "n", "k", "p", "lo", "hi"]
    cols += ["boot_lo", "boot_hi"] if bootstrap else []
    return df[cols + ["available"]]


def _risk_markdown(risk: pd.DataFrame) -> str:
    outcomes = list(dict.fromkeys(risk["outcome"]))
    header = ["grouping", "group", "n"] + outcomes
    rows = []
    for (by, group), sub in risk.groupby(["by", "group"], sort=False):
        cells = []
        n = int(sub["n"].max())
        for o in outcomes:
            r = sub[sub["outcome"] == o].iloc[0]
            cells.append(_pct(r["p"], r["lo"], r["hi"], int(r["k"]), int(r["n"]))
                         if r["available"] else "not available")
        rows.append([by, str(group), str(n)] + cells)
    return md_table(header, rows)


def _summary_markdown(ep, group: str | None) -> str:
    groups = ([str(g) for g in _group_order(np.asarray(ep[group].values, dtype=object))]
              if group else ["all"])
    gv = np.asarray(ep[group].values, dtype=object).astype(str) if group else None
    items = [("CRS onset day (runs with CRS)", "crs_onset_day", 1, "{:.2g}"),
             ("CRS duration, days (runs with CRS)", "crs_duration_days", None, "{:.2g}"),
             ("ICANS onset day (runs with ICANS)", "icans_onset_day", 1, "{:.2g}"),
             ("blood CAR-T peak, cells/uL", "blood_cart_peak_per_ul", None, "{:.3g}"),
             ("day of CAR-T peak", "blood_cart_peak_day", None, "{:.2g}"),
             ("plasma IL-6 peak, pg/mL", "plasma_il6_peak_pg_ml", None, "{:.3g}"),
             ("plasma IFN-g peak, pg/mL", "plasma_ifng_peak_pg_ml", None, "{:.3g}"),
             ("tumour change in the patch at the response day", "tumour_change", None,
              "{:+.0%}")]
    rows = []
    crs = np.asarray(ep["crs_max_grade"].values, float) if "crs_max_grade" in ep else None
    for label, var, need_crs, fmt in items:
        if var not in ep:
            continue
        v = np.asarray(ep[var].values, float)
        if not np.isfinite(v).any():
            rows.append([label] + ["not available"] * len(groups))
            continue
        cells = []
        for g in groups:
            sel = np.ones(v.size, bool) if gv is None else (gv == g)
            if var == "crs_duration_days" and crs is not None:
                sel = sel & (crs >= 1)
            med, q1, q3 = median_iqr(v[sel])
            cells.append("n/a" if not np.isfinite(med) else
                         f"{fmt.format(med)} [{fmt.format(q1)}, {fmt.format(q3)}]")
        rows.append([label] + cells)
    # drugs, support and response as shares
    n_by = {g: int(np.count_nonzero(gv == g)) if gv is not None else int(ep.sizes["run"])
            for g in groups}
    def share(mask_fn, label):
        cells = []
        for g in groups:
            sel = np.ones(int(ep.sizes["run"]), bool) if gv is None else (gv == g)
            m = mask_fn()
            cells.append(f"{100 * np.count_nonzero(m & sel) / max(n_by[g], 1):.0f} %")
        rows.append([label] + cells)
    for d in [k[:-len("_doses")] for k in ep.data_vars if k.endswith("_doses")]:
        v = np.nan_to_num(np.asarray(ep[f"{d}_doses"].values, float))
        share(lambda v=v: v > 0, f"received {d}")
    if "vasopressors_max" in ep:
        v = np.nan_to_num(np.asarray(ep["vasopressors_max"].values, float))
        share(lambda v=v: v > 0, "needed vasopressors")
    if "response" in ep:
        r = np.asarray(ep["response"].values, dtype=object).astype(str)
        for cat in ("CR", "PR", "SD", "PD"):
            share(lambda cat=cat: r == cat, f"response {cat}")
    return md_table(["endpoint: median [IQR] or share of runs"] + groups, rows)


# -- calibration bands (MODEL.md section 11) ------------------------------------------

def in_band(p, lo, hi, target, tol: float = BAND_PP / 100):
    """Whether a target rate lies in the calibration band of a simulated rate.

    The band is the simulated 95 % Wilson interval ``[lo, hi]`` widened to at
    least ``p +- tol`` (10 percentage points): ``min(lo, p - tol) <= target <=
    max(hi, p + tol)``. The interval covers the sampling error of the virtual
    trial; the tolerance covers what the interval does not (the pivotal trials'
    own sampling error, ~+-7 points at n ~ 100, and their other grading scales:
    Lee 2014 or Penn against ASTCT, neurotoxicity against ICANS). All rates
    as fractions. None when ``p`` is NaN (not available).
    """
    if p is None or not np.isfinite(p):
        return None
    return bool(min(lo, p - tol) - 1e-12 <= target <= max(hi, p + tol) + 1e-12)


def product_costimulation(ds) -> dict:
    """Costimulation domain ("CD28", "4-1BB", or None) of each ``product`` of a batch.

    From the ``product.costimulation`` coordinate when it varies, else from
    the config of the first run file of the product, else from the preset
    name (:data:`PRESET_COSTIMULATION`).
    """
    if "product" not in ds.coords:
        return {}
    prods = np.asarray(ds["product"].values, dtype=object).astype(str)
    cost = (np.asarray(ds["product.costimulation"].values, dtype=object)
            if "product.costimulation" in ds.coords else None)
    paths = np.asarray(ds["path"].values, dtype=object) if "path" in ds.coords else None
    out = {}
    for prod in _group_order(prods):
        i = int(np.flatnonzero(prods == prod)[0])
        c = str(cost[i]) if cost is not None and cost[i] not in (None, "") else None
        if c is None and paths is not None:
            try:
                c = (read_provenance(paths[i]).get("config") or {}).get(
                    "product", {}).get("costimulation")
            except FileFormatError:
                c = None
        out[prod] = c or PRESET_COSTIMULATION.get(prod.lower())
    return out


def calibration_table(risk: pd.DataFrame, costimulation: dict) -> pd.DataFrame:
    """Simulated rates next to the MODEL.md section 11 targets, with the band verdict.

    Args:
        risk: :func:`analysis.risk.risk_table` rows (``group, outcome, n, k, p,
            lo, hi, available``) holding :data:`CALIBRATION_OUTCOMES`.
        costimulation: group -> costimulation ("CD28" -> ZUMA-1, "4-1BB" ->
            JULIET); groups mapping to no target are left out.

    Returns:
        One row per (group, outcome): ``group, costimulation, cohort, outcome,
        n, k, p, lo, hi, target, band_lo, band_hi, in_band`` (rates as
        fractions; :func:`in_band`; ``in_band`` None when not available).
    """
    rows = []
    for group, costim in costimulation.items():
        if costim not in CALIBRATION:
            continue
        cohort, *targets = CALIBRATION[costim]
        sub = risk[risk["group"].astype(str) == str(group)]
        for outcome, target in zip(CALIBRATION_OUTCOMES, targets):
            r = sub[sub["outcome"] == outcome]
            ok = not r.empty and bool(r.iloc[0]["available"])
            n, k, p, lo, hi = ((int(r.iloc[0]["n"]), int(r.iloc[0]["k"]),
                                *(float(r.iloc[0][c]) for c in ("p", "lo", "hi")))
                               if ok else (0, 0, math.nan, math.nan, math.nan))
            tol = BAND_PP / 100
            rows.append({"group": group, "costimulation": costim, "cohort": cohort,
                         "outcome": outcome, "n": n, "k": k, "p": p, "lo": lo, "hi": hi,
                         "target": target / 100, "band_lo": max(min(lo, p - tol), 0.0),
                         "band_hi": min(max(hi, p + tol), 1.0),
                         "in_band": in_band(p, lo, hi, target / 100) if ok else None})
    return pd.DataFrame(rows, columns=["group", "costimulation", "cohort", "outcome", "n", "k",
                                       "p", "lo", "hi", "target", "band_lo", "band_hi",
                                       "in_band"])


def calibration_markdown(cal: pd.DataFrame, group_label: str = "product") -> str:
    """:func:`calibration_table` as markdown: one row per (group, outcome)."""
    rows = []
    for r in cal.itertuples():
        verdict = ("n/a" if r.in_band is None else "yes" if r.in_band else
                   f"no (simulated {'above' if r.p > r.target else 'below'})")
        rows.append([str(r.group), r.cohort, r.outcome.replace("ICANS", "neurotox / ICANS"),
                     str(r.n), str(r.k) if r.n else "n/a",
                     _pct(r.p, r.lo, r.hi) if r.n else "not available",
                     f"{100 * r.target:.0f} %", verdict])
    return md_table([group_label, "target trial", "outcome", "n", "k",
                     "simulated % (95 % CI)", "target", "in band?"], rows)


CALIBRATION_NOTE = (
    "Pivotal-trial rates used other grading scales (Lee 2014 for ZUMA-1, Penn for JULIET) "
    "and neurotoxicity is not exactly ICANS: aim for the band, not the point. The target "
    "row follows the product's costimulation (CD28 -> ZUMA-1, 4-1BB -> JULIET). **In band**: "
    f"the target lies inside the simulated 95 % Wilson interval widened to at least "
    f"+-{BAND_PP:g} percentage points around the simulated rate, i.e. "
    f"min(lo, p - {BAND_PP:g} pp) <= target <= max(hi, p + {BAND_PP:g} pp); the interval "
    "carries the virtual trial's sampling error, the tolerance the pivotal trial's own "
    "(~+-7 points at n ~ 100) and the differences of grading scale.")


def _calibration_markdown(ep) -> tuple[str | None, pd.DataFrame]:
    """The batch report's calibration section: by product, targets by costimulation."""
    if "product" not in ep.coords:
        return None, calibration_table(pd.DataFrame(columns=["group", "outcome"]), {})
    risk = risk_table(ep, grade_outcomes(KINDS), by="product")
    cal = calibration_table(risk, product_costimulation(ep))
    return (calibration_markdown(cal) if len(cal) else None), cal


# -- trend of risk over the covariate -----------------------------------------------

def trend_markdown(trend: pd.DataFrame, group_label: str | None = None) -> str:
    """:func:`analysis.risk.trend_table` as the report's table."""
    rows = []
    for r in trend.itertuples():
        first = [str(r.group)] if group_label else []
        if not r.available:
            rows.append(first + [r.outcome, "0", "0", "not available", "", "", ""])
            continue
        lo, hi = (_num(v, "{:+.2f}") if np.isfinite(v) else ("-inf" if v < 0 else "+inf")
                  for v in (r.slope_lo, r.slope_hi))
        slope = "n/a" if not np.isfinite(r.slope) else \
            f"{r.slope:+.2f} [{lo}, {hi}]".replace("+0.00 ", "0.00 ")
        rows.append(first + [r.outcome, str(r.n), str(r.k), _num(r.ca_z, "{:+.2f}"),
                             _pval(r.ca_p_increasing), slope, _pval(r.slope_p)]
                    + [r.note or ""])
    header = ([group_label] if group_label else []) + [
        "outcome", "n", "events", "CA z", "one-sided p (increasing)",
        "logistic slope per decade [95 % CI]", "p (slope)", "note"]
    return md_table(header, [r + [""] * (len(header) - len(r)) for r in rows])


TREND_NOTE = (
    "**Cochran-Armitage** test for trend over the decade bins of {lab} (scores: log10 "
    "of each bin's geometric-mean value); z > 0 means risk rising with {lab}; the p-value "
    "is one-sided for an increase (two-sided and decreasing p-values in "
    "[trend.csv](trend.csv)). **Logistic slope**: change of the log-odds per 10-fold "
    "increase of {lab} in the Firth-penalised logistic fit on log10 {lab}, with its profile "
    "penalised-likelihood 95 % interval and the two-sided penalised likelihood-ratio "
    "p-value (Heinze & Schemper 2002; Wald values in trend.csv). MODEL.md 10.3 expects "
    "a monotone rise of CRS and ICANS risk with tumour burden.")


def _response_day(ep) -> str:
    target = float(ep.attrs.get("response_day_target", 28.0))
    used = np.asarray(ep["response_day"].values, float) if "response_day" in ep else np.array([])
    used = used[np.isfinite(used)]
    if used.size and used.max() < target - 1e-6:
        return (f"{np.median(used):g} (runs end before day {target:g}; the endpoint is "
                f"evaluated at the last record)")
    return f"{target:g}"


def _batch_info(ds) -> dict:
    info = {"description": "", "root_seed": "", "population": "", "sweep": ""}
    text = ds.attrs.get("batch_config", "")
    if text:
        try:
            cfg = tomllib.loads(text)
            b = cfg.get("batch", {})
            info["description"] = b.get("description", "")
            info["root_seed"] = b.get("root_seed", "")
            info["replicates"] = b.get("replicates", "")
            if "population" in b:
                info["population"] = f"{b['population'].get('size', '?')} virtual patients"
            if "sweep" in b:
                info["sweep"] = f"sweep ({b['sweep'].get('method', 'grid')})"
        except tomllib.TOMLDecodeError:
            pass
    return info


def _pick_patient(ep) -> str:
    """Most severe run: highest CRS (then ICANS) grade, then earliest onset."""
    runs = np.asarray(ep["run"].values)
    keys = []
    for i in range(runs.size):
        def g(v):
            x = float(ep[v].values[i]) if v in ep else math.nan
            return x if np.isfinite(x) else -1.0
        onset = float(ep["crs_onset_day"].values[i]) if "crs_onset_day" in ep else math.nan
        keys.append((g("crs_max_grade"), g("icans_max_grade"),
                     -(onset if np.isfinite(onset) else 1e9)))
    return str(runs[max(range(runs.size), key=lambda i: keys[i])])


def _batch_report(folder: Path, out, *, by, covariate, html_page, bootstrap, progress,
                  quiet) -> Path:
    out = Path(out) if out else folder / "report"
    _say(f"reading {folder} ...", quiet)
    ds = open_batch(folder, progress=progress)
    try:
        return _write_batch_report(ds, folder, out, by=by, covariate=covariate,
                                   html_page=html_page, bootstrap=bootstrap, progress=progress,
                                   quiet=quiet)
    finally:
        close_files()


def _write_batch_report(ds, folder, out, *, by, covariate, html_page, bootstrap, progress,
                        quiet) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    n = int(ds.sizes["run"])
    _say(f"{n} runs loaded ({ds.attrs['n_skipped']} skipped); computing endpoints ...", quiet)
    ep = ds.abm.endpoints(progress=progress)
    if "burden_cells" in ep.coords:
        b = np.asarray(ep["burden_cells"].values, float)
        edges = decade_bins(b)
        if edges.size >= 2:
            ep = ep.assign_coords(burden_bin=("run", assign_bins(b, edges, bin_labels(edges,
                                                                                     "cells"))))
    groupings = _groupings(ep, by)
    risk = risk_rows(ep, groupings, bootstrap)
    check = ds.abm.check_endpoints(ep)

    table = ep.reset_coords().to_dataframe()
    table.to_csv(out / "endpoints.csv")
    risk.to_csv(out / "risk.csv", index=False)
    check.to_csv(out / "cross_check.csv", index=False)

    # figures
    _say("drawing figures ...", quiet)
    figs = []
    main_group = "product" if "product" in groupings else (groupings[0] if groupings else None)
    trend = None
    if covariate in ep.coords or covariate in ep:
        fname = f"risk_vs_{covariate.replace('.', '_')}.png"
        plots.save(plots.plot_risk_vs_covariate(ep, covariate), out / fname)
        lab = covariate_label(covariate)
        trend = trend_table(ep, covariate, grade_outcomes(KINDS))
        trend.to_csv(out / "trend.csv", index=False)
        figs.append((f"Risk versus {lab}", fname,
                     f"Points: share of runs per bin of {lab} (horizontal bar: range of the "
                     "values in the bin; labels k/n) with 95 % Wilson intervals. Curve: "
                     "logistic regression on log10 of the covariate (Firth-penalised), shaded "
                     "95 % confidence band; OR is the odds ratio per 10-fold increase. Grey "
                     "ticks: covariate values of the runs.",
                     f"**Risk vs {lab}: trend test**", trend_markdown(trend),
                     TREND_NOTE.format(lab=lab)))
    for g in [x for x in (main_group, "policy") if x in groupings] or [None]:
        fname = f"grade_distribution_by_{g or 'all'}.png"
        plots.save(plots.plot_grade_distribution(ep, by=g), out / fname)
        figs.append((f"Maximal grade by {g or 'all runs'}", fname,
                     "Share of runs by their maximal CRS / ICANS grade (ASTCT 2019)."))
    fname = f"onset_by_{main_group or 'all'}.png"
    plots.save(plots.plot_onset(ep, by=main_group), out / fname)
    figs.append(("Time to onset", fname,
                 "Cumulative incidence of onset (Kaplan-Meier; runs without onset censored at "
                 "the end of their follow-up; no competing risks) with 95 % log(-log) bands."))
    worst = _pick_patient(ep)
    fname = f"patient_{worst}.png"
    plots.save(plots.plot_patient(ds.abm.patient(worst)), out / fname)
    figs.append((f"Patient course: {worst} (most severe: highest CRS, then ICANS grade)", fname,
                 "Blood CAR-T and tumour cells in the patch; plasma cytokines (log scale); "
                 "temperature; MAP and SpO2; organ support levels; CRS / ICANS grade; drug "
                 "doses (markers; count in the label)."))
    path = ds.abm.path(worst)
    try:
        fname = f"field_{worst}.png"
        plots.save(plots.plot_field_snapshot(path), out / fname)
        figs.append((f"Field snapshot: {worst}", fname,
                     "Tissue IL-6 in the patch at the snapshot where it is highest, with the "
                     "cells of that snapshot."))
    except (KeyError, ValueError, FileFormatError) as exc:
        _say(f"no field snapshot for {worst} ({exc})", quiet)

    # markdown
    info = _batch_info(ds)
    skipped = ds.abm.skipped
    t = np.asarray(ds["time"].values, float)
    md = [f"# Report: batch `{ds.attrs['batch_name']}`", "",
          f"Written by `abm analyze` on {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC "
          f"from `{folder}`.", ""]
    md += ["## What was run", ""]
    lines = [f"- runs: **{n} loaded** of {ds.attrs['n_runs']} "
             f"({len([s for s in skipped if s['status'] == 'failed'])} failed, "
             f"{len([s for s in skipped if s['status'] != 'failed'])} other skipped)"]
    if info["description"]:
        lines.append(f"- description: {info['description']}")
    design = ", ".join(x for x in (info.get("population"), info.get("sweep")) if x)
    if design or info.get("replicates"):
        lines.append(f"- design: {design or 'fixed parameters'}; replicates "
                     f"{info.get('replicates', '?')}; root seed {info.get('root_seed', '?')}")
    varied = [c for c in ds.attrs.get("varied_parameters", "").split(", ") if c]
    if varied:
        lines.append("- varied parameters: " + ", ".join(f"`{c}`" for c in varied))
    lines.append(f"- follow-up: day {t[0]:g} to {t[-1]:g} after infusion, one record every "
                 f"{ds.abm.record_interval_days * 24 * 60:.3g} min")
    lines.append(f"- software: abm {ds.attrs['software_versions']} (schema "
                 f"{ds.attrs['schema_versions']}); analysis by abm {_version()}")
    na = ep.attrs.get("not_available", "")
    if na:
        lines.append(f"- not available in these files: {na} "
                     "(the time series has no such variable; reported as n/a)")
    md += lines + [""]
    if skipped:
        md += ["Runs not analysed:", "",
               md_table(["run", "status", "reason"],
                        [[s["run_id"], s["status"], s["reason"]] for s in skipped[:50]]), ""]
        if len(skipped) > 50:
            md += [f"... and {len(skipped) - 50} more.", ""]
    if ds.attrs.get("batch_config"):
        md += ["<details><summary>Batch config (batch.toml)</summary>", "", "```toml",
               ds.attrs["batch_config"].strip(), "```", "", "</details>", ""]

    md += ["## Risk", "",
           "Share of runs whose maximal grade reached each level, with 95 % Wilson score "
           "intervals and k/n. Grades are computed from the recorded `crs_grade` / "
           "`icans_grade` time series (ASTCT 2019). Follow-up is the length of the runs, "
           "shorter than in the clinical trials."
           + (f" Percentile bootstrap intervals ({bootstrap} resamples) are in "
              "[risk.csv](risk.csv) (`boot_lo`, `boot_hi`)." if bootstrap else ""),
           "", _risk_markdown(risk), ""]
    cal, cal_table = _calibration_markdown(ep)
    if cal:
        cal_table.to_csv(out / "calibration.csv", index=False)
        md += ["### Against the calibration bands (MODEL.md section 11)", "",
               CALIBRATION_NOTE + " Table: [calibration.csv](calibration.csv).", "", cal, ""]
    md += ["## Endpoints", "", _summary_markdown(ep, main_group), "",
           f"Response: tumour cells in the patch at day {_response_day(ep)} against day 0 "
           "(the last record at or before it); CR none left, PR <= -50 %, PD >= +50 % "
           "(a patch-count proxy for Lugano imaging response). "
           "Per-run endpoints: [endpoints.csv](endpoints.csv); risk table: [risk.csv](risk.csv)"
           + ("; trend tests: [trend.csv](trend.csv)." if trend is not None else "."),
           ""]
    bad = check[check["mismatches"] > 0] if len(check) else check
    md += ["## Cross-check with the files' own endpoints", "",
           f"Endpoints computed from the records against `/endpoints` written by the simulator "
           f"(step resolution): {len(check)} endpoints compared, "
           f"{len(bad)} with runs outside tolerance "
           "(grades and doses exact; days within one record interval; peaks within 10 %: a "
           "peak between two records is missed by the records). "
           "Full table: [cross_check.csv](cross_check.csv).", ""]
    if len(bad):
        md += [md_table(["endpoint", "runs outside tolerance", "max abs diff", "tolerance",
                         "e.g."], [[r.endpoint, f"{r.mismatches}/{r.n}", _num(r.max_abs_diff),
                                    r.tolerance, r.runs] for r in bad.itertuples()]), ""]
    md += ["## Figures", ""]
    for fig in figs:
        _fig(md, *fig)
    return _write(out, md, html_page, quiet, n_figs=len(figs))


def covariate_label(covariate: str) -> str:
    return "tumour burden" if covariate == "burden_cells" else covariate


def _version() -> str:
    from abm import __version__
    return __version__


def _write(out: Path, md: list, html_page: bool, quiet: bool, n_figs: int) -> Path:
    text = "\n".join(md).rstrip() + "\n"
    path = out / "report.md"
    path.write_text(text, encoding="utf-8")
    if html_page:
        (out / "report.html").write_text(markdown_to_html(text), encoding="utf-8")
    _say(f"wrote {path} ({n_figs} figures{', report.html' if html_page else ''})", quiet)
    return path


# -- one run ---------------------------------------------------------------------

def _run_report(path: Path, out, *, html_page: bool, quiet: bool) -> Path:
    out = Path(out) if out else path.with_name(path.name.split(".")[0] + "_report")
    ds = open_run(path)
    prov = read_provenance(path)
    out.mkdir(parents=True, exist_ok=True)
    ep = ds.abm.endpoints()
    check = ds.abm.check_endpoints(ep, detail=True)
    fe = ds.abm.file_endpoints()
    figs = []
    fname = "patient.png"
    plots.save(plots.plot_patient(ds), out / fname)
    figs.append(("Patient course", fname,
                 "Blood CAR-T and tumour cells in the patch; plasma cytokines (log scale); "
                 "temperature; MAP and SpO2; organ support levels; CRS / ICANS grade; drug "
                 "doses."))
    try:
        fname = "field.png"
        plots.save(plots.plot_field_snapshot(path), out / fname)
        figs.append(("Field snapshot", fname, "Tissue IL-6 at the snapshot where it is "
                     "highest, with the cells of that snapshot."))
    except (KeyError, ValueError, FileFormatError) as exc:
        _say(f"no field snapshot ({exc})", quiet)
    pd.DataFrame([{k: v.item() for k, v in ep.data_vars.items()}]).to_csv(
        out / "endpoints.csv", index=False)
    t = np.asarray(ds["time"].values, float)
    cov = prov.get("covariates") or {}
    md = [f"# Report: run `{prov.get('run_name', path.stem)}`", "",
          f"Written by `abm analyze` on {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC "
          f"from `{path}`.", "", "## What was run", "",
          f"- seed {prov.get('seed')} (replicate {prov.get('replicate')}); complete: "
          f"{'yes' if int(prov.get('complete', 0)) == 1 else 'no'}",
          f"- follow-up: day {t[0]:g} to {t[-1]:g}, one record every "
          f"{ds.abm.record_interval_days * 24 * 60:.3g} min",
          "- covariates: " + ", ".join(f"{k} = {_num(v)}" for k, v in sorted(cov.items())),
          f"- software: abm {prov.get('software_version')} (schema {prov.get('schema_version')})",
          ""]
    na = ep.attrs.get("not_available", "")
    if na:
        md += [f"Not available in this file: {na}.", ""]
    cmp = {r.endpoint: r for r in check.itertuples()} if len(check) else {}
    rows = []
    for k, v in ep.data_vars.items():
        val = v.item()
        f = fe.get(k)
        rows.append([k, _num(val), v.attrs.get("units", ""),
                     _num(float(f)) if f is not None else "",
                     ("ok" if cmp[k].ok else "differs") if k in cmp else ""])
    md += ["## Endpoints", "", "Computed from the records; `file` is the simulator's own "
           "`/endpoints` (step resolution) where it has the same endpoint.", "",
           md_table(["endpoint", "value", "units", "file", "check"], rows), ""]
    try:
        ev = open_group(path, "events", load=True)
        if "kind" in ev and ev.sizes.get("event", 0):
            evdf = ev.to_dataframe().reset_index(drop=True)
            rows = [[_num(r.time, "{:.3f}"), str(r.kind), _num(r.grade), str(r.detail)]
                    for r in evdf.head(60).itertuples()]
            md += ["## Events", "", md_table(["day", "kind", "grade", "detail"], rows), ""]
            if len(evdf) > 60:
                md += [f"... {len(evdf) - 60} more events in the file.", ""]
    except FileFormatError:
        pass
    md += ["## Figures", ""]
    for title, fname, caption in figs:
        _fig(md, title, fname, caption)
    return _write(out, md, html_page, quiet, n_figs=len(figs))


# -- markdown -> HTML (the subset written above) ---------------------------------

def _inline(text: str) -> str:
    s = html.escape(text, quote=False)
    s = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2">', s)
    s = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', s)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
    return s


def markdown_to_html(text: str, title: str = "abm report") -> str:
    """HTML page of the markdown subset the report uses (headings, lists, tables,
    images, code blocks, ``<details>``)."""
    out, lines, i = [], text.splitlines(), 0
    m = re.match(r"#\s+(.*)", lines[0]) if lines else None
    title = m.group(1).replace("`", "") if m else title
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre><code>" + html.escape("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
            continue
        if ln.startswith("<details>") or ln.startswith("</details>"):
            out.append(ln)
        elif m := re.match(r"(#{1,6})\s+(.*)", ln):
            h = len(m.group(1))
            out.append(f"<h{h}>{_inline(m.group(2))}</h{h}>")
        elif ln.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            cells = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", r)[1:-1]]
                     for r in rows]
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                           for r in cells[2:])
            head = "<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in cells[0]) + "</tr>"
            out.append(f"<table><thead>{head}</thead><tbody>{body}</tbody></table>")
            continue
        elif ln.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif ln.strip():
            out.append(f"<p>{_inline(ln)}</p>")
        i += 1
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
             "padding:0 1em;line-height:1.45;color:#222}table{border-collapse:collapse;"
             "margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:left}th{background:#f2f2f2}img{max-width:100%;border:1px solid #eee}"
             "code{background:#f5f5f5;padding:0 3px}pre{background:#f5f5f5;padding:1em;"
             "overflow:auto;font-size:0.85em}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(out)
            + "\n</body></html>\n")


__all__ = ["analyze", "risk_rows", "markdown_to_html", "md_table", "CALIBRATION",
           "CALIBRATION_OUTCOMES", "BAND_PP", "in_band", "calibration_table",
           "calibration_markdown", "product_costimulation", "trend_markdown"]
