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
  calibration bands of docs/model.md section 11
  (:func:`analysis.calibration.in_band`), the
  cross-check of computed against file endpoints, and the figures, with the
  trend test of risk versus tumour burden under the risk figure;
* with posterior draws (``[batch.posterior]``), the rates over the draws: the
  pooled rate with its Wilson interval beside the range of the per-draw rates
  and a total interval (:mod:`analysis.uncertainty`), a figure of the
  per-draw rates, ``posterior_risk.csv`` and ``posterior_draws.csv``;
* ``endpoints.csv`` (one row per run), ``risk.csv``, ``trend.csv``,
  ``calibration.csv``, ``cross_check.csv``;
* figures (PNG): risk versus tumour burden, grade distribution by group,
  time to onset by group, the course of the most severe patient and a field
  snapshot of that patient.

The page is rendered from ``templates/batch_report.md.j2`` (a batch) or
``templates/run_report.md.j2`` (a run). The ``abm analyze`` entry, which also
dispatches to the comparison report of :mod:`analysis.compare`, is
:func:`analysis.analyze.analyze`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from abm.errors import FileFormatError
from analysis import endpoints as E
from analysis import plots
from analysis.batch import close_files, open_batch
from analysis.batch_info import batch_info
from analysis.calibration import (calibration_table, in_band, product_costimulation,
                                  shortest_follow_up)
from analysis.formatting import covariate_label, format_num, format_pct, md_table
from analysis.io import open_group, open_run, read_provenance
from analysis.notes import (BAND_PP, CALIBRATION, CALIBRATION_NOTE, CALIBRATION_OUTCOMES,
                            GRADE_CAPTION, KINDS, ONSET_CAPTION, TREND_NOTE)
from analysis.render import Figure, render_markdown, say, software_version, write_report
from analysis.risk import (assign_bins, bin_labels, decade_bins, grade_outcomes, group_order,
                           median_iqr, risk_table, trend_table)
from analysis.tables import calibration_markdown, posterior_markdown, trend_markdown
from analysis.uncertainty import N_BOOT, draws_frame, posterior_frame, posterior_risk

_log = logging.getLogger(__name__)


def _utc_now() -> str:
    return f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M}"


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
            cells.append(format_pct(r["p"], r["lo"], r["hi"], int(r["k"]), int(r["n"]))
                         if r["available"] else "not available")
        rows.append([by, str(group), str(n)] + cells)
    return md_table(header, rows)


