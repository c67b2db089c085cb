"""Calibration bands of docs/model.md section 11: simulated rates against the pivotal trials.

A product's costimulation domain picks its target trial (CD28 -> ZUMA-1,
4-1BB -> JULIET); :func:`in_band` says whether the target lies in the band
of the simulated rate, and :func:`assessable` whether the cohort is large
and long enough for that verdict to mean anything.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from abm.errors import FileFormatError
from analysis.io import read_provenance
from analysis.notes import (BAND_PP, CALIBRATION, CALIBRATION_OUTCOMES, MIN_FOLLOW_UP_DAYS,
                            MIN_RUNS, PRESET_COSTIMULATION)
from analysis.risk import group_order


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


def assessable(n: int, follow_up_days: float | None, *, min_runs: int = MIN_RUNS,
               min_follow_up_days: float = MIN_FOLLOW_UP_DAYS) -> str:
    """Why a cohort gets no in-band verdict ("" when it gets one).

    Args:
        n: runs in the cohort.
        follow_up_days: shortest follow-up over its runs, days (None or NaN:
            unknown, not held against it).

    Returns:
        "" or the reasons, e.g. ``"n = 4 < 20; follow-up 3 d < 28 d"``.
    """
    reasons = []
    if n < min_runs:
        reasons.append(f"n = {n} < {min_runs}")
    if follow_up_days is not None and np.isfinite(follow_up_days) \
            and follow_up_days < min_follow_up_days - 1e-6:
        reasons.append(f"follow-up {follow_up_days:.3g} d < {min_follow_up_days:g} d")
    return "; ".join(reasons)


def shortest_follow_up(table, by: str) -> dict:
    """Shortest ``follow_up_day`` (days) of each group of ``by`` in an endpoint table."""
    if by not in table or "follow_up_day" not in table:
        return {}
    groups = np.asarray(table[by].values if hasattr(table[by], "values") else table[by],
                        dtype=object).astype(str)
    days = np.asarray(table["follow_up_day"].values, float)
    return {g: float(np.nanmin(days[groups == g])) if np.isfinite(days[groups == g]).any()
            else math.nan for g in group_order(groups)}


def verdict(in_band_value, p, target, reason: str = "") -> str:
    """The report's words for one row: yes, no (simulated above/below), n/a, not assessed."""
    if reason:
        return f"not assessed ({reason})"
    if in_band_value is None:
        return "n/a"
    if in_band_value:
        return "yes"
    return f"no (simulated {'above' if p > target else 'below'})"


def product_costimulation(ds) -> dict:
    """Costimulation domain ("CD28", "4-1BB", or None) of each ``product`` of a batch.

    From the ``product_costimulation`` coordinate (config key
    ``product.costimulation``) when it varies, else from
    the config of the first run file of the product, else from the preset
    name (:data:`PRESET_COSTIMULATION`).
    """
    if "product" not in ds.coords:
        return {}
    prods = np.asarray(ds["product"].values, dtype=object).astype(str)
    cost = (np.asarray(ds["product_costimulation"].values, dtype=object)
            if "product_costimulation" in ds.coords else None)
    paths = np.asarray(ds["path"].values, dtype=object) if "path" in ds.coords else None
    out = {}
    for prod in group_order(prods):
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


def calibration_table(risk: pd.DataFrame, costimulation: dict,
                      follow_up: dict | None = None, *, min_runs: int = MIN_RUNS,
                      min_follow_up_days: float = MIN_FOLLOW_UP_DAYS) -> pd.DataFrame:
    """Simulated rates next to the docs/model.md section 11 targets, with the band verdict.

    Args:
        risk: :func:`analysis.risk.risk_table` rows (``group, outcome, n, k, p,
            lo, hi, available``) holding :data:`CALIBRATION_OUTCOMES`.
        costimulation: group -> costimulation ("CD28" -> ZUMA-1, "4-1BB" ->
            JULIET); groups mapping to no target are left out.
        follow_up: group -> shortest follow-up of its runs, days
            (:func:`shortest_follow_up`); a group not in it is not held to
            the follow-up minimum.
        min_runs, min_follow_up_days: the minima of :func:`assessable`.

    Returns:
        One row per (group, outcome): ``group, costimulation, cohort, outcome,
        n, k, p, lo, hi, target, band_lo, band_hi, follow_up_days, assessed,
        in_band, verdict`` (rates as fractions; :func:`in_band`; ``in_band`` None
        when not available or not assessed: fewer than :data:`MIN_RUNS` runs or
        a follow-up under :data:`MIN_FOLLOW_UP_DAYS`, see :func:`assessable`;
        ``verdict`` the report's words with the reason).
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
            fu = (follow_up or {}).get(str(group), math.nan)
            reason = assessable(n, fu, min_runs=min_runs,
                                min_follow_up_days=min_follow_up_days) if ok else ""
            band = in_band(p, lo, hi, target / 100) if ok and not reason else None
            rows.append({"group": group, "costimulation": costim, "cohort": cohort,
                         "outcome": outcome, "n": n, "k": k, "p": p, "lo": lo, "hi": hi,
                         "target": target / 100, "band_lo": max(min(lo, p - tol), 0.0),
                         "band_hi": min(max(hi, p + tol), 1.0),
                         "follow_up_days": fu, "assessed": bool(ok and not reason),
                         "in_band": band,
                         "verdict": verdict(band, p, target / 100, reason) if ok else "n/a"})
    return pd.DataFrame(rows, columns=["group", "costimulation", "cohort", "outcome", "n", "k",
                                       "p", "lo", "hi", "target", "band_lo", "band_hi",
                                       "follow_up_days", "assessed", "in_band", "verdict"])


__all__ = ["in_band", "assessable", "shortest_follow_up", "verdict", "product_costimulation", "calibration_table"]
