"""Per-run endpoints computed from the time series (numpy core of ``ds.abm``).

Every function takes the record times (day) and one or more recorded
variables of one run as 1-D arrays, or of many runs as 2-D arrays
``(run, time)``; NaN samples (the padding of shorter runs in a batch) are
ignored. Results are at record resolution: an onset is the first record at or
above the grade, so it is at most one record interval later than the
simulator's own (step-resolution) onset, and an episode shorter than one
record interval can be missed. ``ds.abm.check_endpoints()`` compares them with
the ``/endpoints`` group written by the simulator.

Episodes (CRS, ICANS): a run of consecutive records with ``grade >= k`` starts
at its first record and ends at the first record below ``k`` after it (the
time the grade was seen to have fallen). Episodes separated by less than
``merge_gap_h`` are one episode (the simulator resolves CRS only after
``clinician.resolution_hold_h`` = 24 h at grade 0). An episode still running
at the last record ends there and is flagged *ongoing* (its duration is
censored). A run at or above ``k`` from its first record has its onset at
that record.

Response of the whole tumour: ``tumour_cells`` at the evaluation day (``day``
or the last record before it, if the run ends sooner) relative to the last
record at or before day 0 (infusion); Lugano-like categories on the sum of
the products of diameters, ``SPD / SPD_0 = (T / T_0)^(2/3)``: CR below the
detection limit (``DETECTION_LIMIT_CELLS``, the simulator's
``response.detection_limit_cells`` default), PR a fall of the SPD by at least
50 %, PD a rise by at least 50 %, SD otherwise; ``best_response`` is the best
category from ``BEST_FROM_DAY`` on. Files without ``tumour_cells`` (written
before the whole-patient model) fall back on the patch count ``n_tumour`` (CR
no cell left, PR / PD a fall / rise of the count by 50 %).
"""

from __future__ import annotations

import math
import re

import numpy as np

#: Default gap (h) below which two episodes count as one (as the simulator's
#: ``clinician.resolution_hold_h``).
MERGE_GAP_H = 24.0
#: Default day of the response assessment.
RESPONSE_DAY = 28.0
#: Time series variables whose peak (value and day) is an endpoint when present.
PEAK_PREFIX = "plasma_"
CART_VAR = "blood_cart_per_ul"
#: The CAR-T peak is the expansion peak: records before this day (after
#: infusion at day 0) are skipped, as the simulator's ``blood.cart_peak_after_days``.
CART_PEAK_AFTER_DAYS = 1.0
TUMOUR_VAR = "tumour_cells"
#: The patch count, used for files that have no whole-tumour variable.
PATCH_TUMOUR_VAR = "n_tumour"
#: Whole tumour below this is a complete response (the simulator's default).
DETECTION_LIMIT_CELLS = 1e9
#: Best response counts assessments from this day on (the simulator's default).
BEST_FROM_DAY = 14.0
#: Categories from worst to best.
RESPONSE_ORDER = ("PD", "SD", "PR", "CR")
#: Extremes of physiology and support (endpoint name, variable, reduction).
EXTREMES = (
    ("temperature_max_c", "temperature_c", "max"),
    ("map_min_mmhg", "map_mmhg", "min"),
    ("spo2_min_pct", "spo2_pct", "min"),
    ("vasopressors_max", "vasopressors", "max"),
    ("oxygen_support_max", "oxygen_support", "max"),
    ("hypotension_support_max", "hypotension_support", "max"),
    ("fluids_total_ml", "fluids_total_ml", "max"),
)
_DOSES = re.compile(r"^(\w+)_doses$")


def finite_points(t, y):
    """``(t, y)`` as float arrays, keeping the points where both are finite."""
    t = np.asarray(t, float)
    y = np.asarray(y, float)
    ok = np.isfinite(t) & np.isfinite(y)
    return t[ok], y[ok]


