"""The summaries ``abm calibrate`` fits and the section 11 targets of docs/model.md.

A *summary* turns the runs of one arm at one design point (a virtual
population) into one number:

* rates: the share of runs with an event, from the per-run endpoints of
  :mod:`analysis.endpoints` (computed by the ``ds.abm`` accessor): CRS and
  ICANS any grade / grade >= 3 from the maximal grades, ORR and CR from the
  best overall response of the whole tumour (day 14 on);
* kinetics: the median over the runs of blood CAR-T at days 7, 14 and 28, of
  the blood peak (Cmax), of its day (Tmax) and of the day-28 level over the
  peak (contraction), compared on the log10 scale.

Default observed values (used when a target gives none) follow the arm's
costimulation domain: toxicity rates from :data:`analysis.notes.CALIBRATION`
(ZUMA-1 for CD28, JULIET for 4-1BB), efficacy and kinetics from docs/model.md
section 11 (:data:`EFFICACY`, :data:`KINETICS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis.notes import CALIBRATION

#: Below this a blood CAR-T level (cells/uL) is taken as this on the log scale.
LOG_FLOOR = 1e-3


@dataclass(frozen=True)
class Summary:
    """One summary: ``kind`` "rate" (share of runs with ``event``) or "log_median"
    (log10 of the median of ``endpoint``)."""

    name: str
    kind: str
    endpoint: str
    label: str
    unit: str = "1"

    @property
    def scale(self) -> str:
        return "rate" if self.kind == "rate" else "log10"


SUMMARIES = {s.name: s for s in (
    Summary("crs_any", "rate", "crs_max_grade", "CRS any grade"),
    Summary("crs_ge3", "rate", "crs_max_grade", "CRS grade >= 3"),
    Summary("icans_any", "rate", "icans_max_grade", "ICANS any grade"),
    Summary("icans_ge3", "rate", "icans_max_grade", "ICANS grade >= 3"),
    Summary("orr", "rate", "best_response", "ORR (best CR or PR)"),
    Summary("cr", "rate", "best_response", "CR (best)"),
    Summary("cart_day7", "log_median", "blood_cart_day7_per_ul", "blood CAR-T day 7", "cells/uL"),
    Summary("cart_day14", "log_median", "blood_cart_day14_per_ul", "blood CAR-T day 14", "cells/uL"),
    Summary("cart_day28", "log_median", "blood_cart_day28_per_ul", "blood CAR-T day 28", "cells/uL"),
    Summary("cart_cmax", "log_median", "blood_cart_peak_per_ul", "blood CAR-T peak (Cmax)", "cells/uL"),
    Summary("cart_tmax", "log_median", "blood_cart_peak_day", "day of the blood CAR-T peak (Tmax)", "day"),
    Summary("cart_contraction", "log_median", "blood_cart_day28_over_peak",
            "blood CAR-T day 28 over the peak (contraction)"),
    Summary("cart_expansion", "log_median", "blood_cart_peak_over_nadir",
            "blood CAR-T peak over the post-infusion nadir (expansion)"),
)}

#: Endpoints a run contributes (columns of a wave's endpoints.csv).
ENDPOINTS = tuple(dict.fromkeys(s.endpoint for s in SUMMARIES.values()))

#: Best overall response (docs/model.md 11), %: costimulation -> (ORR, CR).
EFFICACY = {"CD28": (82, 54), "4-1BB": (52, 40)}
#: Trial sizes behind the rates: costimulation -> (safety n, efficacy n)
#: (ZUMA-1: 101 treated, Neelapu 2017; JULIET: 111 infused, 93 evaluable, Schuster 2019).
TRIAL_N = {"CD28": (101, 101), "4-1BB": (111, 93)}
def contraction_ratio(days: float, alpha: float, fb: float, beta: float) -> float:
    """Level ``days`` after the peak over the peak, biexponential decline (Stein 2019):
    ``(1 - FB) exp(-alpha t) + FB exp(-beta t)``."""
    return (1.0 - fb) * math.exp(-alpha * days) + fb * math.exp(-beta * days)


#: Blood CAR-T kinetics (docs/model.md 11): costimulation -> {summary: (value, source)}.
KINETICS = {
    "CD28": {"cart_day7": (27.5, "Kimmel 2021"), "cart_day14": (9.1, "Kimmel 2021"),
             "cart_day28": (2.1, "Kimmel 2021"),
             "cart_expansion": (100.0, "at least two logs over the post-infusion nadir")},
    "4-1BB": {"cart_tmax": (9.5, "Stein 2019 (Tmax ~9-10 d)"),
              "cart_contraction": (contraction_ratio(28.0 - 9.5, 0.16, 0.0079, 0.0032),
                                   "Stein 2019 (alpha 0.16/d, FB 0.79 %, beta 0.0032/d from a day-9.5 peak)"),
              "cart_expansion": (100.0, "at least two logs over the post-infusion nadir")},
}


def default_target(costimulation: str | None, summary: str) -> dict | None:
    """``{"observed", "n" or None, "source"}`` of docs/model.md 11 for an arm of this
    costimulation (None where section 11 gives no value)."""
    if costimulation not in CALIBRATION:
        return None
    cohort, *tox = CALIBRATION[costimulation]
    n_safety, n_eff = TRIAL_N[costimulation]
    rates = dict(zip(("crs_any", "crs_ge3", "icans_any", "icans_ge3"), tox))
    rates.update(zip(("orr", "cr"), EFFICACY[costimulation]))
    if summary in rates:
        n = n_eff if summary in ("orr", "cr") else n_safety
        return {"observed": rates[summary] / 100.0, "n": n, "source": cohort}
    if summary in KINETICS.get(costimulation, {}):
        value, source = KINETICS[costimulation][summary]
        return {"observed": value, "n": None, "source": source}
    return None


#: Time series a run's endpoints are computed from (tumour: whole tumour, else the patch count).
SERIES = ("time", "crs_grade", "icans_grade", "blood_cart_per_ul", "tumour_cells", "n_tumour")


def _read_series(h5) -> dict:
    ts = h5["timeseries"]
    out = {}
    for name in SERIES:
        if name not in ts:
            continue
        d = ts[name]
        v = d[()]
        fill = d.attrs.get("_FillValue")
        v = np.asarray(v, float) if fill is None else np.where(v == fill, np.nan, v).astype(float)
        out[name] = v
    return out


def run_endpoints(path) -> dict:
    """The endpoints of :data:`ENDPOINTS` of one run file.

    Computed as the ``ds.abm.endpoints()`` accessor does (the functions of
    :mod:`analysis.endpoints`: maximal grades, the blood CAR-T expansion peak
    from ``CART_PEAK_AFTER_DAYS`` on, levels at days 7 / 14 / 28, the best
    overall response of the whole tumour), reading only the time series they
    need (a tenth of the time of opening the whole file with xarray).
    Raises :class:`~abm.errors.FileFormatError` for a missing or damaged file.
    """
    from analysis import endpoints as E
    from analysis.io import check_open
    _, v = check_open(path, _read_series, verify=("timeseries",))
    t = v["time"]
    out: dict = {}
    for kind in ("crs", "icans"):
        g = v.get(f"{kind}_grade")
        out[f"{kind}_max_grade"] = (E.grade_summary(t, g)["max_grade"] if g is not None
                                    else math.nan)
    cart = v.get(E.CART_VAR)
    if cart is not None:
        late = np.where(t >= E.CART_PEAK_AFTER_DAYS - 1e-9, cart, np.nan)
        out["blood_cart_peak_per_ul"], out["blood_cart_peak_day"] = E.peak(t, late)
        for d in (7, 14, 28):
            out[f"blood_cart_day{d}_per_ul"] = E.value_at(t, cart, d)
        out["blood_cart_day28_over_peak"] = E.over_peak(out["blood_cart_day28_per_ul"],
                                                        out["blood_cart_peak_per_ul"])
        out["blood_cart_peak_over_nadir"] = E.fold_over_nadir(
            t, cart, out["blood_cart_peak_day"])[1]
    whole = E.TUMOUR_VAR in v
    tum = v.get(E.TUMOUR_VAR, v.get(E.PATCH_TUMOUR_VAR))
    out["best_response"] = (E.response(t, tum, E.RESPONSE_DAY, whole=whole)["best_response"]
                            if tum is not None else "")
    return {k: out.get(k, math.nan) for k in ENDPOINTS}


def event(summary: Summary, values) -> np.ndarray:
    """Per-run events of a rate summary (NaN where the endpoint is missing)."""
    v = np.asarray(values, dtype=object)
    out = np.full(v.shape, np.nan)
    for i, x in enumerate(v):
        if summary.endpoint == "best_response":
            if isinstance(x, str) and x:
                out[i] = float(x in ("CR", "PR")) if summary.name == "orr" else float(x == "CR")
            continue
        try:
            g = float(x)
        except (TypeError, ValueError):
            continue
        if math.isfinite(g):
            out[i] = float(g >= (3 if summary.name.endswith("ge3") else 1))
    return out


def summarise(summary: Summary, values, *, rng: np.random.Generator | None = None,
              n_boot: int = 200) -> tuple[float, float, int]:
    """``(value, sampling variance, n)`` of one summary over the runs of a population.

    Rates: the share of events and ``p (1 - p) / n``. Kinetics: log10 of the
    median (floored at :data:`LOG_FLOOR`) and its bootstrap variance over the
    runs. NaN when no run has the endpoint.
    """
    if summary.kind == "rate":
        e = event(summary, values)
        e = e[np.isfinite(e)]
        if e.size == 0:
            return math.nan, math.nan, 0
        p = float(e.mean())
        return p, p * (1 - p) / e.size, int(e.size)
    x = np.asarray([float(v) if not isinstance(v, str) else math.nan for v in values], float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, 0
    lx = np.log10(np.maximum(x, LOG_FLOOR))
    value = float(np.median(lx))
    if x.size < 2:
        return value, math.nan, 1
    rng = rng or np.random.default_rng(0)
    boot = np.median(lx[rng.integers(0, x.size, (n_boot, x.size))], axis=1)
    return value, float(np.var(boot)), int(x.size)


def to_scale(summary: Summary, observed: float) -> float:
    """An observed value on the scale the summary is emulated on (log10 for kinetics)."""
    return float(observed) if summary.kind == "rate" else math.log10(float(observed))


def from_scale(summary: Summary, value):
    """Inverse of :func:`to_scale` (elementwise)."""
    v = np.asarray(value, float)
    return v if summary.kind == "rate" else 10.0 ** v


__all__ = ["Summary", "SUMMARIES", "ENDPOINTS", "EFFICACY", "TRIAL_N", "KINETICS", "LOG_FLOOR",
           "contraction_ratio",
           "default_target", "run_endpoints", "event", "summarise", "to_scale", "from_scale"]
