"""Constants and explanatory notes shared by the batch and the comparison report.

The calibration targets are those of docs/model.md section 11; the notes are the
paragraphs printed under the calibration and trend tables and the captions
of the figures both reports draw.
"""

from __future__ import annotations

#: The two grade endpoints reported (``<kind>_max_grade``).
KINDS = ("crs", "icans")
#: docs/model.md section 11: pivotal-trial rates by costimulation domain, % (CRS any, CRS >= 3,
#: neurotoxicity any, neurotoxicity >= 3).
CALIBRATION = {
    "CD28": ("ZUMA-1 axi-cel (CD28), n ~ 100", 93, 13, 64, 28),
    "4-1BB": ("JULIET tisa-cel (4-1BB), n ~ 110", 58, 22, 21, 12),
}
#: The outcomes compared with CALIBRATION, in its order (ICANS stands for neurotoxicity).
CALIBRATION_OUTCOMES = ("CRS any grade", "CRS grade >= 3", "ICANS any grade", "ICANS grade >= 3")
#: Tolerance of the calibration band, percentage points (see :func:`analysis.calibration.in_band`).
BAND_PP = 10.0
#: Fewest runs per cohort for an in-band verdict: below it the Wilson interval is wider
#: than the band it is compared with (at n = 20 and p = 0.5 it is about +-21 points).
MIN_RUNS = 20
#: Shortest follow-up (days, every run of the cohort) for an in-band verdict: the pivotal
#: rates count events over the first 28 days after infusion, and ICANS starts later than CRS.
MIN_FOLLOW_UP_DAYS = 28.0
#: Costimulation of the built-in product presets (when a file's config does not say).
PRESET_COSTIMULATION = {"cd28": "CD28", "4-1bb": "4-1BB"}

CALIBRATION_NOTE = (
    "Pivotal-trial rates used other grading scales (Lee 2014 for ZUMA-1, Penn for JULIET) "
    "and neurotoxicity is not exactly ICANS: aim for the band, not the point. The target "
    "row follows the product's costimulation (CD28 -> ZUMA-1, 4-1BB -> JULIET). **In band**: "
    f"the target lies inside the simulated 95 % Wilson interval widened to at least "
    f"+-{BAND_PP:g} percentage points around the simulated rate, i.e. "
    f"min(lo, p - {BAND_PP:g} pp) <= target <= max(hi, p + {BAND_PP:g} pp); the interval "
    "carries the virtual trial's sampling error, the tolerance the pivotal trial's own "
    "(~+-7 points at n ~ 100) and the differences of grading scale. A verdict needs at "
    f"least {MIN_RUNS} runs in the cohort and a follow-up of at least {MIN_FOLLOW_UP_DAYS:g} "
    "days in every run (the trials count events over 28 days); otherwise it reads **not "
    "assessed** with the reason (e.g. n = 4 < 20, follow-up 3 d < 28 d), however wide the "
    "interval.")

#: Under the trend table; ``{lab}`` is the covariate's label.
TREND_NOTE = (
    "**Cochran-Armitage** test for trend over the decade bins of {lab} (scores: log10 "
    "of each bin's geometric-mean value); z > 0 means risk rising with {lab}; the p-value "
    "is one-sided for an increase (two-sided and decreasing p-values in "
    "[trend.csv](trend.csv)). **Logistic slope**: change of the log-odds per 10-fold "
    "increase of {lab} in the Firth-penalised logistic fit on log10 {lab}, with its profile "
    "penalised-likelihood 95 % interval and the two-sided penalised likelihood-ratio "
    "p-value (Heinze & Schemper 2002; Wald values in trend.csv). docs/model.md 10.3 expects "
    "a monotone rise of CRS and ICANS risk with tumour burden.")

GRADE_CAPTION = "Share of runs by their maximal CRS / ICANS grade (ASTCT 2019)."
ONSET_CAPTION = ("Cumulative incidence of onset (Kaplan-Meier; runs without onset censored at "
                 "the end of their follow-up; no competing risks) with 95 % log(-log) bands.")

__all__ = ["KINDS", "CALIBRATION", "CALIBRATION_OUTCOMES", "BAND_PP", "PRESET_COSTIMULATION", "MIN_RUNS",
           "MIN_FOLLOW_UP_DAYS",
           "CALIBRATION_NOTE", "TREND_NOTE", "GRADE_CAPTION", "ONSET_CAPTION"]
