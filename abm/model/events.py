"""Other post-infusion events: infusion reaction, tumour lysis syndrome, and the event classification.

docs/model.md section 8 (``docs/brain.md`` 6). Phase ``patient``, after physiology
and before the clinician and the CRS grade.

**Infusion reaction** (cryoprotectant / hypersensitivity, within minutes to
hours of infusion; no CAR-T expansion needed). Per patient, from stream
``INFUSION_REACTION`` (step 0; cell 0 occurrence, 1 onset, 2 duration,
3 fever, 4 wheeze, 5 flushing, 6 itch, 7 peak temperature): the reaction
occurs with probability ``reaction_probability``, starts ``U(0,
onset_max_h)`` after infusion and lasts ``U(duration_min_h,
duration_max_h)``. It may bring fever (``temperature_c`` is held at least at
a peak drawn in ``fever_c``), wheeze, flushing, itch. While it lasts -- and
while its fever is still breaking, for at most ``fever_attribution_h`` after
it -- ``infusion_reaction_active = 1``: the CRS grade attributes any fever to the
reaction ("fever not attributable to any other cause", ASTCT 2019), so an
infusion reaction is never graded as CRS (``abm.model.clinician.current_crs_grade``).

**Tumour lysis syndrome, laboratory (Cairo & Bishop 2004)**: two or more of
uric acid >= 8 mg/dL, K >= 6 mmol/L, phosphate >= 4.5 mg/dL, corrected
calcium <= 7 mg/dL -- or a 25 % rise (fall for calcium) from baseline -- at
the same time, between 3 days before and 7 days after therapy (infusion).
The labs are read every step (idealised monitoring); baselines are the labs
when this process starts (before any lysis). :func:`cairo_bishop_criteria`
and :func:`lab_tls` are pure functions.

**Classification** (:func:`classify_events`): every onset event in the log
(infusion reaction, CRS, ICANS, TLS) with its day after infusion, its
features, and whether its timing is typical (infusion reaction within 1 day;
CRS onset days 0-14; ICANS at or after CRS onset and within 28 days; TLS
within the Cairo-Bishop window).
"""

from __future__ import annotations

from dataclasses import dataclass

from abm.schema import Section, param
from abm.kernels import rng, streams
from abm.model.eventlog import log_event as _event

NAN = float("nan")

#: Labs of the Cairo-Bishop criteria: scalar name -> (absolute threshold, direction).
TLS_LABS = {
    "uric_acid_mg_dl": (8.0, +1),
    "potassium_mmol_l": (6.0, +1),
    "phosphate_mg_dl": (4.5, +1),
    "calcium_mg_dl": (7.0, -1),
}


@dataclass(frozen=True)
class EventParams(Section):
    """Infusion reaction and tumour lysis syndrome (Cairo-Bishop) criteria."""

    reaction_probability: float = param(0.05, unit="1", ge=0, le=1,
                                         doc="probability of an infusion reaction per patient")
    onset_max_h: float = param(2.0, unit="h", gt=0, le=24, doc="onset uniform within this long after infusion")
    duration_min_h: float = param(1.0, unit="h", gt=0, doc="shortest reaction")
    duration_max_h: float = param(4.0, unit="h", gt=0, doc="longest reaction")
    fever_probability: float = param(0.3, unit="1", ge=0, le=1, doc="reaction brings fever")
    fever_c: tuple[float, ...] = param((38.1, 38.8), unit="degC", ge=36, le=42, length=2,
                                       doc="range of the reaction's peak temperature")
    wheeze_probability: float = param(0.3, unit="1", ge=0, le=1, doc="reaction brings wheeze")
    flushing_probability: float = param(0.8, unit="1", ge=0, le=1, doc="reaction brings flushing")
    itch_probability: float = param(0.5, unit="1", ge=0, le=1, doc="reaction brings itch")
    fever_attribution_h: float = param(6.0, unit="h", ge=0,
                                       doc="a fever lasting past the reaction stays attributed to it this long")
    tls_window_days: tuple[float, ...] = param((-3.0, 7.0), unit="day", length=2,
                                               doc="Cairo-Bishop window relative to infusion")
    tls_relative_change: float = param(0.25, unit="1", ge=0, le=1,
                                       doc="relative change from baseline that counts (0: absolute thresholds only)")
    tls_min_criteria: int = param(2, unit="-", ge=1, le=4, doc="criteria needed for laboratory TLS")

    def check(self, fail):
        if self.duration_max_h < self.duration_min_h:
            fail("duration_max_h", f"must be >= events.duration_min_h = {self.duration_min_h}")
        lo, hi = self.fever_c
        if hi < lo:
            fail("fever_c", f"must be [low, high] with low <= high (got {[lo, hi]})")
        lo, hi = self.tls_window_days
        if hi < lo:
            fail("tls_window_days", f"must be [first, last] with first <= last (got {[lo, hi]})")


