"""Comparison report of two or more batches (virtual trials): ``abm analyze A B --out DIR``.

>>> compare_batches(["runs/trial_cd28", "runs/trial_41bb"], "runs/trials_report")  # doctest: +SKIP
PosixPath('runs/trials_report/report.md')

Each batch folder is one *trial*, labelled by its folder name. The report
(``report.md``, ``report.html``, CSV tables, PNG figures) holds:

* **what was compared**: runs loaded and skipped, products and their
  costimulation, follow-up, description, per trial;
* **simulated versus target**: CRS any, CRS >= 3, ICANS (neurotoxicity) any
  and >= 3 per trial (per trial and product when a batch mixes products) with
  n, k, % and the 95 % Wilson interval next to the docs/model.md section 11 target
  of the product's costimulation (CD28 -> ZUMA-1, 4-1BB -> JULIET) and the
  band verdict of :func:`analysis.calibration.in_band`;
* **onset and rates**: median CRS and ICANS onset [IQR] and risk per trial,
  with tests between each pair of trials: Mann-Whitney U of CRS onset among
  runs with CRS, log-rank of time to CRS onset (runs without CRS censored at
  their end of follow-up), Fisher's exact test of each grade outcome (ICANS
  any grade first); Holm-adjusted p-values over the pairs with three or more
  trials;
* **blood CAR-T kinetics**: median and IQR of ``blood_cart_per_ul`` over time
  per trial with the reference points (axi-cel medians 27.5, 9.1, 2.1 /uL at
  days 7, 14, 28, Kimmel 2021; tisa-cel median peak day ~9.3, Stein 2019) and
  a table of peak, peak day, fold expansion and contraction rate
  (:func:`cart_kinetics`);
* the trend test of risk versus tumour burden per trial, and the grade
  distribution and onset curves overlaid by trial.

Batches are read lazily (:func:`analysis.batch.open_batch`); beyond the
endpoints only ``blood_cart_per_ul`` is read, a block of runs at a time, and
the time course keeps at most :data:`MAX_POINTS` records per trial.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats
from statsmodels.stats.multitest import multipletests

from abm.errors import FileFormatError
from analysis import endpoints as E
from analysis import plots
from analysis.batch import close_files, open_batch
from analysis.batch_info import batch_info
from analysis.calibration import calibration_table, product_costimulation, shortest_follow_up
from analysis.formatting import (covariate_label, format_median_iqr, format_num, format_p,
                                 format_pct, md_table)
from analysis.notes import CALIBRATION_NOTE, GRADE_CAPTION, KINDS, ONSET_CAPTION, TREND_NOTE
from analysis.render import Figure, render_markdown, say, software_version, write_report
from analysis.risk import grade_outcomes, median_iqr, risk_table, trend_table
from analysis.tables import calibration_markdown, trend_markdown

#: Blood CAR-T reference points (docs/model.md section 11): axi-cel medians (day, cells/uL),
#: Kimmel 2021 (Moffitt cohort).
AXICEL_MEDIANS = ((7.0, 27.5), (14.0, 9.1), (28.0, 2.1))
#: tisa-cel (Stein 2019): median peak day, fold expansion, contraction rate (1/day).
TISACEL_KINETICS = {"peak_day": 9.3, "fold_expansion": 3900.0, "contraction_per_day": 0.16}
#: Records kept per trial for the time course of blood CAR-T (every k-th record beyond).
MAX_POINTS = 600
#: Days of records after the peak needed for a contraction rate.
CONTRACTION_MIN_DAYS = 2.0


@dataclass
class Trial:
    """One batch of the comparison: its data, endpoints and blood CAR-T kinetics."""

    label: str
    folder: Path
    ds: xr.Dataset
    ep: xr.Dataset
    costimulation: dict        # product -> "CD28" / "4-1BB" / None
    kinetics: pd.DataFrame     # per run (cart_kinetics)
    course: pd.DataFrame       # time, n, q25, median, q75


# -- blood CAR-T kinetics -----------------------------------------------------------

def run_kinetics(t, cart, *, after_day: float = E.CART_PEAK_AFTER_DAYS,
                 min_tail_days: float = CONTRACTION_MIN_DAYS) -> dict:
    """Expansion and contraction of one run's blood CAR-T level (1-D arrays; NaN ignored).

    Returns ``cart_peak_per_ul, cart_peak_day`` (the expansion peak from
    ``after_day`` after infusion on, as ``blood_cart_peak_*``),
    ``cart_nadir_per_ul`` (lowest positive level after infusion, day > 0, up
    to the peak: the level the expansion starts from once the infused cells
    have distributed), ``cart_fold_expansion`` (peak / nadir; 1 when the
    level only falls) and ``cart_contraction_per_day`` (minus the
    least-squares slope of ln(level) over the records from the peak on; NaN
    unless the run goes on at least ``min_tail_days`` after the peak with 3
    positive records).
    """
    t, c = E.finite_points(t, cart)
    out = dict.fromkeys(("cart_peak_per_ul", "cart_peak_day", "cart_nadir_per_ul",
                         "cart_fold_expansion", "cart_contraction_per_day"), math.nan)
    late = t >= after_day - 1e-9
    if not late.any():
        return out
    peak, day = E.peak(t[late], c[late])
    out["cart_peak_per_ul"], out["cart_peak_day"] = peak, day
    if peak > 0:
        out["cart_nadir_per_ul"], out["cart_fold_expansion"] = E.fold_over_nadir(t, c, day)
    tail = (t >= day - 1e-9) & (c > 0)
    if t[-1] - day >= min_tail_days - 1e-9 and np.count_nonzero(tail) >= 3:
        out["cart_contraction_per_day"] = -float(np.polyfit(t[tail], np.log(c[tail]), 1)[0])
    return out


def cart_kinetics(ds: xr.Dataset, *, var: str = E.CART_VAR, chunk_runs: int = 32,
                  max_points: int = MAX_POINTS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-run kinetics (:func:`run_kinetics`) and the time course over runs of a batch.

    Reads ``var`` a block of ``chunk_runs`` runs at a time. Returns
    ``(per_run, course)``: ``per_run`` indexed by run; ``course`` with
    ``time, n, q25, median, q75`` (runs with a value at that record; at most
    ``max_points`` records, every k-th one). Both empty when ``var`` is not
    recorded.
    """
    cols = ["cart_peak_per_ul", "cart_peak_day", "cart_nadir_per_ul", "cart_fold_expansion",
            "cart_contraction_per_day"]
    if var not in ds.data_vars:
        return (pd.DataFrame(columns=cols, index=pd.Index([], name="run")),
                pd.DataFrame(columns=["time", "n", "q25", "median", "q75"]))
    t = np.asarray(ds["time"].values, float)
    step = max(1, math.ceil(t.size / max_points))
    keep = np.unique(np.r_[np.arange(0, t.size, step), t.size - 1])
    rows, kept = [], []
    n_run = int(ds.sizes["run"])
    for a in range(0, n_run, max(1, int(chunk_runs))):
        block = np.asarray(ds[var].isel(run=slice(a, a + int(chunk_runs))).values, float)
        rows += [run_kinetics(t, row) for row in block]
        kept.append(block[:, keep])
    per_run = pd.DataFrame(rows, columns=cols, index=pd.Index(ds["run"].values, name="run"))
    sub = np.concatenate(kept, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # records without any value
        q = np.nanquantile(sub, [0.25, 0.5, 0.75], axis=0)
    course = pd.DataFrame({"time": t[keep], "n": np.isfinite(sub).sum(axis=0),
                           "q25": q[0], "median": q[1], "q75": q[2]})
    return per_run, course


# -- tests between trials -----------------------------------------------------------

def _mann_whitney(a, b) -> tuple[float, float]:
    a, b = (np.asarray(v, float) for v in (a, b))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan
    r = stats.mannwhitneyu(a, b, alternative="two-sided")
    return float(r.statistic), float(r.pvalue)


def _logrank(onset_a, fu_a, onset_b, fu_b) -> tuple[float, float]:
    """Log-rank test of time to onset; runs without onset censored at their follow-up."""
    def data(onset, fu):
        onset, fu = np.asarray(onset, float), np.asarray(fu, float)
        ok = np.isfinite(onset) | np.isfinite(fu)
        onset, fu = onset[ok], fu[ok]
        event = np.isfinite(onset)
        return np.where(event, onset, fu), event
    ta, ea = data(onset_a, fu_a)
    tb, eb = data(onset_b, fu_b)
    if ta.size == 0 or tb.size == 0 or not (ea.any() or eb.any()):
        return math.nan, math.nan
    cd = [stats.CensoredData.right_censored(tt, ~ee) for tt, ee in ((ta, ea), (tb, eb))]
    r = stats.logrank(cd[0], cd[1], alternative="two-sided")
    return float(r.statistic), float(r.pvalue)


def _fisher(ka, na, kb, nb) -> tuple[float, float]:
    if na == 0 or nb == 0:
        return math.nan, math.nan
    r = stats.fisher_exact([[ka, na - ka], [kb, nb - kb]], alternative="two-sided")
    return float(r.statistic), float(r.pvalue)


def holm(p) -> np.ndarray:
    """Holm step-down adjusted p-values (NaN kept as NaN), by
    :func:`statsmodels.stats.multitest.multipletests` (``method="holm"``)."""
    p = np.asarray(p, float)
    out = np.full(p.shape, math.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def trial_tests(table: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Tests between each pair of trials (``table``: one row per run with ``trial``).

    Rows: ``comparison, endpoint, test, statistic, p`` (and ``p_holm`` over
    the pairs, for each endpoint and test). Endpoints: CRS onset day among
    runs with CRS (Mann-Whitney U, two-sided; statistic U of the first
    trial), time to CRS onset over all runs (log-rank; statistic ``z =
    (O - E) / sqrt(V)`` of the first trial: > 0 when its onsets come
    earlier), and
    ICANS any / >= 3, CRS any / >= 3 (Fisher's exact test, two-sided;
    statistic the odds ratio of the first trial against the second).
    """
    rows = []
    sel = {lab: table[table["trial"] == lab] for lab in labels}

    def col(df, name):
        return df[name].to_numpy(float) if name in df else np.full(len(df), np.nan)
    for a, b in itertools.combinations(labels, 2):
        A, B = sel[a], sel[b]
        comp = f"{a} vs {b}"
        u, p = _mann_whitney(col(A, "crs_onset_day"), col(B, "crs_onset_day"))
        rows.append([comp, "CRS onset day (runs with CRS)", "Mann-Whitney U", u, p])
        z, p = _logrank(col(A, "crs_onset_day"), col(A, "follow_up_day"),
                        col(B, "crs_onset_day"), col(B, "follow_up_day"))
        rows.append([comp, "time to CRS onset (all runs)", "log-rank", z, p])
        for o in sorted(grade_outcomes(KINDS), key=lambda o: (o.endpoint != "icans_max_grade",
                                                                o.endpoint, o.threshold)):
            ea, eb = (o.events(col(X, o.endpoint)) for X in (A, B))
            ea, eb = ea[np.isfinite(ea)], eb[np.isfinite(eb)]
            odds, p = _fisher(int(ea.sum()), ea.size, int(eb.sum()), eb.size)
            rows.append([comp, o.label, "Fisher exact", odds, p])
    df = pd.DataFrame(rows, columns=["comparison", "endpoint", "test", "statistic", "p"])
    if len(labels) > 2:
        df["p_holm"] = np.nan
        for _, idx in df.groupby(["endpoint", "test"]).groups.items():
            df.loc[idx, "p_holm"] = holm(df.loc[idx, "p"].to_numpy())
    return df


# -- the report --------------------------------------------------------------------

def _labels(folders: list[Path]) -> list[str]:
    labels = []
    for f in folders:
        lab = f.name or str(f)
        while lab in labels:
            lab = f"{lab} ({len(labels) + 1})"
        labels.append(lab)
    return labels


def _check_sources(sources) -> list[Path]:
    folders = [Path(s) for s in sources]
    if len(folders) < 2:
        raise FileFormatError("a comparison needs two or more batch folders")
    for f in folders:
        if not f.exists():
            raise FileFormatError(f"{f}: no such file or folder")
        if not f.is_dir():
            raise FileFormatError(f"{f}: not a batch folder (a comparison takes batch folders; "
                                  "report one run file on its own)")
    return folders


def _load(folder: Path, label: str, progress, quiet) -> Trial:
    say(f"reading {folder} ...", quiet)
    ds = open_batch(folder, progress=progress)
    say(f"{label}: {int(ds.sizes['run'])} runs loaded ({ds.attrs['n_skipped']} skipped); "
         "computing endpoints ...", quiet)
    ep = ds.abm.endpoints(progress=progress)
    say(f"{label}: blood CAR-T kinetics ...", quiet)
    per_run, course = cart_kinetics(ds)
    return Trial(label, folder, ds, ep, product_costimulation(ep), per_run, course)


def _run_table(trials: list[Trial]) -> pd.DataFrame:
    """One row per run of every trial: ``trial, run``, endpoints, covariates, kinetics."""
    frames = []
    for tr in trials:
        df = tr.ep.reset_coords().to_dataframe()
        extra = tr.kinetics.drop(columns=["cart_peak_per_ul", "cart_peak_day"], errors="ignore")
        df = df.join(extra) if len(extra) else df
        df = df.reset_index()
        df.insert(0, "trial", tr.label)
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    arm = table["trial"].astype(str)
    mixed = {tr.label for tr in trials if len(tr.costimulation) > 1}
    if mixed and "product" in table:
        arm = np.where(arm.isin(mixed), arm + " / " + table["product"].astype(str), arm)
    table.insert(1, "arm", arm)
    return table


def _as_dataset(table: pd.DataFrame, covariate: str) -> xr.Dataset:
    """The columns the risk tables and figures use, as a per-run Dataset."""
    keep = [c for c in table.columns if c.startswith(KINDS) or c in (
        "follow_up_day", covariate, "blood_cart_peak_per_ul", "blood_cart_peak_day")]
    data = {c: ("run", pd.to_numeric(table[c], errors="coerce").to_numpy(float)) for c in keep}
    coords = {c: ("run", table[c].astype(str).to_numpy(dtype=object))
              for c in ("trial", "arm", "product") if c in table}
    return xr.Dataset(data, coords=coords)


def _what_was_compared(trials: list[Trial]) -> str:
    rows = []
    for tr in trials:
        ds, info = tr.ds, batch_info(tr.ds)
        t = np.asarray(ds["time"].values, float)
        prods = ", ".join(f"{p} ({c or 'no target'})" for p, c in tr.costimulation.items())
        rows.append([tr.label, f"`{tr.folder}`",
                     f"{int(ds.sizes['run'])} of {ds.attrs['n_runs']}",
                     str(ds.attrs["n_skipped"]), prods or "n/a",
                     f"day {t[0]:g} to {t[-1]:g}", info["description"] or ""])
    return md_table(["trial", "folder", "runs loaded", "skipped", "products (costimulation)",
                     "follow-up", "description"], rows)


def _onset_markdown(table: pd.DataFrame, risk: pd.DataFrame, labels: list[str]) -> str:
    rows = []
    for lab in labels:
        sub = table[table["trial"] == lab]
        cells = [lab, str(len(sub))]
        for kind in KINDS:
            r = risk[(risk["group"] == lab) & (risk["endpoint"] == f"{kind}_max_grade")
                     & (risk["threshold"] == 1)].iloc[0]
            if not r["available"]:
                cells += ["not available", "n/a"]
                continue
            cells += [format_pct(r["p"], r["lo"], r["hi"], int(r["k"]), int(r["n"])),
                      format_median_iqr(sub[f"{kind}_onset_day"].to_numpy(float), "{:.2g}")]
        rows.append(cells)
    return md_table(["trial", "n", "CRS any grade % (95 % CI) k/n",
                     "CRS onset, median day [IQR]", "ICANS any grade % (95 % CI) k/n",
                     "ICANS onset, median day [IQR]"], rows)


def _tests_markdown(tests: pd.DataFrame) -> str:
    holm_col = "p_holm" in tests
    rows = []
    for r in tests.itertuples():
        stat = ("n/a" if not np.isfinite(r.statistic) else
                f"OR {format_num(r.statistic)}" if r.test == "Fisher exact" else
                f"U = {r.statistic:g}" if r.test.startswith("Mann") else f"z = {r.statistic:+.2f}")
        rows.append([r.comparison, r.endpoint, r.test, stat, format_p(r.p)]
                    + ([format_p(r.p_holm)] if holm_col else []))
    return md_table(["comparison", "endpoint", "test", "statistic", "p (two-sided)"]
                    + (["p (Holm)"] if holm_col else []), rows)


def kinetics_summary(table: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Per trial: medians and IQRs of peak, peak day, fold expansion, contraction, day 7/14/28."""
    items = (("peak", "blood_cart_peak_per_ul"), ("peak_day", "blood_cart_peak_day"),
             ("fold_expansion", "cart_fold_expansion"),
             ("contraction_per_day", "cart_contraction_per_day"),
             ("day7", "blood_cart_day7_per_ul"), ("day14", "blood_cart_day14_per_ul"),
             ("day28", "blood_cart_day28_per_ul"))
    rows = []
    for lab in labels:
        sub = table[table["trial"] == lab]
        r = {"trial": lab, "n": len(sub)}
        for name, col in items:
            v = pd.to_numeric(sub[col], errors="coerce").to_numpy(float) if col in sub \
                else np.array([])
            r[f"{name}_median"], r[f"{name}_q25"], r[f"{name}_q75"] = median_iqr(v)
            r[f"{name}_n"] = int(np.isfinite(v).sum())
        rows.append(r)
    return pd.DataFrame(rows)


def _kinetics_markdown(summary: pd.DataFrame) -> str:
    def cell(r, name, fmt="{:.3g}"):
        med = r[f"{name}_median"]
        if not np.isfinite(med):
            return "n/a"
        return f"{fmt.format(med)} [{fmt.format(r[f'{name}_q25'])}, " \
               f"{fmt.format(r[f'{name}_q75'])}]"
    rows = []
    for _, r in summary.iterrows():
        rows.append([r["trial"], str(r["n"]), cell(r, "peak"), cell(r, "peak_day", "{:.2g}"),
                     cell(r, "fold_expansion"),
                     cell(r, "contraction_per_day", "{:.2g}") + f" (n = {r['contraction_per_day_n']})",
                     cell(r, "day7"), cell(r, "day14"), cell(r, "day28")])
    d = dict(AXICEL_MEDIANS)
    rows.append(["reference: axi-cel (CD28), Kimmel 2021, medians", "", "", "", "", "",
                 f"{d[7.0]:g}", f"{d[14.0]:g}", f"{d[28.0]:g}"])
    k = TISACEL_KINETICS
    rows.append(["reference: tisa-cel (4-1BB), Stein 2019", "", "",
                 f"~{k['peak_day']:g}", f"~{k['fold_expansion']:g}",
                 f"~{k['contraction_per_day']:g}", "", "", ""])
    return md_table(["trial", "n", "peak, cells/uL", "peak day", "fold expansion",
                     "contraction rate, 1/day", "day 7, cells/uL", "day 14, cells/uL",
                     "day 28, cells/uL"], rows)


def compare_batches(sources, out=None, *, covariate: str = "burden_cells",
                    html_page: bool = True, bootstrap: int = 0, progress: bool | None = None,
                    quiet: bool = True) -> Path:
    """Write the comparison report of two or more batch folders; returns ``report.md``.

    Args:
        sources: batch folders, one trial each (labelled by folder name).
        out: report folder (default: ``compare_<a>_vs_<b>...`` beside the
            first folder).
        covariate: covariate of the trend test (per trial).
        bootstrap: if > 0, percentile bootstrap intervals in ``risk.csv``.
        progress, quiet: as :func:`analysis.analyze.analyze`.

    Raises:
        FileFormatError: fewer than two sources, a path that is not a folder,
            a folder without complete runs (one line, naming the path).
    """
    folders = _check_sources(sources)
    labels = _labels(folders)
    out = Path(out) if out else folders[0].parent / ("compare_" + "_vs_".join(
        lab.replace(" ", "_") for lab in labels))
    try:
        trials = [_load(f, lab, progress, quiet) for f, lab in zip(folders, labels)]
        try:   # a covariate may be named by its config key (patient.tumour_burden_cells)
            covariate = trials[0].ds.abm.covariate_name(covariate)
        except KeyError:
            pass
        return _write_report(trials, out, covariate=covariate, html_page=html_page,
                             bootstrap=bootstrap, quiet=quiet)
    finally:
        close_files()


def _write_report(trials: list[Trial], out: Path, *, covariate, html_page, bootstrap,
                  quiet) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    labels = [tr.label for tr in trials]
    table = _run_table(trials)
    ep = _as_dataset(table, covariate)
    outcomes = grade_outcomes(KINDS)
    risk = risk_table(ep, outcomes, by="trial", bootstrap=bootstrap)
    arms = risk_table(ep, outcomes, by="arm")
    costim = {}
    for tr in trials:
        for prod, c in tr.costimulation.items():
            arm = tr.label if len(tr.costimulation) == 1 else f"{tr.label} / {prod}"
            costim[arm] = c
    cal = calibration_table(arms, costim, follow_up=shortest_follow_up(ep, "arm"))
    tests = trial_tests(table, labels)
    kin = kinetics_summary(table, labels)
    trend = None
    if covariate in ep:
        trend = trend_table(ep, covariate, outcomes, by="trial")
        trend = trend.iloc[np.argsort(trend["group"].map(labels.index).to_numpy(),
                                      kind="stable")].reset_index(drop=True)
        trend.to_csv(out / "trend.csv", index=False)
    table.to_csv(out / "endpoints.csv", index=False)
    risk.to_csv(out / "risk.csv", index=False)
    cal.to_csv(out / "calibration.csv", index=False)
    tests.to_csv(out / "tests.csv", index=False)
    kin.to_csv(out / "kinetics.csv", index=False)
    pd.concat([tr.course.assign(trial=tr.label) for tr in trials], ignore_index=True).to_csv(
        out / "blood_cart_course.csv", index=False)

    say("drawing figures ...", quiet)
    figs = []
    fname = "blood_cart_by_trial.png"
    plots.save(plots.plot_cart_course({tr.label: tr.course for tr in trials},
                                      n_runs={tr.label: int(tr.ds.sizes["run"]) for tr in trials},
                                      points=AXICEL_MEDIANS,
                                      points_label="axi-cel medians (Kimmel 2021)",
                                      vline=TISACEL_KINETICS["peak_day"],
                                      vline_label="tisa-cel median peak day ~9.3 (Stein 2019)"),
               out / fname)
    figs.append(Figure(
        "Blood CAR-T kinetics by trial", fname,
        "Median (line) and interquartile range (band) over the runs of each trial of CAR-T "
        "cells per µL of blood (log scale; zero levels not drawn). Black diamonds: axi-cel "
        "median levels at days 7, 14 and 28 (Kimmel 2021); dashed line: tisa-cel median peak "
        "day (Stein 2019)."))
    fname = "grade_distribution_by_trial.png"
    plots.save(plots.plot_grade_distribution(ep, by="trial"), out / fname)
    figs.append(Figure("Maximal grade by trial", fname, GRADE_CAPTION))
    fname = "onset_by_trial.png"
    plots.save(plots.plot_onset(ep, by="trial"), out / fname)
    figs.append(Figure("Time to onset by trial", fname, ONSET_CAPTION))

    short = [tr.label for tr in trials if float(tr.ds["time"].values[-1]) < 28 - 1e-6]
    text = render_markdown(
        "compare_report.md.j2", title_labels=" vs ".join(f"`{lab}`" for lab in labels),
        version=software_version(),
        written=f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M}",
        folders=", ".join(f"`{tr.folder}`" for tr in trials),
        compared_table=_what_was_compared(trials), short=", ".join(short),
        calibration_note=CALIBRATION_NOTE,
        calibration_table=calibration_markdown(cal, "trial") if len(cal) else "",
        onset_table=_onset_markdown(table, risk, labels), holm=len(labels) > 2,
        tests_table=_tests_markdown(tests), contraction_min_days=f"{CONTRACTION_MIN_DAYS:g}",
        kinetics_table=_kinetics_markdown(kin),
        covariate_label=covariate_label(covariate),
        trend_table=trend_markdown(trend, "trial") if trend is not None else "",
        trend_note=TREND_NOTE.format(lab=covariate_label(covariate)), figs=figs)
    return write_report(out, text, html_page, quiet, n_figs=len(figs))


__all__ = ["compare_batches", "cart_kinetics", "run_kinetics", "trial_tests",
           "kinetics_summary", "holm", "AXICEL_MEDIANS", "TISACEL_KINETICS"]