def _summary_markdown(ep, group: str | None) -> str:
    groups = ([str(g) for g in group_order(np.asarray(ep[group].values, dtype=object))]
              if group else ["all"])
    gv = np.asarray(ep[group].values, dtype=object).astype(str) if group else None
    items = [("CRS onset day (runs with CRS)", "crs_onset_day", 1, "{:.2g}"),
             ("CRS duration, days (runs with CRS)", "crs_duration_days", None, "{:.2g}"),
             ("ICANS onset day (runs with ICANS)", "icans_onset_day", 1, "{:.2g}"),
             ("blood CAR-T peak, cells/uL", "blood_cart_peak_per_ul", None, "{:.3g}"),
             ("day of CAR-T peak", "blood_cart_peak_day", None, "{:.2g}"),
             ("plasma IL-6 peak, pg/mL", "plasma_il6_peak_pg_ml", None, "{:.3g}"),
             ("plasma IFN-g peak, pg/mL", "plasma_ifng_peak_pg_ml", None, "{:.3g}"),
             ("whole-tumour change at the response day", "tumour_change", None,
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
            share(lambda cat=cat: r == cat, f"response {cat} (day {E.RESPONSE_DAY:g})")
    if "best_response" in ep:
        b = np.asarray(ep["best_response"].values, dtype=object).astype(str)
        share(lambda: (b == "CR") | (b == "PR"), "best overall response CR or PR (ORR)")
        share(lambda: b == "CR", "best overall response CR")
    return md_table(["endpoint: median [IQR] or share of runs"] + groups, rows)


# -- calibration bands (docs/model.md section 11) ------------------------------------------

def _calibration_markdown(ep) -> tuple[str | None, pd.DataFrame]:
    """The batch report's calibration section: by product, targets by costimulation."""
    if "product" not in ep.coords:
        return None, calibration_table(pd.DataFrame(columns=["group", "outcome"]), {})
    risk = risk_table(ep, grade_outcomes(KINDS), by="product")
    cal = calibration_table(risk, product_costimulation(ep),
                            follow_up=shortest_follow_up(ep, "product"))
    return (calibration_markdown(cal) if len(cal) else None), cal


# -- the batch report ---------------------------------------------------------------

def _response_day(ep) -> str:
    target = float(ep.attrs.get("response_day_target", 28.0))
    used = np.asarray(ep["response_day"].values, float) if "response_day" in ep else np.array([])
    used = used[np.isfinite(used)]
    if used.size and used.max() < target - 1e-6:
        return (f"{np.median(used):g} (runs end before day {target:g}; the endpoint is "
                f"evaluated at the last record)")
    return f"{target:g}"


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


def _coordinate(ds, name: str) -> str:
    """The batch's coordinate for a covariate name or config key (unknown: unchanged)."""
    try:
        return ds.abm.covariate_name(name)
    except KeyError:
        return name


def batch_report(folder: Path, out, *, by, covariate, html_page, bootstrap, progress,
                  quiet) -> Path:
    out = Path(out) if out else folder / "report"
    say(f"reading {folder} ...", quiet)
    ds = open_batch(folder, progress=progress)
    for skipped in ds.abm.skipped:
        if skipped["status"] in ("unreadable", "incomplete", "empty"):
            _log.warning(f"skipped {skipped['run_id']}: {skipped['reason']}")
    # a covariate may be named by its config key (patient.tumour_burden_cells)
    by = tuple(_coordinate(ds, g) for g in by)
    covariate = _coordinate(ds, covariate)
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
    say(f"{n} runs loaded ({ds.attrs['n_skipped']} skipped); computing endpoints ...", quiet)
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
    posterior = None
    if "draw" in ep.coords:   # a batch over posterior draws ([batch.posterior])
        posterior = posterior_risk(ep, by="product" if "product" in groupings else None,
                                   n_boot=N_BOOT, seed=0)
        posterior_frame(posterior).to_csv(out / "posterior_risk.csv", index=False)
        draws_frame(posterior).to_csv(out / "posterior_draws.csv", index=False)

    table = ep.reset_coords().to_dataframe()
    table.to_csv(out / "endpoints.csv")
    risk.to_csv(out / "risk.csv", index=False)
    check.to_csv(out / "cross_check.csv", index=False)

    # figures
    say("drawing figures ...", quiet)
    figs = []
    main_group = "product" if "product" in groupings else (groupings[0] if groupings else None)
    trend = None
    if covariate in ep.coords or covariate in ep:
        fname = f"risk_vs_{covariate.replace('.', '_')}.png"
        plots.save(plots.plot_risk_vs_covariate(ep, covariate), out / fname)
        lab = covariate_label(covariate)
        trend = trend_table(ep, covariate, grade_outcomes(KINDS))
        trend.to_csv(out / "trend.csv", index=False)
        figs.append(Figure(
            f"Risk versus {lab}", fname,
            f"Points: share of runs per bin of {lab} (horizontal bar: range of the values in "
            "the bin; labels k/n) with 95 % Wilson intervals. Curve: logistic regression on "
            "log10 of the covariate (Firth-penalised), shaded 95 % confidence band; OR is the "
            "odds ratio per 10-fold increase. Grey ticks: covariate values of the runs.",
            (f"**Risk vs {lab}: trend test**", trend_markdown(trend),
             TREND_NOTE.format(lab=lab))))
    for g in [x for x in (main_group, "policy") if x in groupings] or [None]:
        fname = f"grade_distribution_by_{g or 'all'}.png"
        plots.save(plots.plot_grade_distribution(ep, by=g), out / fname)
        figs.append(Figure(f"Maximal grade by {g or 'all runs'}", fname,
                           GRADE_CAPTION))
    if posterior is not None:
        fname = "risk_over_draws.png"
        plots.save(plots.plot_posterior_risk(posterior), out / fname)
        figs.append(Figure(
            "Risk over posterior draws", fname,
            "Each grey point is one posterior draw's rate (its virtual population); blue "
            "band: the 2.5-97.5 % range of those rates (parameter uncertainty); black: the "
            "pooled rate over all runs with its 95 % Wilson interval (sampling); orange: the "
            "total 95 % interval (two-stage bootstrap: a random draw, then its patients)."))
    fname = f"onset_by_{main_group or 'all'}.png"
    plots.save(plots.plot_onset(ep, by=main_group), out / fname)
    figs.append(Figure("Time to onset", fname, ONSET_CAPTION))
    worst = _pick_patient(ep)
    fname = f"patient_{worst}.png"
    plots.save(plots.plot_patient(ds.abm.patient(worst)), out / fname)
    figs.append(Figure(f"Patient course: {worst} (most severe: highest CRS, then ICANS grade)",
                       fname,
                       "Blood CAR-T and tumour cells in the patch; plasma cytokines (log scale); "
                       "temperature; MAP and SpO2; organ support levels; CRS / ICANS grade; drug "
                       "doses (markers; count in the label)."))
    path = ds.abm.path(worst)
    try:
        fname = f"field_{worst}.png"
        plots.save(plots.plot_field_snapshot(path), out / fname)
        figs.append(Figure(f"Field snapshot: {worst}", fname,
                           "Tissue IL-6 in the patch at the snapshot where it is highest, with the "
                           "cells of that snapshot."))
    except (KeyError, ValueError, FileFormatError) as exc:
        say(f"no field snapshot for {worst} ({exc})", quiet)

    info = batch_info(ds)
    skipped = ds.abm.skipped
    t = np.asarray(ds["time"].values, float)
    n_failed = len([x for x in skipped if x["status"] == "failed"])
    cal, cal_table = _calibration_markdown(ep)
    if cal:
        cal_table.to_csv(out / "calibration.csv", index=False)
    bad = check[check["mismatches"] > 0] if len(check) else check
    varied = [c for c in ds.attrs.get("varied_parameters", "").split(", ") if c]
    text = render_markdown(
        "batch_report.md.j2", batch_name=ds.attrs["batch_name"], written=_utc_now(),
        folder=folder, n_loaded=n, n_runs=ds.attrs["n_runs"], n_failed=n_failed,
        n_other_skipped=len(skipped) - n_failed, info=info,
        design=", ".join(x for x in (info.get("population"), info.get("posterior"),
                                     info.get("sweep")) if x),
        varied=", ".join(f"`{c}`" for c in varied), t_first=f"{t[0]:g}", t_last=f"{t[-1]:g}",
        record_min=f"{ds.abm.record_interval_days * 24 * 60:.3g}",
        software_versions=ds.attrs["software_versions"],
        schema_versions=ds.attrs["schema_versions"], version=software_version(),
        not_available=ep.attrs.get("not_available", ""),
        skipped_table=md_table(["run", "status", "reason"],
                               [[x["run_id"], x["status"], x["reason"]] for x in skipped[:50]])
        if skipped else "",
        n_more_skipped=max(len(skipped) - 50, 0),
        batch_config=ds.attrs.get("batch_config", "").strip(), bootstrap=bootstrap,
        risk_table=_risk_markdown(risk), calibration_note=CALIBRATION_NOTE,
        posterior_table="" if posterior is None else posterior_markdown(
            posterior_frame(posterior), posterior.attrs["by"] or None),
        n_draws=int(posterior.sizes["draw"]) if posterior is not None else 0,
        posterior_by=posterior.attrs["by"] if posterior is not None else "",
        calibration_table=cal or "", summary_table=_summary_markdown(ep, main_group),
        response_day=_response_day(ep), has_trend=trend is not None,
        n_checked=len(check), n_bad=len(bad),
        bad_table=md_table(["endpoint", "runs outside tolerance", "max abs diff", "tolerance",
                            "e.g."], [[r.endpoint, f"{r.mismatches}/{r.n}",
                                       format_num(r.max_abs_diff), r.tolerance, r.runs]
                                      for r in bad.itertuples()]) if len(bad) else "",
        figs=figs)
    return write_report(out, text, html_page, quiet, n_figs=len(figs))


def run_report(path: Path, out, *, html_page: bool, quiet: bool) -> Path:
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
    figs.append(Figure("Patient course", fname,
                       "Blood CAR-T and tumour cells in the patch; plasma cytokines (log scale); "
                       "temperature; MAP and SpO2; organ support levels; CRS / ICANS grade; drug "
                       "doses."))
    try:
        fname = "field.png"
        plots.save(plots.plot_field_snapshot(path), out / fname)
        figs.append(Figure("Field snapshot", fname, "Tissue IL-6 at the snapshot where it is "
                           "highest, with the cells of that snapshot."))
    except (KeyError, ValueError, FileFormatError) as exc:
        say(f"no field snapshot ({exc})", quiet)
    pd.DataFrame([{k: v.item() for k, v in ep.data_vars.items()}]).to_csv(
        out / "endpoints.csv", index=False)
    t = np.asarray(ds["time"].values, float)
    cov = prov.get("covariates") or {}
    cmp = {r.endpoint: r for r in check.itertuples()} if len(check) else {}
    rows = []
    for k, v in ep.data_vars.items():
        f = fe.get(k)
        rows.append([k, format_num(v.item()), v.attrs.get("units", ""),
                     format_num(float(f)) if f is not None else "",
                     ("ok" if cmp[k].ok else "differs") if k in cmp else ""])
    events_table, n_more_events = "", 0
    try:
        ev = open_group(path, "events", load=True)
        if "kind" in ev and ev.sizes.get("event", 0):
            evdf = ev.to_dataframe().reset_index(drop=True)
            events_table = md_table(["day", "kind", "grade", "detail"],
                                    [[format_num(r.time, "{:.3f}"), str(r.kind),
                                      format_num(r.grade), str(r.detail)]
                                     for r in evdf.head(60).itertuples()])
            n_more_events = max(len(evdf) - 60, 0)
    except FileFormatError:
        pass
    text = render_markdown(
        "run_report.md.j2", run_name=prov.get("run_name", path.stem), written=_utc_now(),
        path=path, seed=prov.get("seed"), replicate=prov.get("replicate"),
        complete="yes" if int(prov.get("complete", 0)) == 1 else "no",
        t_first=f"{t[0]:g}", t_last=f"{t[-1]:g}",
        record_min=f"{ds.abm.record_interval_days * 24 * 60:.3g}",
        covariates=", ".join(f"{k} = {format_num(v)}" for k, v in sorted(cov.items())),
        software_version=prov.get("software_version"), schema_version=prov.get("schema_version"),
        not_available=ep.attrs.get("not_available", ""),
        endpoint_table=md_table(["endpoint", "value", "units", "file", "check"], rows),
        events_table=events_table, n_more_events=n_more_events, figs=figs)
    return write_report(out, text, html_page, quiet, n_figs=len(figs))


__all__ = ["batch_report", "run_report", "risk_rows", "md_table", "CALIBRATION",
           "CALIBRATION_OUTCOMES", "BAND_PP", "in_band", "calibration_table",
           "calibration_markdown", "product_costimulation", "trend_markdown"]
