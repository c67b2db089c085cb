"""Population risk: proportions with intervals, risk versus a covariate, time to onset.

Everything here works on plain arrays (one value per run) and returns
:class:`pandas.DataFrame` tables or small dataclasses, so it is testable
without run files. The usual inputs are the per-run endpoints of
``ds.abm.endpoints()`` (:mod:`analysis.accessor`).

Formulas (``z`` = the normal quantile, 1.96 for 95 %):

* **Wilson score interval** for ``k`` events in ``n`` runs, ``p = k / n``::

      centre = (p + z^2 / (2n)) / (1 + z^2 / n)
      half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))

  It stays inside [0, 1] and keeps close to nominal coverage for small ``n``
  and ``p`` near 0 or 1, where the Wald interval fails.
* **Logistic curve** ``P(y = 1 | x) = expit(b0 + b1 log10 x)`` fitted by
  iteratively reweighted least squares (Newton on the log-likelihood), by
  default with Firth's bias reduction (adds ``h_i (1/2 - p_i)`` to the score,
  ``h`` the hat-matrix diagonal), which keeps estimates finite when the
  outcome separates perfectly and reduces small-sample bias. The 95 % band
  is ``expit(eta +- z se(eta))`` with ``se(eta)^2 = g' Cov g``, ``g = (1,
  log10 x)`` and ``Cov`` the inverse Fisher information (delta method on the
  linear predictor).
* **Cumulative incidence of onset**: ``1 - S(t)``, ``S`` the Kaplan-Meier
  estimate with runs that never reach the grade censored at the end of their
  follow-up; Greenwood variance with the log(-log) transform for the interval
  (no competing risks).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special, stats

#: Default confidence level.
CONF = 0.95


def _z(conf: float) -> float:
    return float(stats.norm.ppf(0.5 + conf / 2.0))


# -- proportions ----------------------------------------------------------------

def wilson_interval(k, n, conf: float = CONF):
    """Wilson score interval for ``k`` successes in ``n`` trials (arrays broadcast).

    Returns ``(lo, hi)``; NaN where ``n == 0``.

    >>> lo, hi = wilson_interval(0, 10)
    >>> float(lo), round(float(hi), 4)
    (0.0, 0.2775)
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    z = _z(conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2.0 * n)) / denom
        half = z / denom * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
        lo = np.clip(centre - half, 0.0, 1.0)
        hi = np.clip(centre + half, 0.0, 1.0)
    # exact ends: k = 0 gives lo = 0 and k = n gives hi = 1 (no rounding residue)
    lo = np.where(k == 0, 0.0, lo)
    hi = np.where(k == n, 1.0, hi)
    bad = ~(n > 0)
    lo = np.where(bad, np.nan, lo)
    hi = np.where(bad, np.nan, hi)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def bootstrap_interval(y, *, conf: float = CONF, n_boot: int = 2000, seed: int = 0,
                       stat=np.mean):
    """Percentile bootstrap interval of ``stat(y)`` (``y`` one value per run, NaN dropped)."""
    y = np.asarray(y, dtype=float)
    y = y[np.isfinite(y)]
    if y.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, y.size, size=(n_boot, y.size))
    boots = stat(y[idx], axis=1)
    a = (1.0 - conf) / 2.0
    return float(np.quantile(boots, a)), float(np.quantile(boots, 1.0 - a))


def proportion(events, *, conf: float = CONF, bootstrap: int = 0, seed: int = 0) -> dict:
    """``n, k, p, lo, hi`` (Wilson) of a boolean array; NaN entries are not counted.

    With ``bootstrap > 0`` also ``boot_lo, boot_hi`` (percentile bootstrap).
    """
    e = np.asarray(events, dtype=float)
    e = e[np.isfinite(e)]
    n, k = int(e.size), int(np.count_nonzero(e))
    lo, hi = wilson_interval(k, n, conf)
    out = {"n": n, "k": k, "p": k / n if n else math.nan, "lo": lo, "hi": hi}
    if bootstrap:
        out["boot_lo"], out["boot_hi"] = bootstrap_interval(e, conf=conf, n_boot=bootstrap,
                                                            seed=seed)
    return out


@dataclass(frozen=True)
class Outcome:
    """A binary outcome from an endpoint: ``endpoint >= threshold``.

    Example: ``Outcome("crs_max_grade", 3, "CRS grade >= 3")``.
    """

    endpoint: str
    threshold: float
    label: str

    def events(self, values) -> np.ndarray:
        """1.0 / 0.0 per run, NaN where the endpoint is NaN (not available)."""
        v = np.asarray(values, dtype=float)
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(v), (v >= self.threshold).astype(float), np.nan)


