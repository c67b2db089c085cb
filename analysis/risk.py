"""Population risk: proportions with intervals, risk versus a covariate, time to onset.

Everything here works on plain arrays (one value per run) and returns
:class:`pandas.DataFrame` tables or small dataclasses, so it is testable
without run files. The usual inputs are the per-run endpoints of
``ds.abm.endpoints()`` (:mod:`analysis.accessor`).

Formulas (``z`` = the normal quantile, 1.96 for 95 %):

* **Wilson score interval** (statsmodels) for ``k`` events in ``n`` runs, ``p = k / n``::

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
* **Trend of risk over a covariate**: the Cochran-Armitage test over ordered
  bins (``z = T / sqrt(Var T)``, ``T = sum s_i (k_i - n_i pbar)``, ``Var T =
  pbar (1 - pbar) [sum n_i s_i^2 - (sum n_i s_i)^2 / N]``, scores ``s_i`` the
  log10 bin midpoints or the bin index), and the likelihood-ratio test of the
  logistic slope (penalised likelihood ``l + 0.5 log det I`` for Firth fits,
  Heinze & Schemper 2002) with its profile-likelihood interval.
* **Cumulative incidence of onset**: ``1 - S(t)``, ``S`` the Kaplan-Meier
  estimate with runs that never reach the grade censored at the end of their
  follow-up (:class:`statsmodels.duration.survfunc.SurvfuncRight`); pointwise
  interval from its Greenwood standard error with the log(-log) transform
  (no competing risks; the library's own band is a simultaneous Hall-Wellner
  band, wider, and not used).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special, stats
from statsmodels.duration.survfunc import SurvfuncRight
from statsmodels.stats.proportion import proportion_confint

#: Default confidence level.
CONF = 0.95


def _z(conf: float) -> float:
    return float(stats.norm.ppf(0.5 + conf / 2.0))


# -- proportions ----------------------------------------------------------------

def wilson_interval(k, n, conf: float = CONF):
    """Wilson score interval for ``k`` successes in ``n`` trials (arrays broadcast).

    Computed by :func:`statsmodels.stats.proportion.proportion_confint`
    (``method="wilson"``). Returns ``(lo, hi)``; NaN where ``n == 0``.

    >>> lo, hi = wilson_interval(0, 10)
    >>> float(lo), round(float(hi), 4)
    (0.0, 0.2775)
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    k, n = np.broadcast_arrays(k, n)
    bad = ~(n > 0)
    # statsmodels divides by n: give it 1 where n == 0 and blank those entries after
    with np.errstate(invalid="ignore", divide="ignore"):
        lo, hi = proportion_confint(k, np.where(bad, 1.0, n), alpha=1.0 - conf, method="wilson")
    lo = np.clip(np.asarray(lo, float), 0.0, 1.0)
    hi = np.clip(np.asarray(hi, float), 0.0, 1.0)
    # exact ends: k = 0 gives lo = 0 and k = n gives hi = 1 (no rounding residue)
    lo = np.where(k == 0, 0.0, lo)
    hi = np.where(k == n, 1.0, hi)
    lo = np.where(bad, np.nan, lo)
    hi = np.where(bad, np.nan, hi)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def bootstrap_interval(y, *, conf: float = CONF, n_boot: int = 2000, seed: int = 0,
                       stat=np.mean):
    """Percentile bootstrap interval of ``stat(y)`` (``y`` one value per run, NaN dropped).

    By :func:`scipy.stats.bootstrap` (``method="percentile"``) with a
    generator seeded by ``seed``: the same inputs give the same interval.
    """
    y = np.asarray(y, dtype=float)
    y = y[np.isfinite(y)]
    if y.size == 0:
        return math.nan, math.nan
    if y.size == 1 or np.all(y == y[0]):
        # every resample equals the sample (scipy needs two distinct values)
        v = float(stat(y[None, :], axis=1)[0])
        return v, v
    res = stats.bootstrap((y,), stat, n_resamples=int(n_boot), confidence_level=conf,
                          method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


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
    def compute(sel, events):
        return proportion(events[sel], conf=conf, bootstrap=bootstrap, seed=seed)
    empty = {"n": 0, "k": 0, "p": math.nan, "lo": math.nan, "hi": math.nan}
    if bootstrap:
        empty.update(boot_lo=math.nan, boot_hi=math.nan)
    return _by_group(table, outcomes, by, compute, empty)


def _by_group(table, outcomes, by, compute, empty: dict) -> pd.DataFrame:
    """Rows ``group, outcome, endpoint, threshold, **compute(sel, events), available``.

    ``compute(sel, events)`` gets the group's run mask and the outcome's
    1/0/NaN events of every run; ``empty`` stands in where the outcome's
    endpoint is absent or NaN in every run. A ``by`` column comes first when
    grouped.
    """
    outcomes = grade_outcomes() if outcomes is None else list(outcomes)
    groups = _column(table, by) if by is not None else None
    if by is not None and groups is None:
        raise KeyError(f"no column {by!r} to group by")
    n_rows = len(table) if isinstance(table, pd.DataFrame) else \
        int(next(iter(table.sizes.values()), 0))
    labels = ["all"] if groups is None else group_order(groups)
    rows = []
    for g in labels:
        sel = np.ones(n_rows, bool) if groups is None else (np.asarray(groups, dtype=object) == g)
        for o in outcomes:
            col = _column(table, o.endpoint)
            available = col is not None and np.isfinite(np.asarray(col, float)).any()
            r = compute(sel, o.events(np.asarray(col))) if available else dict(empty)
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


def group_order(values) -> list:
    """Distinct group values (None and NaN dropped), numbers by value, then names."""
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

def _finite_pairs(x, y, log: bool):
    """``x``, ``y`` as floats, keeping runs where both are finite (and ``x > 0`` if ``log``)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & ((x > 0) if log else True)
    return x[ok], y[ok]


def binned_risk(x, events, bins=None, *, log: bool = True, conf: float = CONF) -> pd.DataFrame:
    """Risk per covariate bin with Wilson intervals.

    Args:
        x: covariate per run.
        events: 1/0 per run (NaN: not counted).
        bins: edges, or an int (quantile bins); default: decades if ``log``
            else 4 quantile bins.

    Returns:
        ``bin`` (index of the bin among the edges, 0 = lowest), ``lo_edge,
        hi_edge``, ``x_min, x_max`` (range of the values in the bin),
        ``x_mid`` (their geometric mean if ``log``, else the mean), ``n, k, p,
        lo, hi``; empty bins dropped (``bin`` keeps counting them).
    """
    x, e = _finite_pairs(x, events, log)
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
        rows.append({"bin": i, "lo_edge": a, "hi_edge": b, "x_min": float(x[sel].min()),
                     "x_max": float(x[sel].max()), "x_mid": mid, "n": n, "k": k, "p": k / n,
                     "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=["bin", "lo_edge", "hi_edge", "x_min", "x_max", "x_mid", "n",
                                       "k", "p", "lo", "hi"])


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
    # the fitted data on the centred, scaled design (for likelihood-ratio tests)
    _design: tuple | None = field(default=None, repr=False, compare=False)

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
        """Wald interval of the slope ``b1``."""
        se = math.sqrt(max(self.cov[1, 1], 0.0))
        z = _z(conf)
        return float(self.coef[1] - z * se), float(self.coef[1] + z * se)

    def slope_p_wald(self) -> float:
        """Two-sided Wald p-value of ``b1 = 0`` (``z = b1 / se``)."""
        se = math.sqrt(max(self.cov[1, 1], 0.0))
        return float(2 * stats.norm.sf(abs(self.coef[1]) / se)) if se > 0 else math.nan

    # -- (penalised) likelihood ratio ----------------------------------------------
    def _loglik(self, beta_s) -> float:
        """Log-likelihood on the scaled design; for Firth plus ``0.5 log det I``."""
        X, y, _, _ = self._design
        eta = X @ beta_s
        ll = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
        if self.method == "firth":
            w = special.expit(eta) * special.expit(-eta)
            sign, logdet = np.linalg.slogdet(X.T @ (w[:, None] * X))
            ll += 0.5 * logdet if sign > 0 else -math.inf
        return ll

    def _profile(self, b1s: float) -> float:
        """Maximum of :meth:`_loglik` over the intercept with the scaled slope fixed."""
        from scipy import optimize
        b0 = float(self._design[2][0])
        res = optimize.minimize_scalar(lambda a: -self._loglik(np.array([a, b1s])),
                                       bracket=(b0 - 1.0, b0 + 1.0), method="brent")
        return float(-res.fun)

    def lr_test(self) -> tuple[float, float]:
        """Likelihood-ratio test of ``b1 = 0``: ``(statistic, p)``, chi-square with 1 df.

        For Firth fits the penalised likelihood ``l + 0.5 log det I`` is
        compared, the penalty of the null model taken from the full model's
        information at ``(b0, 0)`` (Heinze & Schemper 2002, as R's logistf).
        """
        if self._design is None:
            return math.nan, math.nan
        stat = max(2.0 * (self._loglik(self._design[2]) - self._profile(0.0)), 0.0)
        return float(stat), float(stats.chi2.sf(stat, 1))

    def profile_interval(self, conf: float = CONF, *, limit: float = 100.0
                         ) -> tuple[float, float]:
        """Profile (penalised) likelihood interval of the slope ``b1``.

        The set of slopes whose likelihood-ratio test against the fit does not
        reject at ``1 - conf``; an end beyond ``limit`` standard deviations
        of ``u`` per unit (a separated outcome) is returned as infinite.
        Consistent with :meth:`lr_test`: 0 is inside exactly when its p-value
        is above ``1 - conf``.
        """
        from scipy import optimize
        if self._design is None:
            return math.nan, math.nan
        _, _, beta_s, sd = self._design
        target = self._loglik(beta_s) - stats.chi2.ppf(conf, 1) / 2.0
        f = lambda b1s: self._profile(b1s) - target   # noqa: E731  (> 0 inside)
        se_s = math.sqrt(max(self.cov[1, 1], 0.0)) * sd
        ends = []
        for direction in (-1.0, 1.0):
            a, step, end = float(beta_s[1]), max(se_s, 0.05), None
            while abs(a - beta_s[1]) < limit:
                b = a + direction * step
                if f(b) <= 0:
                    end = optimize.brentq(f, min(a, b), max(a, b), xtol=1e-10)
                    break
                a, step = b, step * 2.0
            ends.append(direction * math.inf if end is None else end / sd)
        return float(ends[0]), float(ends[1])


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
    x, y = _finite_pairs(x, y, log)
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
                       x_range=(float(x.min()), float(x.max())), _design=(X, y, beta, sd))


# -- monotone trend of risk over a covariate ------------------------------------------

@dataclass(frozen=True)
class CochranArmitage:
    """Cochran-Armitage test for a linear trend in proportions over ordered groups."""

    z: float                 # T / sqrt(Var T); > 0: risk rises with the score
    p_two_sided: float
    p_increasing: float      # one-sided, H1: risk increases with the score
    p_decreasing: float      # one-sided, H1: risk decreases with the score
    statistic: float         # T = sum s_i (k_i - n_i pbar)
    variance: float          # Var T = pbar (1 - pbar) [sum n_i s_i^2 - (sum n_i s_i)^2 / N]
    n: int
    k: int
    n_groups: int


def cochran_armitage(k, n, scores=None) -> CochranArmitage:
    """Cochran-Armitage trend test of ``k_i`` events in ``n_i`` runs per ordered group.

    With ``pbar = K / N`` (``K = sum k_i``, ``N = sum n_i``) and scores ``s_i``
    (default: the group index 0, 1, 2, ...)::

        T     = sum s_i (k_i - n_i pbar)
        Var T = pbar (1 - pbar) [sum n_i s_i^2 - (sum n_i s_i)^2 / N]
        z     = T / sqrt(Var T)          (approximately standard normal under H0)

    ``z^2 = N r^2`` with ``r`` the correlation of score and outcome over the
    runs; it is the score test of the slope of a logistic regression on the
    scores. p-values: two-sided ``2 (1 - Phi(|z|))``, increasing ``1 - Phi(z)``,
    decreasing ``Phi(z)``. ``z`` and the p-values are NaN when ``Var T = 0``
    (no events, only events, or fewer than two groups with different scores).

    >>> round(cochran_armitage([1, 3, 6], [10, 10, 10]).z, 4)   # 15 / sqrt(40)
    2.3717
    """
    k = np.asarray(k, float)
    n = np.asarray(n, float)
    s = np.arange(k.size, dtype=float) if scores is None else np.asarray(scores, float)
    if not (k.shape == n.shape == s.shape):
        raise ValueError("k, n and scores need one value per group")
    ok = n > 0
    k, n, s = k[ok], n[ok], s[ok]
    N, K = float(n.sum()), float(k.sum())
    if N == 0:
        return CochranArmitage(*(math.nan,) * 6, n=0, k=0, n_groups=0)
    pbar = K / N
    t = float(np.sum(s * (k - n * pbar)))
    var = pbar * (1.0 - pbar) * float(np.sum(n * s * s) - np.sum(n * s) ** 2 / N)
    if var > 1e-12 * max(1.0, pbar * (1 - pbar) * float(np.sum(n * s * s))):
        z = t / math.sqrt(var)
        p2, pinc, pdec = 2 * stats.norm.sf(abs(z)), stats.norm.sf(z), stats.norm.cdf(z)
    else:
        z = p2 = pinc = pdec = math.nan
    return CochranArmitage(z=float(z), p_two_sided=float(p2), p_increasing=float(pinc),
                           p_decreasing=float(pdec), statistic=t, variance=float(var),
                           n=int(N), k=int(K), n_groups=int(k.size))


#: Columns of :func:`trend_test` (and of :func:`trend_table` after its labels).
TREND_COLUMNS = ("n", "k", "n_bins", "scores", "ca_z", "ca_p_two_sided", "ca_p_increasing",
                 "ca_p_decreasing", "slope", "slope_lo", "slope_hi", "slope_p", "lr_stat",
                 "slope_se", "slope_p_wald", "odds_ratio", "method", "note")


def trend_test(x, events, *, bins=None, scores: str = "log10", log: bool = True,
               method: str = "firth", conf: float = CONF) -> dict:
    """Monotone trend of risk over a covariate: Cochran-Armitage and logistic slope.

    Args:
        x: covariate per run (e.g. tumour burden in cells).
        events: 1/0 per run (NaN: not counted; runs with NaN or, with ``log``,
            non-positive ``x`` are dropped as well).
        bins: bins for the Cochran-Armitage test, as in :func:`binned_risk`
            (default: decades of ``x`` when ``log``).
        scores: Cochran-Armitage scores: ``"log10"`` (log10 of each bin's
            geometric-mean value, ``x_mid``; the value itself when ``log`` is
            False) or ``"index"`` (bin index: 0, 1, 2, ... over all bins,
            empty ones included).
        method: logistic fit, ``"firth"`` (default) or ``"mle"`` (:func:`fit_logistic`).

    Returns:
        A dict with :data:`TREND_COLUMNS`: ``n, k`` (runs, events), ``n_bins``
        (non-empty bins), ``ca_z`` and its p-values (two-sided, increasing,
        decreasing; :func:`cochran_armitage`); ``slope`` (logistic slope
        ``b1`` per unit of ``u`` = log10 x: per 10-fold increase), its
        profile-likelihood ``conf`` interval ``slope_lo, slope_hi`` and the
        likelihood-ratio p ``slope_p`` (penalised for Firth; ``lr_stat`` the
        statistic), the Wald ``slope_se`` and ``slope_p_wald``,
        ``odds_ratio`` = exp(slope); ``note`` says why a value is NaN. With
        no events, or events in every run, every test value is NaN.
    """
    if scores not in ("log10", "index"):
        raise ValueError(f"scores must be 'log10' or 'index' (got {scores!r})")
    x, e = _finite_pairs(x, events, log)
    out = dict.fromkeys(TREND_COLUMNS, math.nan)
    out.update(n=int(x.size), k=int(e.sum()), n_bins=0, scores=scores, method=method, note="")
    if x.size == 0:
        out["note"] = "no runs"
        return out
    b = binned_risk(x, e, bins, log=log, conf=conf)
    out["n_bins"] = int(len(b))
    if scores == "index":
        sc = b["bin"].to_numpy(float)
    else:
        sc = np.log10(b["x_mid"].to_numpy(float)) if log else b["x_mid"].to_numpy(float)
    ca = cochran_armitage(b["k"].to_numpy(), b["n"].to_numpy(), sc)
    out.update(ca_z=ca.z, ca_p_two_sided=ca.p_two_sided, ca_p_increasing=ca.p_increasing,
               ca_p_decreasing=ca.p_decreasing)
    notes = []
    if out["k"] in (0, out["n"]):   # no variation: nothing to test (a Firth slope would
        out["note"] = ("no events" if out["k"] == 0 else "every run has the outcome")
        return out                  # only reflect the penalty and the spread of x)
    if out["n_bins"] < 2:
        notes.append("one bin only")
    fit = fit_logistic(x, e, log=log, method=method)
    if fit is None:
        notes.append("no logistic fit (fewer than 3 runs, constant covariate or, for the "
                     "MLE, a constant outcome)")
    else:
        out["lr_stat"], out["slope_p"] = fit.lr_test()
        out["slope_lo"], out["slope_hi"] = fit.profile_interval(conf)
        out.update(slope=float(fit.coef[1]), slope_se=math.sqrt(max(fit.cov[1, 1], 0.0)),
                   slope_p_wald=fit.slope_p_wald(), odds_ratio=fit.odds_ratio_per_unit)
    out["note"] = "; ".join(notes)
    return out


def trend_table(table, covariate: str, outcomes=None, by=None, **kw) -> pd.DataFrame:
    """:func:`trend_test` of each outcome against ``covariate``, overall or per group.

    ``table`` as for :func:`risk_table` (a DataFrame or a per-run Dataset);
    ``kw`` goes to :func:`trend_test`. Returns one row per (group, outcome):
    ``group, outcome, endpoint, threshold, covariate``, :data:`TREND_COLUMNS`
    and ``available`` (False when the endpoint is absent or NaN in every run;
    the test values are NaN then). A ``by`` column comes first when given.
    """
    x = _column(table, covariate)
    if x is None:
        raise KeyError(f"no covariate {covariate!r}")
    x = np.asarray(x, float)
    empty = dict.fromkeys(TREND_COLUMNS, math.nan)
    empty.update(n=0, k=0, n_bins=0, note="not available")
    df = _by_group(table, outcomes, by, lambda sel, ev: trend_test(x[sel], ev[sel], **kw), empty)
    df.insert(df.columns.get_loc("threshold") + 1, "covariate", covariate)
    return df


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
    rows = [{"time": origin, "at_risk": int(t.size), "events": 0, "censored": 0,
             "cuminc": 0.0, "lo": math.nan, "hi": math.nan}]
    if t.size == 0:
        return pd.DataFrame(rows)
    km = SurvfuncRight(t, event.astype(float))
    times, counts = np.unique(t, return_counts=True)
    n_events = np.bincount(np.searchsorted(times, t[event]), minlength=times.size)
    at_risk = t.size - np.r_[0, np.cumsum(counts)[:-1]]
    # the library's curve steps at event times only; carry it over censoring-only times
    # (S = 1, se = 0 before the first event: a leading entry that index -1 picks)
    step = np.searchsorted(km.surv_times, times, side="right") - 1
    surv = np.r_[km.surv_prob, 1.0][step]
    surv_se = np.r_[km.surv_prob_se, 0.0][step]
    lo, hi = loglog_band(surv, surv_se, conf)
    for j, tj in enumerate(times):
        d, c = int(n_events[j]), int(counts[j] - n_events[j])
        rows.append({"time": float(tj), "at_risk": int(at_risk[j]), "events": d,
                     "censored": c, "cuminc": 1.0 - float(surv[j]), "lo": float(lo[j]),
                     "hi": float(hi[j])})
    return pd.DataFrame(rows)


def numbers_at_risk(onset, follow_up, days) -> np.ndarray:
    """Runs still at risk at each of ``days``: no onset and still followed before that day.

    A run is at risk at day ``d`` when its onset, or without one the end of
    its follow-up, is at or after ``d`` (the count under a Kaplan-Meier curve,
    as in :func:`cumulative_incidence`'s ``at_risk``). Runs with neither an
    onset nor a follow-up time are left out. Returns an int array like ``days``.
    """
    onset = np.asarray(onset, float)
    fu = np.asarray(follow_up, float)
    t = np.where(np.isfinite(onset), onset, fu)
    t = t[np.isfinite(t)]
    d = np.asarray(days, float)
    return (t[None, :] >= d.reshape(-1, 1) - 1e-9).sum(axis=1).astype(int).reshape(d.shape)


def loglog_band(surv, surv_se, conf: float = CONF) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise log(-log) interval of a survival curve, as cumulative incidence ``1 - S``.

    ``surv_se`` is the Greenwood standard error of ``S`` (as
    :class:`~statsmodels.duration.survfunc.SurvfuncRight` gives it); the
    delta method gives ``se(log(-log S)) = se(S) / (S |log S|)``. Returns
    ``(lo, hi)``: NaN where ``S = 1`` (no event yet) or the standard error
    is undefined; ``(NaN, 1)`` once ``S = 0``.
    """
    s = np.asarray(surv, float)
    se = np.asarray(surv_se, float)
    z = _z(conf)
    lo = np.full(s.shape, math.nan)
    hi = np.full(s.shape, math.nan)
    ok = (s > 0) & (s < 1) & np.isfinite(se)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.log(np.where(ok, s, 0.5))
        se_lls = se / (np.where(ok, s, 1.0) * np.abs(log_s))
        lls = np.log(-log_s)
        s_lo = np.exp(-np.exp(lls + z * se_lls))
        s_hi = np.exp(-np.exp(lls - z * se_lls))
    lo[ok], hi[ok] = 1.0 - s_hi[ok], 1.0 - s_lo[ok]
    hi[s == 0] = 1.0
    return lo, hi


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
           "numbers_at_risk", "loglog_band",
           "decade_bins", "assign_bins", "bin_labels", "median_iqr", "CochranArmitage",
           "cochran_armitage", "trend_test", "trend_table", "TREND_COLUMNS", "CONF"]
