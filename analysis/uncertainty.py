"""Population risk with parameter uncertainty: a virtual population over posterior draws.

A batch with ``[batch.posterior]`` runs the same virtual population (``N``
patients) under each of ``D`` parameter draws of a calibration; every run
carries its draw index (the ``draw`` coordinate of :func:`analysis.open_batch`,
from the manifest). For each rate -- CRS any grade, CRS >= 3, ICANS any
grade, ICANS >= 3, ORR (best overall response CR or PR) and CR -- three
intervals are reported beside each other (all at level ``conf``, 95 % by
default):

* **sampling** (``lo, hi``): the Wilson score interval of the pooled rate
  ``k / n`` over every run, as in :func:`analysis.risk.risk_table`: the
  Monte Carlo error of the simulated population's rate, taking the runs as
  independent.
* **parameter** (``param_lo, param_hi``): the central ``conf`` range of the
  ``D`` per-draw rates ``k_d / n_d`` (2.5-97.5 % percentiles for 95 %,
  :func:`numpy.quantile` with linear interpolation; with few draws it is
  close to their minimum and maximum): how the population's rate moves with
  the parameters still compatible with the calibration targets. Each per-draw
  rate carries the sampling noise of its ``N`` patients too.
* **total** (``total_lo, total_hi``): a two-stage (hierarchical) bootstrap:
  pick a draw at random (stage 1: draws resampled with replacement), then
  resample its ``n_d`` patients with replacement (stage 2; for a yes/no
  outcome the count of events is then ``Binomial(n_d, k_d / n_d)``), and take
  that resample's rate; the central ``conf`` range of ``n_boot`` such rates.
  It is the spread of the risk a population of this kind may have under
  uncertain parameters, with the finite simulated population's sampling
  error added: the distribution of per-draw rates widened by each draw's own
  binomial error. It is conservative: the per-draw rates already hold part of
  that error (variance about ``p (1 - p) / N``), which stage 2 adds once more.

Also kept (dataset and CSV, not the report table): ``pooled_boot_lo,
pooled_boot_hi``, the same two-stage bootstrap applied to the *pooled* rate
(resample ``D`` draws, then the patients of each, and pool): the interval of
the posterior-mean risk that allows for the runs being clustered in draws,
which the Wilson interval ignores. It narrows as draws are added, so it is not
an interval for the risk itself.

Everything works on a plain per-run table (a DataFrame, or the Dataset of
``ds.abm.endpoints()``) with a draw column, so it is testable without run
files. The bootstrap uses :func:`numpy.random.default_rng` seeded by ``seed``:
the same table gives the same intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from analysis.risk import CONF, _column, grade_outcomes, group_order, wilson_interval

#: Bootstrap resamples of the total interval by default.
N_BOOT = 4000
#: Column of the draw index in a per-run table.
DRAW = "draw"


@dataclass(frozen=True)
class ResponseOutcome:
    """A yes/no outcome from a text endpoint: ``endpoint`` in ``values``.

    Runs whose endpoint is empty or missing (no tumour recorded) are not counted.
    """

    endpoint: str
    values: tuple[str, ...]
    label: str
    threshold: float = math.nan

    def events(self, values) -> np.ndarray:
        v = np.asarray(values, dtype=object)
        out = np.full(v.shape, np.nan)
        known = np.array([x is not None and str(x) not in ("", "nan", "None") for x in v.ravel()],
                         dtype=bool).reshape(v.shape)
        hit = np.array([str(x) in self.values for x in v.ravel()], dtype=bool).reshape(v.shape)
        out[known] = hit[known].astype(float)
        return out


def posterior_outcomes() -> list:
    """CRS any / >= 3, ICANS any / >= 3 (:func:`grade_outcomes`), ORR and CR."""
    return grade_outcomes(("crs", "icans")) + [
        ResponseOutcome("best_response", ("CR", "PR"), "ORR (best response CR or PR)"),
        ResponseOutcome("best_response", ("CR",), "CR (best response)")]


def has_draws(table, draw: str = DRAW) -> bool:
    """Whether a per-run table has a draw column (a batch over posterior draws)."""
    col = _column(table, draw)
    return col is not None and len(col) > 0


def parameter_interval(rates, conf: float = CONF) -> tuple[float, float]:
    """Central ``conf`` range of per-draw rates (NaN ones dropped)."""
    r = np.asarray(rates, float)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return math.nan, math.nan
    a = (1.0 - conf) / 2.0
    lo, hi = np.quantile(r, [a, 1.0 - a])
    return float(lo), float(hi)


def total_interval(k, n, conf: float = CONF, *, n_boot: int = N_BOOT,
                   rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Two-stage bootstrap interval of one draw's rate: a random draw, then its patients.

    ``k[d]`` events in ``n[d]`` runs of draw ``d`` (draws with ``n = 0`` dropped).
    """
    k, n = _counts(k, n)
    if n.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(0) if rng is None else rng
    d = rng.integers(0, n.size, size=int(n_boot))
    rates = rng.binomial(n[d], k[d] / n[d]) / n[d]
    a = (1.0 - conf) / 2.0
    lo, hi = np.quantile(rates, [a, 1.0 - a])
    return float(lo), float(hi)