def grade_outcomes(kinds=("crs", "icans"), thresholds=(1, 3)) -> list[Outcome]:
    """``<kind>_max_grade >= k`` outcomes: any grade (k = 1) and grade >= 3 by default."""
    out = []
    for kind in kinds:
        for k in thresholds:
            label = f"{kind.upper()} any grade" if k == 1 else f"{kind.upper()} grade >= {k:g}"
            out.append(Outcome(f"{kind}_max_grade", k, label))
    return out


def _column(table, name):
    if isinstance(table, pd.DataFrame):
        return table[name].to_numpy() if name in table.columns else None
    return np.asarray(table[name].values) if name in table else None


def risk_table(table, outcomes=None, by=None, *, conf: float = CONF, bootstrap: int = 0,
               seed: int = 0) -> pd.DataFrame:
    """Risk of each outcome, overall or per group, with Wilson intervals.

    Args:
        table: per-run endpoints (a :class:`pandas.DataFrame` or an
            :class:`xarray.Dataset` with one dimension).
        outcomes: :class:`Outcome` list (default: CRS and ICANS, any grade and
            grade >= 3).
        by: a column / variable to group by (strings or numbers), or None.
        bootstrap: if > 0, also a percentile bootstrap interval with that many
            resamples.

    Returns:
        One row per (group, outcome): ``group, outcome, endpoint, threshold, n,
        k, p, lo, hi`` [``boot_lo, boot_hi``] and ``available`` (False when the
        endpoint is absent or NaN in every run: e.g. ICANS in files written
        before the ICANS model; ``n = 0`` and NaN risk then).
    """
    outcomes = grade_outcomes() if outcomes is None else list(outcomes)
    groups = _column(table, by) if by is not None else None
    if by is not None and groups is None:
        raise KeyError(f"no column {by!r} to group by")
    n_rows = len(table) if isinstance(table, pd.DataFrame) else \
        int(next(iter(table.sizes.values()), 0))
    labels = ["all"] if groups is None else _group_order(groups)
    rows = []
    for g in labels:
        sel = np.ones(n_rows, bool) if groups is None else (np.asarray(groups, dtype=object) == g)
        for o in outcomes:
            col = _column(table, o.endpoint)
            available = col is not None and np.isfinite(np.asarray(col, float)).any()
            if available:
                r = proportion(o.events(np.asarray(col)[sel]), conf=conf, bootstrap=bootstrap,
                               seed=seed)
            else:
                r = {"n": 0, "k": 0, "p": math.nan, "lo": math.nan, "hi": math.nan}
                if bootstrap:
                    r.update(boot_lo=math.nan, boot_hi=math.nan)
            rows.append({"group": g, "outcome": o.label, "endpoint": o.endpoint,
                         "threshold": o.threshold, **r, "available": bool(available)})
    df = pd.DataFrame(rows)
    if by is not None:
        df.insert(0, "by", by)
    return df


_LEADING_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)")


def _group_key(v):
    """Numbers, and labels that start with one ("1e9-1e10 cells"), by value; then text."""
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        return (0, float(v), "")
    m = _LEADING_NUMBER.match(str(v))
    return (0, float(m.group(1)), str(v)) if m else (1, 0.0, str(v))


