"""Small statistics of the checks: paired tests, medians that skip NaN, number formatting.

Paired tests are one-sided and exact where the sample is small (sign test and
McNemar by the binomial distribution); ``ALPHA`` is the significance level of
every check criterion.
"""

from __future__ import annotations

import math

import numpy as np

ALPHA = 0.05


def fmt(x, nd=3):
    """Number for printing."""
    if x is None:
        return "n/a"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.{nd}g}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{nd}g}"


def fmt_p(p):
    if p is None or not math.isfinite(p):
        return "p = n/a"
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 1e-4"


def median(x):
    x = np.asarray(x, float)
    x = x[~np.isnan(x)]
    return float(np.median(x)) if x.size else math.nan


def json_safe(v):
    """JSON-safe value (NaN/inf -> None, numpy scalars -> Python)."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def sign_test(a, b, alternative="less") -> dict:
    """Exact sign test of paired values ``a`` vs ``b`` (inf allowed; pairs equal or both NaN dropped).

    ``alternative="less"``: H1 ``a < b`` more often than not. NaN in one of a pair counts as +inf
    (an event that never happened comes later than any that did).
    """
    from scipy.stats import binomtest
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    both = np.isnan(a) & np.isnan(b)
    a = np.where(np.isnan(a), np.inf, a)[~both]
    b = np.where(np.isnan(b), np.inf, b)[~both]
    lt, gt = int(np.sum(a < b)), int(np.sum(a > b))
    n = lt + gt
    if n == 0:
        p = math.nan
    else:
        k = lt if alternative == "less" else gt
        p = float(binomtest(k, n, 0.5, alternative="greater").pvalue)
    return {"n_pairs": int(a.size), "a_lt_b": lt, "a_gt_b": gt, "ties": int(a.size) - n, "p": p}


def wilcoxon(a, b, alternative="greater") -> dict:
    """Paired Wilcoxon signed-rank test of ``a - b`` (finite pairs), with medians and the sign counts."""
    from scipy.stats import wilcoxon as _w
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    d = a - b
    out = {"n_pairs": int(a.size), "median_a": median(a), "median_b": median(b),
           "median_diff": median(d), "a_gt_b": int(np.sum(d > 0)), "a_lt_b": int(np.sum(d < 0)),
           "p": math.nan}
    if np.any(d != 0):
        try:
            out["p"] = float(_w(a, b, alternative=alternative).pvalue)
        except ValueError:
            pass
    return out


def mcnemar_exact(a, b) -> dict:
    """Paired binary outcomes: ``b_only`` (event without a) and ``a_only``; one-sided exact p that
    ``a`` has fewer events than ``b`` (H1)."""
    from scipy.stats import binomtest
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    n = a_only + b_only
    p = float(binomtest(b_only, n, 0.5, alternative="greater").pvalue) if n else 1.0
    return {"a_events": int(a.sum()), "b_events": int(b.sum()), "a_only": a_only, "b_only": b_only,
            "p_a_fewer": p}