# -- pure functions ---------------------------------------------------------------------------

def cairo_bishop_criteria(labs: dict, baseline: dict | None = None, relative_change: float = 0.25) -> list[str]:
    """The Cairo-Bishop laboratory criteria met by ``labs`` (names of :data:`TLS_LABS`).

    A lab meets its criterion at its absolute threshold (uric acid >= 8 mg/dL,
    K >= 6 mmol/L, phosphate >= 4.5 mg/dL, calcium <= 7 mg/dL) or, given a
    ``baseline`` and ``relative_change > 0``, when it has risen (calcium: fallen) by at
    least ``relative_change`` of its baseline.
    """
    met = []
    for name, (threshold, sign) in TLS_LABS.items():
        if name not in labs:
            continue
        x = labs[name]
        ok = x >= threshold if sign > 0 else x <= threshold
        if not ok and baseline and relative_change > 0 and baseline.get(name, 0) > 0:
            b = baseline[name]
            ok = (x >= b * (1.0 + relative_change) - 1e-12 if sign > 0
                  else x <= b * (1.0 - relative_change) + 1e-12)
        if ok:
            met.append(name)
    return met


def lab_tls(labs: dict, day: float, baseline: dict | None = None, window=(-3.0, 7.0),
            relative_change: float = 0.25, min_criteria: int = 2) -> bool:
    """Laboratory TLS: ``>= min_criteria`` criteria met at ``day`` (relative to infusion) within ``window``."""
    if not (window[0] <= day <= window[1]):
        return False
    return len(cairo_bishop_criteria(labs, baseline, relative_change)) >= min_criteria


ONSET_KINDS = {"infusion_reaction": "infusion reaction", "crs_onset": "CRS", "icans_onset": "ICANS",
               "tls_lab": "TLS"}


def classify_events(events, infusion_day: float = 0.0, tls_window=(-3.0, 7.0)) -> list[dict]:
    """Classify each post-infusion onset event of an event log.

    Args:
        events: ``(time_day, kind, grade, detail)`` tuples (``state.events`` or the file's /events).
        infusion_day: day of infusion.

    Returns:
        One dict per onset (``infusion_reaction``, ``crs_onset``, ``icans_onset``, ``tls_lab``), in
        time order: ``class`` (infusion reaction / CRS / ICANS / TLS), ``day`` (after infusion),
        ``grade``, ``features`` (the event detail), ``typical_timing`` (bool) and ``note``.
    """
    out, crs_first = [], NAN
    for t, kind, grade, detail in events:
        if kind not in ONSET_KINDS:
            continue
        d = t - infusion_day
        if kind == "infusion_reaction":
            typical, note = 0.0 <= d <= 1.0, "minutes to hours after infusion"
        elif kind == "crs_onset":
            if crs_first != crs_first:
                crs_first = t
            typical, note = 0.0 <= d <= 14.0, "fever with expansion, days 0-14"
        elif kind == "icans_onset":
            after = crs_first == crs_first and t >= crs_first
            typical = after and d <= 28.0
            note = ("during or after CRS" if after else
                    "before or without CRS: consider other causes (infection, metabolic, drugs)")
        else:
            typical, note = tls_window[0] <= d <= tls_window[1], "Cairo-Bishop laboratory criteria"
        out.append({"class": ONSET_KINDS[kind], "kind": kind, "day": d, "grade": int(grade),
                    "features": detail, "typical_timing": bool(typical), "note": note})
    return out


# -- the process model ------------------------------------------------------------------------

RECORDED = {
    "infusion_reaction_active": ("1", "infusion reaction ongoing (fever attributed to it)"),
    "tls_criteria": ("1", "Cairo-Bishop laboratory criteria met now"),
    "tls_lab": ("1", "laboratory TLS now (>= 2 criteria within the window)"),
}
ENDPOINTS = {
    "infusion_reaction": ("1", "an infusion reaction occurred"),
    "infusion_reaction_onset_day": ("day", "infusion reaction onset (NaN if none)"),
    "tls_lab_any": ("1", "laboratory TLS at any time in the window"),
    "tls_onset_day": ("day", "first laboratory TLS (NaN if none)"),
    "tls_max_criteria": ("1", "most Cairo-Bishop criteria met at once in the window"),
}