def _group_order(values) -> list:
    vals = [v for v in pd.unique(np.asarray(values, dtype=object))
            if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sorted(vals, key=_group_key)


def bin_labels(edges, unit: str = "") -> list[str]:
    """``"1e9-1e10 cells"``-style labels of consecutive bin edges."""
    u = f" {unit}" if unit else ""

    def fmt(v):
        e = math.log10(v) if v > 0 else math.nan
        if math.isfinite(e) and abs(e - round(e)) < 1e-9 and abs(e) >= 3:
            return f"1e{int(round(e))}"
        return f"{v:.3g}"
    return [f"{fmt(a)}-{fmt(b)}{u}" for a, b in zip(edges[:-1], edges[1:])]


def decade_bins(x, *, min_per_bin: int = 1) -> np.ndarray:
    """Bin edges at powers of ten spanning the finite positive values of ``x``."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x) & (x > 0)]
    if x.size == 0:
        return np.array([])
    lo, hi = math.floor(math.log10(x.min())), math.ceil(math.log10(x.max()))
    if hi == lo:
        hi = lo + 1
    return 10.0 ** np.arange(lo, hi + 1)


def assign_bins(x, edges, labels=None) -> np.ndarray:
    """Label of the bin ``[edges[i], edges[i+1])`` of each value (last bin closed); None outside."""
    x = np.asarray(x, float)
    labels = bin_labels(edges) if labels is None else labels
    i = np.searchsorted(edges, x, side="right") - 1
    i = np.where(x == edges[-1], len(edges) - 2, i)
    ok = np.isfinite(x) & (i >= 0) & (i < len(edges) - 1)
    return np.array([labels[j] if o else None for j, o in zip(i, ok)], dtype=object)


# -- risk versus a continuous covariate ---------------------------------------------

def binned_risk(x, events, bins=None, *, log: bool = True, conf: float = CONF) -> pd.DataFrame:
    """Risk per covariate bin with Wilson intervals.

    Args:
        x: covariate per run.
        events: 1/0 per run (NaN: not counted).
        bins: edges, or an int (quantile bins); default: decades if ``log``
            else 4 quantile bins.

    Returns:
        ``lo_edge, hi_edge``, ``x_min, x_max`` (range of the values in the
        bin), ``x_mid`` (their geometric mean if ``log``, else the mean),
        ``n, k, p, lo, hi``; empty bins dropped.
    """
    x = np.asarray(x, float)
    e = np.asarray(events, float)
    ok = np.isfinite(x) & np.isfinite(e) & ((x > 0) if log else True)
    x, e = x[ok], e[ok]
    if bins is None:
        edges = decade_bins(x) if log else np.quantile(x, np.linspace(0, 1, 5))
    elif np.isscalar(bins):
        q = np.linspace(0, 1, int(bins) + 1)
        edges = 10 ** np.quantile(np.log10(x), q) if log else np.quantile(x, q)
    else:
        edges = np.asarray(bins, float)
    edges = np.unique(edges)
    rows = []
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        sel = (x >= a) & ((x <= b) if last else (x < b))
        n = int(sel.sum())
        if n == 0:
            continue
        k = int(e[sel].sum())
        mid = float(10 ** np.mean(np.log10(x[sel]))) if log else float(np.mean(x[sel]))
        lo, hi = wilson_interval(k, n, conf)
        rows.append({"lo_edge": a, "hi_edge": b, "x_min": float(x[sel].min()),
                     "x_max": float(x[sel].max()), "x_mid": mid, "n": n, "k": k, "p": k / n,
                     "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=["lo_edge", "hi_edge", "x_min", "x_max", "x_mid", "n", "k",
                                       "p", "lo", "hi"])


@dataclass
class LogisticFit:
    """``P(y = 1) = expit(b0 + b1 u)``, ``u = log10 x`` (or ``x`` when ``log`` is False)."""

    coef: np.ndarray                 # (b0, b1)
    cov: np.ndarray                  # 2 x 2, inverse Fisher information
    n: int
    k: int
    log: bool = True
    method: str = "firth"
    converged: bool = True
    iterations: int = 0
    note: str = ""
    x_range: tuple = field(default=(math.nan, math.nan))

    def _u(self, x):
        x = np.asarray(x, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log10(x) if self.log else x

    def predict(self, x, conf: float = CONF):
        """``(p, lo, hi)`` at ``x``: fitted risk and its pointwise confidence band."""
        u = self._u(x)
        eta = self.coef[0] + self.coef[1] * u
        var = self.cov[0, 0] + 2 * u * self.cov[0, 1] + u * u * self.cov[1, 1]
        se = np.sqrt(np.maximum(var, 0.0))
        z = _z(conf)
        return special.expit(eta), special.expit(eta - z * se), special.expit(eta + z * se)

    @property
    def odds_ratio_per_unit(self) -> float:
        """Odds ratio per unit of ``u`` (per 10-fold increase of ``x`` when ``log``)."""
        return float(math.exp(self.coef[1]))

    def slope_interval(self, conf: float = CONF) -> tuple[float, float]:
        se = math.sqrt(max(self.cov[1, 1], 0.0))
        z = _z(conf)
        return float(self.coef[1] - z * se), float(self.coef[1] + z * se)


def fit_logistic(x, y, *, log: bool = True, method: str = "firth", max_iter: int = 100,
                 tol: float = 1e-10) -> LogisticFit | None:
    """Fit ``y ~ expit(b0 + b1 log10 x)`` by IRLS (``method`` ``"firth"`` or ``"mle"``).

    Runs with NaN ``x`` or ``y`` (or ``x <= 0`` with ``log``) are dropped.
    Returns None when no curve can be fitted: fewer than 3 runs, or ``x``
    constant; with ``method="mle"``, also when every ``y`` is equal (the MLE
    does not exist). Firth's method gives finite estimates in these cases.
    """
    if method not in ("firth", "mle"):
        raise ValueError(f"method must be 'firth' or 'mle' (got {method!r})")
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & ((x > 0) if log else True)
    x, y = x[ok], y[ok]
    n, k = int(x.size), int(y.sum())
    if n < 3 or np.ptp(x) == 0 or (method == "mle" and (k == 0 or k == n)):
        return None
    u = np.log10(x) if log else x
    # centre and scale u for a well-conditioned Newton step, transform back at the end
    mu, sd = float(u.mean()), float(u.std())
    X = np.column_stack([np.ones(n), (u - mu) / sd])
    beta = np.zeros(2)
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        p = special.expit(X @ beta)
        w = np.maximum(p * (1 - p), 1e-12)
        info = X.T @ (w[:, None] * X)
        inv = np.linalg.inv(info)
        score = X.T @ (y - p)
        if method == "firth":
            h = w * np.einsum("ij,jk,ik->i", X, inv, X)
            score = score + X.T @ (h * (0.5 - p))
        step = inv @ score
        # step halving keeps Newton stable far from the optimum
        if np.max(np.abs(step)) > 5:
            step *= 5 / np.max(np.abs(step))
        beta = beta + step
        if np.max(np.abs(step)) < tol:
            converged = True
            break
    p = special.expit(X @ beta)
    w = np.maximum(p * (1 - p), 1e-12)
    cov_s = np.linalg.inv(X.T @ (w[:, None] * X))
    # back to (1, u): beta_u = A beta_s with A = [[1, -mu/sd], [0, 1/sd]]
    A = np.array([[1.0, -mu / sd], [0.0, 1.0 / sd]])
    coef = A @ beta
    cov = A @ cov_s @ A.T
    note = ""
    if k == 0 or k == n:
        note = f"every run {'has' if k else 'lacks'} the outcome; curve is Firth-penalised"
    return LogisticFit(coef=coef, cov=cov, n=n, k=k, log=log, method=method,
                       converged=converged, iterations=it, note=note,
                       x_range=(float(x.min()), float(x.max())))


# -- time to onset ---------------------------------------------------------------

def cumulative_incidence(onset, follow_up, *, conf: float = CONF,
                         origin: float | None = None) -> pd.DataFrame:
    """Kaplan-Meier cumulative incidence of onset, censored at the end of follow-up.

    Args:
        onset: onset day per run (NaN: no onset during follow-up).
        follow_up: last observed day per run (censoring time of runs without
            onset).
        origin: time where the curve starts at 0 (default: the earliest of
            all onset and follow-up times, or 0 if that is later).

    Returns:
        One row per distinct event time (plus the origin): ``time, at_risk,
        events, censored, cuminc, lo, hi``; ``lo``/``hi`` are NaN until the
        first event.
    """
    onset = np.asarray(onset, float)
    fu = np.asarray(follow_up, float)
    ok = np.isfinite(fu) | np.isfinite(onset)
    onset, fu = onset[ok], fu[ok]
    event = np.isfinite(onset)
    t = np.where(event, onset, fu)
    if origin is None:
        origin = min(0.0, float(t.min())) if t.size else 0.0
    z = _z(conf)
    rows = [{"time": origin, "at_risk": int(t.size), "events": 0, "censored": 0,
             "cuminc": 0.0, "lo": math.nan, "hi": math.nan}]
    s, gw = 1.0, 0.0
    for tj in np.unique(t):
        at_risk = int(np.count_nonzero(t >= tj))
        d = int(np.count_nonzero((t == tj) & event))
        c = int(np.count_nonzero((t == tj) & ~event))
        if d:
            s *= 1.0 - d / at_risk
            if at_risk > d:
                gw += d / (at_risk * (at_risk - d))
            else:
                gw = math.inf
        lo = hi = math.nan
        if 0 < s < 1 and math.isfinite(gw):
            # log(-log S) interval, mapped to the cumulative incidence 1 - S
            se = math.sqrt(gw) / abs(math.log(s))
            lls = math.log(-math.log(s))
            s_lo, s_hi = math.exp(-math.exp(lls + z * se)), math.exp(-math.exp(lls - z * se))
            lo, hi = 1 - s_hi, 1 - s_lo
        elif s == 0:
            lo, hi = math.nan, 1.0
        if d or c:
            rows.append({"time": float(tj), "at_risk": at_risk, "events": d, "censored": c,
                         "cuminc": 1.0 - s, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def median_iqr(values) -> tuple[float, float, float]:
    """Median and quartiles of the finite values (NaN if none)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    q = np.quantile(v, [0.5, 0.25, 0.75])
    return float(q[0]), float(q[1]), float(q[2])


__all__ = ["wilson_interval", "bootstrap_interval", "proportion", "Outcome", "grade_outcomes",
           "risk_table", "binned_risk", "LogisticFit", "fit_logistic", "cumulative_incidence",
           "decade_bins", "assign_bins", "bin_labels", "median_iqr", "CONF"]
