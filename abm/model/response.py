"""Tumour response of the whole patient, Lugano-like, from the patient-level tumour.

Imaging measures the sum of the products of perpendicular diameters (SPD), an
area, so a tumour of ``T`` cells from a baseline ``T_0`` (at infusion) has
``SPD / SPD_0 = (T / T_0)^(2/3)``. Categories at an assessment::

    CR  T < response.detection_limit_cells (no disease seen on imaging)
    PR  SPD fell by >= 50 %           (T / T_0)^(2/3) <= 0.5
    PD  SPD rose by >= 50 %           (T / T_0)^(2/3) >= 1.5
    SD  otherwise

Codes 3 (CR), 2 (PR), 1 (SD), 0 (PD). Reported: the category on
``response.evaluation_day`` (day 28 by default, or the last day simulated if
the run ends before) and the best category over the follow-up from
``response.first_assessment_day`` to the end of the run (set ``run.end_day``
to 90 for a three-month follow-up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abm.schema import Section, param

CATEGORIES = ("PD", "SD", "PR", "CR")
#: Codes of the categories (the index in :data:`CATEGORIES`).
PD, SD, PR, CR = range(4)


@dataclass(frozen=True)
class ResponseParams(Section):
    """Lugano-like response assessment of the whole tumour."""

    detection_limit_cells: float = param(
        1e9, unit="cells", gt=0, le=1e12,
        doc="tumour below this is not seen on imaging: complete response (about 1 mL, a lesion of ~1 cm, "
            "the smallest reliably measured on PET-CT)")
    evaluation_day: float = param(28.0, unit="day", gt=0, le=365, doc="day of the first response assessment")
    first_assessment_day: float = param(14.0, unit="day", ge=0, le=365,
                                        doc="the best response counts assessments from this day on")


def category(tumour_cells: float, baseline_cells: float, detection_limit_cells: float) -> int:
    """The response code of a tumour of ``tumour_cells`` against its ``baseline_cells``."""
    if tumour_cells < detection_limit_cells:
        return CR
    spd_ratio = (tumour_cells / baseline_cells) ** (2.0 / 3.0) if baseline_cells > 0 else math.inf
    if spd_ratio <= 0.5:
        return PR
    if spd_ratio >= 1.5:
        return PD
    return SD


class TumourResponse:
    """Response of the whole tumour at each step (phase ``patient``); endpoints at the end."""

    phase = "patient"
    meta = {"response_code": ("1", "Lugano-like response now: 0 PD, 1 SD, 2 PR, 3 CR"),
            "tumour_change": ("1", "whole-tumour cells relative to the infusion day, minus 1"),
            "response_eval_code": ("1", "response on response.evaluation_day: 0 PD, 1 SD, 2 PR, 3 CR"),
            "best_response_code": ("1", "best response over the follow-up: 0 PD, 1 SD, 2 PR, 3 CR"),
            "tumour_baseline_cells": ("cells", "whole-tumour cells on the infusion day")}

    def __init__(self, sim):
        self.p = sim.config.response
        self.end_day = sim.config.run.end_day
        s = sim.state.scalars
        s.setdefault("tumour_baseline_cells", float("nan"))
        s.setdefault("response_code", float("nan"))
        s.setdefault("response_eval_code", float("nan"))
        s.setdefault("best_response_code", float("nan"))
        s.setdefault("tumour_change", 0.0)

    def step(self, state) -> None:
        s = state.scalars
        t_now = state.time_day + state.dt_s / 86400.0
        tumour = s.get("tumour_cells", float("nan"))
        if not math.isfinite(s["tumour_baseline_cells"]):
            if t_now < -1e-9:
                return
            s["tumour_baseline_cells"] = tumour
        base = s["tumour_baseline_cells"]
        code = category(tumour, base, self.p.detection_limit_cells)
        s["response_code"] = float(code)
        s["tumour_change"] = tumour / base - 1.0 if base > 0 else float("nan")
        eval_day = min(self.p.evaluation_day, self.end_day)
        if t_now <= eval_day + 1e-9:
            s["response_eval_code"] = float(code)
        if t_now >= self.p.first_assessment_day - 1e-9 or t_now >= self.end_day - 1e-9:
            best = s["best_response_code"]
            s["best_response_code"] = float(code) if not math.isfinite(best) else max(best, float(code))

    def record(self, state, row) -> None:
        s = state.scalars
        row["response_code"] = s["response_code"]
        row["tumour_change"] = s["tumour_change"]

    def endpoints(self, state, out) -> None:
        s = state.scalars
        out["response_eval_code"] = s["response_eval_code"]
        out["best_response_code"] = s["best_response_code"]
        out["tumour_baseline_cells"] = s["tumour_baseline_cells"]