class PostInfusionEvents:
    """Infusion reaction and laboratory TLS (phase ``patient``, before the clinician and CRS grade).

    Reads the TLS labs and ``temperature_c``; writes :data:`RECORDED`,
    ``infusion_reaction_*`` and ``tls_*`` scalars; appends ``infusion_reaction``,
    ``infusion_reaction_resolved``, ``tls_lab`` and ``tls_resolved`` events.
    """

    phase = "patient"
    meta = {**RECORDED, **ENDPOINTS}

    def __init__(self, sim):
        p = self.p = sim.config.events
        self.seed = sim.seed
        self.infusion_day = sim.config.blood.infusion_day
        self.dt_day = sim.config.run.dt_min / 1440.0
        s = sim.state.scalars
        if "events_initialised" not in s:
            s["events_initialised"] = 1.0
            u = [rng.uniform(self.seed, streams.INFUSION_REACTION, 0, i, 0) for i in range(8)]
            occurs = u[0] < p.reaction_probability
            s["infusion_reaction"] = 0.0
            s["infusion_reaction_active"] = 0.0
            s["infusion_reaction_planned"] = 1.0 if occurs else 0.0
            start = self.infusion_day + u[1] * p.onset_max_h / 24.0
            s["infusion_reaction_start_day"] = start if occurs else NAN
            dur = p.duration_min_h + u[2] * (p.duration_max_h - p.duration_min_h)
            s["infusion_reaction_end_day"] = start + dur / 24.0 if occurs else NAN
            s["infusion_reaction_fever"] = 1.0 if u[3] < p.fever_probability else 0.0
            s["infusion_reaction_wheeze"] = 1.0 if u[4] < p.wheeze_probability else 0.0
            s["infusion_reaction_flushing"] = 1.0 if u[5] < p.flushing_probability else 0.0
            s["infusion_reaction_itch"] = 1.0 if u[6] < p.itch_probability else 0.0
            s["infusion_reaction_peak_c"] = p.fever_c[0] + u[7] * (p.fever_c[1] - p.fever_c[0])
            s["infusion_reaction_onset_day"] = NAN
            for name in TLS_LABS:
                s[f"tls_baseline_{name}"] = s.get(name, NAN)
            s["tls_criteria"] = 0.0
            s["tls_lab"] = 0.0
            s["tls_lab_any"] = 0.0
            s["tls_onset_day"] = NAN
            s["tls_max_criteria"] = 0.0

    def features(self, s: dict) -> str:
        f = [name for name in ("fever", "wheeze", "flushing", "itch") if s[f"infusion_reaction_{name}"] > 0]
        return ", ".join(f) if f else "no signs recorded"

    def step(self, state):
        p, s = self.p, state.scalars
        t = state.time_day + self.dt_day
        # infusion reaction
        if s["infusion_reaction_planned"] > 0:
            active = s["infusion_reaction_start_day"] <= t < s["infusion_reaction_end_day"]
            # the same fever, still breaking after the reaction ended, is still the reaction's
            lingering = (not active and s["infusion_reaction_active"] > 0 and s.get("temperature_c", 37.0) >= 38.0
                         and t < s["infusion_reaction_end_day"] + p.fever_attribution_h / 24.0)
            if active and s["infusion_reaction"] == 0.0:
                s["infusion_reaction"] = 1.0
                s["infusion_reaction_onset_day"] = t
                _event(state, t, "infusion_reaction", 0,
                       f"{(t - self.infusion_day) * 24:.1f} h after infusion; {self.features(s)}; "
                       f"lasts {(s['infusion_reaction_end_day'] - s['infusion_reaction_start_day']) * 24:.1f} h")
            if not (active or lingering) and s["infusion_reaction_active"] > 0:
                _event(state, t, "infusion_reaction_resolved", 0, "")
            s["infusion_reaction_active"] = 1.0 if (active or lingering) else 0.0
            if active and s["infusion_reaction_fever"] > 0:
                s["temperature_c"] = max(s.get("temperature_c", 37.0), s["infusion_reaction_peak_c"])
                s["temperature_max_c"] = max(s.get("temperature_max_c", 0.0), s["temperature_c"])
        # laboratory TLS
        labs = {name: s[name] for name in TLS_LABS if name in s}
        base = {name: s[f"tls_baseline_{name}"] for name in TLS_LABS}
        day = t - self.infusion_day
        lo, hi = p.tls_window_days
        met = cairo_bishop_criteria(labs, base, p.tls_relative_change) if lo <= day <= hi else []
        s["tls_criteria"] = float(len(met))
        s["tls_max_criteria"] = max(s["tls_max_criteria"], float(len(met)))
        tls = len(met) >= p.tls_min_criteria
        if tls and s["tls_lab"] == 0.0:
            if s["tls_onset_day"] != s["tls_onset_day"]:
                s["tls_onset_day"] = t
            _event(state, t, "tls_lab", 0, f"day {day:+.2f}; " + ", ".join(
                f"{name} {labs[name]:.2f}" for name in met))
        elif not tls and s["tls_lab"] > 0:
            _event(state, t, "tls_resolved", 0, "criteria no longer met" if lo <= day <= hi else "window closed")
        s["tls_lab"] = 1.0 if tls else 0.0
        s["tls_lab_any"] = max(s["tls_lab_any"], s["tls_lab"])

    def record(self, state, row):
        s = state.scalars
        for key in RECORDED:
            row[key] = s[key]

    def endpoints(self, state, out):
        s = state.scalars
        for key in ENDPOINTS:
            out[key] = s[key]