def episodes(time, grade, k: float = 1, merge_gap_h: float = MERGE_GAP_H) -> list[dict]:
    """Episodes with ``grade >= k`` of one run: ``start, end, max_grade, ongoing``.

    ``end`` is the first record below ``k`` after the episode, or the last
    record if the episode is still running (``ongoing`` True).
    """
    t, g = finite_points(time, grade)
    if t.size == 0:
        return []
    pos = g >= k
    eps: list[dict] = []
    i, n = 0, t.size
    while i < n:
        if not pos[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and pos[j + 1]:
            j += 1
        ongoing = j + 1 >= n
        end = t[-1] if ongoing else t[j + 1]
        eps.append({"start": float(t[i]), "end": float(end), "max_grade": float(g[i:j + 1].max()),
                    "ongoing": bool(ongoing)})
        i = j + 1
    merged: list[dict] = []
    gap = merge_gap_h / 24.0
    for e in eps:
        if merged and e["start"] - merged[-1]["end"] < gap - 1e-9:
            m = merged[-1]
            m.update(end=e["end"], max_grade=max(m["max_grade"], e["max_grade"]),
                     ongoing=e["ongoing"])
        else:
            merged.append(dict(e))
    return merged


#: Names of :func:`grade_summary`'s values (suffixes after ``<kind>_``).
GRADE_FIELDS = ("max_grade", "onset_day", "duration_days", "resolved_day", "episodes",
                "episodes_uncertain", "ongoing", "grade3_onset_day")


def grade_summary(time, grade, merge_gap_h: float = MERGE_GAP_H) -> dict:
    """Max grade, onset (any grade and grade >= 3), duration, resolution of one run.

    Returns a dict keyed by :data:`GRADE_FIELDS`: ``max_grade`` (NaN if the
    grade was never recorded), ``onset_day`` (first record with grade >= 1;
    NaN if never), ``duration_days`` (summed episode lengths, 0 if never),
    ``resolved_day`` (end of the last episode; NaN if never or still
    ongoing), ``episodes`` (count), ``episodes_uncertain`` (gaps between two
    counted episodes within one record interval of ``merge_gap_h``: the
    simulator, which sees every step, may have merged them, so its count can
    be lower by up to this number), ``ongoing`` (1 if grade >= 1 at the last
    record), ``grade3_onset_day`` (first record with grade >= 3).
    """
    t, g = finite_points(time, grade)
    if t.size == 0:
        return dict.fromkeys(GRADE_FIELDS, math.nan)
    eps = episodes(t, g, 1, merge_gap_h)
    ge3 = np.flatnonzero(g >= 3)
    return {
        "max_grade": float(g.max()),
        "onset_day": eps[0]["start"] if eps else math.nan,
        "duration_days": float(sum(e["end"] - e["start"] for e in eps)),
        "resolved_day": _last_resolution(eps, float(t[-1]), merge_gap_h),
        "episodes": float(len(eps)),
        "episodes_uncertain": float(_uncertain_gaps(eps, t, merge_gap_h)),
        "ongoing": float(bool(eps) and eps[-1]["ongoing"]),
        "grade3_onset_day": float(t[ge3[0]]) if ge3.size else math.nan,
    }


def _uncertain_gaps(eps: list[dict], t, merge_gap_h: float) -> int:
    """Gaps between episodes no longer than ``merge_gap_h`` plus one record interval."""
    if len(eps) < 2:
        return 0
    step = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    limit = merge_gap_h / 24.0 + step + 1e-9
    return sum(1 for a, b in zip(eps, eps[1:]) if b["start"] - a["end"] <= limit)


def _last_resolution(eps: list[dict], t_last: float, merge_gap_h: float) -> float:
    """End of the last episode whose resolution is confirmed (``merge_gap_h`` below
    grade 1 followed it before the run ended); earlier episodes always are."""
    for i in range(len(eps) - 1, -1, -1):
        e = eps[i]
        last = i == len(eps) - 1
        if not e["ongoing"] and (not last or t_last - e["end"] >= merge_gap_h / 24.0 - 1e-9):
            return e["end"]
    return math.nan


def first_at_or_above(time, y, k: float) -> float:
    """First day with ``y >= k`` (NaN if never)."""
    t, v = finite_points(time, y)
    i = np.flatnonzero(v >= k)
    return float(t[i[0]]) if i.size else math.nan


def peak(time, y) -> tuple[float, float]:
    """``(value, day)`` of the maximum (first day if repeated); NaNs if no data."""
    t, v = finite_points(time, y)
    if v.size == 0:
        return math.nan, math.nan
    i = int(np.argmax(v))
    return float(v[i]), float(t[i])


def over_peak(value: float, peak: float) -> float:
    """A level over the expansion peak (the contraction since it); NaN without a positive peak."""
    return value / peak if peak > 0 else math.nan


def fold_over_nadir(time, y, peak_day: float) -> tuple[float, float]:
    """``(nadir, peak / nadir)`` of an expansion peaking on ``peak_day``.

    The nadir is the lowest positive level after infusion (day > 0) up to the
    peak: the level the expansion starts from once the infused cells have
    distributed. The fold is 1 when the level only falls; NaNs without data.
    """
    t, v = finite_points(time, y)
    pre = (t > 1e-9) & (t <= peak_day + 1e-9) & (v > 0)
    if not pre.any() or not math.isfinite(peak_day):
        return math.nan, math.nan
    nadir = float(v[pre].min())
    return nadir, float(v[pre][-1]) / nadir   # the last record up to the peak is the peak


def value_at(time, y, day: float) -> float:
    """Value at the last record at or before ``day`` (NaN if the run ends before ``day``
    by more than half a record interval, or starts after it)."""
    t, v = finite_points(time, y)
    if t.size == 0 or day < t[0] - 1e-9:
        return math.nan
    dt = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    if day > t[-1] + dt / 2 + 1e-9:
        return math.nan
    i = int(np.searchsorted(t, day + 1e-9, side="right")) - 1
    return float(v[i])


def response(time, n_tumour, day: float = RESPONSE_DAY, whole: bool = False) -> dict:
    """Tumour change at ``day`` (or the last record, if earlier), and the best response.

    ``whole``: ``n_tumour`` is the whole tumour (Lugano-like SPD categories with
    the detection limit) rather than the patch count.

    Returns ``tumour_baseline`` (cells at the last record at or before day 0,
    or the first record), ``tumour_eval`` (cells at the evaluation day),
    ``response_day`` (the evaluation day actually used), ``tumour_change``
    (fraction, -1 = all gone) and ``response`` ("CR", "PR", "SD", "PD" or ""
    without data).
    """
    t, v = finite_points(time, n_tumour)
    if t.size == 0:
        return {"tumour_baseline": math.nan, "tumour_eval": math.nan, "response_day": math.nan,
                "tumour_change": math.nan, "response": "", "best_response": ""}
    i0 = int(np.searchsorted(t, 1e-9, side="right")) - 1
    i0 = max(i0, 0)
    i1 = int(np.searchsorted(t, day + 1e-9, side="right")) - 1
    i1 = max(i1, i0)
    base, ev = float(v[i0]), float(v[i1])
    change = (ev - base) / base if base > 0 else math.nan
    category = whole_tumour_category if whole else response_category
    later = [category(float(x), (float(x) - base) / base if base > 0 else math.nan)
             for x in v[t >= BEST_FROM_DAY - 1e-9]] or [category(ev, change)]
    best = max(later, key=lambda c: RESPONSE_ORDER.index(c) if c in RESPONSE_ORDER else -1)
    return {"tumour_baseline": base, "tumour_eval": ev, "response_day": float(t[i1]),
            "tumour_change": change, "response": category(ev, change), "best_response": best}


def whole_tumour_category(n_eval: float, change: float) -> str:
    """CR / PR / SD / PD of the whole tumour: detection limit, then the SPD ratio ``(1 + change)^(2/3)``."""
    if not math.isfinite(n_eval):
        return ""
    if n_eval < DETECTION_LIMIT_CELLS:
        return "CR"
    if not math.isfinite(change):
        return ""
    spd = (1.0 + change) ** (2.0 / 3.0)
    if spd <= 0.5:
        return "PR"
    if spd >= 1.5:
        return "PD"
    return "SD"


def response_category(n_eval: float, change: float) -> str:
    """CR / PR / SD / PD from the patch count at evaluation and its relative change."""
    if not math.isfinite(n_eval):
        return ""
    if n_eval == 0:
        return "CR"
    if not math.isfinite(change):
        return ""
    if change <= -0.5:
        return "PR"
    if change >= 0.5:
        return "PD"
    return "SD"


def dose_times(time, cumulative_doses) -> np.ndarray:
    """Days at which a cumulative dose counter increased (one entry per dose).

    A record that counts ``m`` new doses gives its day ``m`` times.
    """
    t, c = finite_points(time, cumulative_doses)
    if t.size == 0:
        return np.array([])
    inc = np.diff(np.concatenate([[0.0], c]))
    inc = np.maximum(np.round(inc).astype(int), 0)
    return np.repeat(t, inc)


def drug_names(variables) -> list[str]:
    """Drugs with a cumulative ``<drug>_doses`` time series, in the given order."""
    return [m.group(1) for v in variables if (m := _DOSES.match(v))]


def cytokine_names(variables) -> list[str]:
    """``plasma_<x>`` variables, as ``<x>``."""
    return [v[len(PEAK_PREFIX):] for v in variables if v.startswith(PEAK_PREFIX)]


__all__ = ["episodes", "grade_summary", "first_at_or_above", "peak", "over_peak", "value_at", "response",
           "response_category", "dose_times", "drug_names", "cytokine_names", "GRADE_FIELDS",
           "MERGE_GAP_H", "RESPONSE_DAY", "CART_PEAK_AFTER_DAYS", "EXTREMES", "CART_VAR", "TUMOUR_VAR"]