def pooled_bootstrap_interval(k, n, conf: float = CONF, *, n_boot: int = N_BOOT,
                              rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Two-stage bootstrap interval of the pooled rate: resample the draws, then the
    patients of each, and pool (the posterior-mean risk, allowing for clustering)."""
    k, n = _counts(k, n)
    if n.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(0) if rng is None else rng
    d = rng.integers(0, n.size, size=(int(n_boot), n.size))
    kk = rng.binomial(n[d], k[d] / n[d])
    rates = kk.sum(axis=1) / n[d].sum(axis=1)
    a = (1.0 - conf) / 2.0
    lo, hi = np.quantile(rates, [a, 1.0 - a])
    return float(lo), float(hi)


def _counts(k, n) -> tuple[np.ndarray, np.ndarray]:
    k = np.asarray(k, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    ok = n > 0
    return k[ok], n[ok]


def _draw_index(x) -> int:
    """A draw index from a table cell; -1 for a run without one (None, NaN, "")."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return -1
    return int(v) if math.isfinite(v) else -1


def _n_rows(table) -> int:
    return len(table) if isinstance(table, pd.DataFrame) else \
        int(next(iter(table.sizes.values()), 0))


def posterior_risk(table, outcomes=None, *, by: str | None = None, draw: str = DRAW,
                   conf: float = CONF, n_boot: int = N_BOOT, seed: int = 0) -> xr.Dataset:
    """Per-draw and pooled rates with sampling, parameter and total intervals.

    Args:
        table: per-run endpoints with a ``draw`` column (a DataFrame, or the
            Dataset of ``ds.abm.endpoints()`` of a batch with posterior draws).
        outcomes: default :func:`posterior_outcomes` (the six rates).
        by: a column to group by (e.g. ``product``), or None for all runs.
        draw: the draw column.
        conf: level of every interval.
        n_boot: bootstrap resamples; seed: their generator's seed.

    Returns:
        Dataset with dims ``group, outcome, draw``: ``draw_n, draw_k,
        draw_p`` (runs, events and rate of each draw; NaN rate where a draw
        has no run), and over ``group, outcome``: ``n, k, p, lo, hi`` (pooled,
        Wilson), ``n_draws`` (draws with runs), ``draw_median``,
        ``param_lo, param_hi``, ``total_lo, total_hi``, ``pooled_boot_lo,
        pooled_boot_hi`` and ``available`` (False: the endpoint is absent or
        NaN in every run). ``attrs`` state the level and the methods.
    """
    outcomes = posterior_outcomes() if outcomes is None else list(outcomes)
    draws_col = _column(table, draw)
    if draws_col is None:
        raise KeyError(f"no column {draw!r}: not a batch over posterior draws")
    dvals = np.array([_draw_index(x) for x in np.asarray(draws_col, dtype=object)],
                     dtype=np.int64)
    draw_ids = sorted({int(x) for x in dvals if x >= 0})
    n_rows = _n_rows(table)
    groups_col = _column(table, by) if by is not None else None
    if by is not None and groups_col is None:
        raise KeyError(f"no column {by!r} to group by")
    groups = ["all"] if groups_col is None else [str(g) for g in group_order(groups_col)]
    gvals = None if groups_col is None else np.asarray(groups_col, dtype=object).astype(str)
    shape = (len(groups), len(outcomes), len(draw_ids))
    dn = np.zeros(shape, np.int64)
    dk = np.zeros(shape, np.int64)
    scalars = {name: np.full(shape[:2], math.nan) for name in (
        "p", "lo", "hi", "draw_median", "param_lo", "param_hi", "total_lo", "total_hi",
        "pooled_boot_lo", "pooled_boot_hi")}
    n_tot = np.zeros(shape[:2], np.int64)
    k_tot = np.zeros(shape[:2], np.int64)
    n_draws = np.zeros(shape[:2], np.int64)
    available = np.zeros(shape[:2], bool)
    rng = np.random.default_rng(seed)
    index = {d: j for j, d in enumerate(draw_ids)}
    dpos = np.array([index.get(int(x), -1) for x in dvals], dtype=np.int64)
    for o_i, o in enumerate(outcomes):
        col = _column(table, o.endpoint)
        events = o.events(np.asarray(col)) if col is not None else np.full(n_rows, np.nan)
        ok = np.isfinite(events)
        available[:, o_i] = bool(ok.any())
        for g_i, g in enumerate(groups):
            sel = ok & (dpos >= 0) & (True if gvals is None else gvals == g)
            dn[g_i, o_i] = np.bincount(dpos[sel], minlength=len(draw_ids))
            dk[g_i, o_i] = np.bincount(dpos[sel], weights=events[sel],
                                       minlength=len(draw_ids)).round().astype(np.int64)
            n, k = int(dn[g_i, o_i].sum()), int(dk[g_i, o_i].sum())
            n_tot[g_i, o_i], k_tot[g_i, o_i] = n, k
            has = dn[g_i, o_i] > 0
            n_draws[g_i, o_i] = int(has.sum())
            if n == 0:
                continue
            rates = dk[g_i, o_i][has] / dn[g_i, o_i][has]
            lo, hi = wilson_interval(k, n, conf)
            s = scalars
            s["p"][g_i, o_i], s["lo"][g_i, o_i], s["hi"][g_i, o_i] = k / n, lo, hi
            s["draw_median"][g_i, o_i] = float(np.median(rates))
            s["param_lo"][g_i, o_i], s["param_hi"][g_i, o_i] = parameter_interval(rates, conf)
            s["total_lo"][g_i, o_i], s["total_hi"][g_i, o_i] = total_interval(
                dk[g_i, o_i], dn[g_i, o_i], conf, n_boot=n_boot, rng=rng)
            s["pooled_boot_lo"][g_i, o_i], s["pooled_boot_hi"][g_i, o_i] = \
                pooled_bootstrap_interval(dk[g_i, o_i], dn[g_i, o_i], conf, n_boot=n_boot,
                                          rng=rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        dp = np.where(dn > 0, dk / np.maximum(dn, 1), np.nan)
    pct = f"{100 * conf:g} %"
    a = 100 * (1 - conf) / 2
    gd, god = ("group", "outcome"), ("group", "outcome", "draw")
    data = {
        "draw_n": (god, dn, {"long_name": "runs of the draw with the outcome known"}),
        "draw_k": (god, dk, {"long_name": "runs of the draw with the outcome"}),
        "draw_p": (god, dp, {"long_name": "rate of the draw", "units": "1"}),
        "n": (gd, n_tot, {"long_name": "runs with the outcome known, all draws"}),
        "k": (gd, k_tot, {"long_name": "runs with the outcome, all draws"}),
        "p": (gd, scalars["p"], {"long_name": "pooled rate", "units": "1"}),
        "lo": (gd, scalars["lo"], {"long_name": f"pooled rate, {pct} Wilson interval: low"}),
        "hi": (gd, scalars["hi"], {"long_name": f"pooled rate, {pct} Wilson interval: high"}),
        "n_draws": (gd, n_draws, {"long_name": "draws with runs"}),
        "draw_median": (gd, scalars["draw_median"], {"long_name": "median per-draw rate"}),
        "param_lo": (gd, scalars["param_lo"],
                     {"long_name": f"per-draw rates, {a:g} % percentile"}),
        "param_hi": (gd, scalars["param_hi"],
                     {"long_name": f"per-draw rates, {100 - a:g} % percentile"}),
        "total_lo": (gd, scalars["total_lo"],
                     {"long_name": f"total {pct} interval (two-stage bootstrap): low"}),
        "total_hi": (gd, scalars["total_hi"],
                     {"long_name": f"total {pct} interval (two-stage bootstrap): high"}),
        "pooled_boot_lo": (gd, scalars["pooled_boot_lo"],
                           {"long_name": f"pooled rate, {pct} two-stage bootstrap: low"}),
        "pooled_boot_hi": (gd, scalars["pooled_boot_hi"],
                           {"long_name": f"pooled rate, {pct} two-stage bootstrap: high"}),
        "available": (gd, available, {"long_name": "endpoint recorded in some run"}),
    }
    ds = xr.Dataset(data, coords={
        "group": ("group", np.array(groups, dtype=object)),
        "outcome": ("outcome", np.array([o.label for o in outcomes], dtype=object)),
        "endpoint": ("outcome", np.array([o.endpoint for o in outcomes], dtype=object)),
        "draw": ("draw", np.array(draw_ids, dtype=np.int64))})
    ds.attrs.update({
        "conf": float(conf), "by": by or "", "n_boot": int(n_boot), "seed": int(seed),
        "sampling_method": "Wilson score interval of the pooled rate",
        "parameter_method": f"{a:g}-{100 - a:g} % percentiles of the per-draw rates "
                            "(numpy.quantile, linear)",
        "total_method": "two-stage bootstrap: a draw resampled at random, then its patients "
                        "with replacement (Binomial(n_d, k_d / n_d)); percentiles of that "
                        "resample's rate",
        "pooled_boot_method": "two-stage bootstrap of the pooled rate: draws resampled with "
                              "replacement, then the patients of each; percentiles",
    })
    return ds


#: Columns of :func:`posterior_frame`.
FRAME_COLUMNS = ("group", "outcome", "endpoint", "n", "k", "p", "lo", "hi", "n_draws",
                 "draw_median", "param_lo", "param_hi", "total_lo", "total_hi",
                 "pooled_boot_lo", "pooled_boot_hi", "available")


def posterior_frame(ds: xr.Dataset) -> pd.DataFrame:
    """:func:`posterior_risk` as one row per (group, outcome) (:data:`FRAME_COLUMNS`)."""
    rows = []
    for g in ds["group"].values:
        for o in ds["outcome"].values:
            r = ds.sel(group=g, outcome=o)
            row = {"group": g, "outcome": o, "endpoint": str(r["endpoint"].values)}
            for c in FRAME_COLUMNS[3:]:
                v = r[c].values.item()
                row[c] = v
            rows.append(row)
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


def draws_frame(ds: xr.Dataset) -> pd.DataFrame:
    """The per-draw rates of :func:`posterior_risk`: ``group, outcome, draw, n, k, p``."""
    df = ds[["draw_n", "draw_k", "draw_p"]].reset_coords(drop=True).to_dataframe().reset_index()
    df = df.rename(columns={"draw_n": "n", "draw_k": "k", "draw_p": "p"})
    return df[["group", "outcome", "draw", "n", "k", "p"]]


__all__ = ["ResponseOutcome", "posterior_outcomes", "has_draws", "parameter_interval",
           "total_interval", "pooled_bootstrap_interval", "posterior_risk", "posterior_frame",
           "draws_frame", "FRAME_COLUMNS", "N_BOOT", "DRAW"]
