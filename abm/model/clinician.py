"""The virtual clinician and the continuous ASTCT CRS grade (phase ``patient``).

:class:`Clinician` behaves like a ward team: it assesses the patient
every ``assessment_interval_h`` (every ``close_assessment_interval_h`` once
there is CRS or any support), reads MAP and SpO2 with measurement noise
(stream ``CLINICIAN``: cell 0 = MAP, 1 = SpO2; one draw per assessment step)
and acts:

* **hypotension** (measured MAP under ``map_target_mmhg`` at
  ``map_persist_assessments`` consecutive assessments, or under
  ``map_severe_mmhg`` once): a fluid bolus while fewer than
  ``max_boluses_per_24h`` were given in the last 24 h, then a first
  vasopressor, then -- each after ``escalate_after_h`` more on the current
  rung -- vasopressin as an add-on (if allowed; it does not count as a second
  vasopressor) and further vasopressors up to ``max_vasopressors``. Weaning:
  one rung down after MAP stayed >= target + ``wean_margin_mmhg`` for
  ``wean_after_h``;
* **hypoxia** (measured SpO2 under ``spo2_target_pct``): titrates up the
  oxygen rungs of :data:`~abm.model.physiology.OXYGEN_RUNGS` (low-flow 2-6
  L/min, high flow, positive pressure) to the lowest that restores the
  target; one rung down after ``oxygen_wean_after_h`` with SpO2 >= target +
  ``oxygen_wean_margin_pct``. A febrile patient whose room-air SpO2 is at
  target but below ``comfort_spo2_below_pct`` gets 2 L/min *for comfort*
  (``oxygen_for_comfort``; not counted by the grade);
* **drugs**: tocilizumab ``8 mg/kg`` (max 800 mg) at CRS grade >=
  ``tocilizumab_min_grade`` with at least ``tocilizumab_min_interval_h``
  between doses, at most ``tocilizumab_max_doses_24h`` in 24 h and
  ``tocilizumab_max_doses`` in all; dexamethasone ``dex_mg`` every
  ``dex_interval_h`` while CRS >= ``dex_min_grade``, or CRS >= 2 for
  ``dex_refractory_h`` after the episode's first tocilizumab (or after its
  onset when no tocilizumab can be given: refractory), or ICANS >=
  ``dex_icans_min_grade`` (``icans_grade`` scalar), ``dex_grade4_mg`` at grade 4;
  a course goes on until CRS improves to grade <= 1, then ``dex_taper_mg``
  every ``dex_taper_interval_h`` for ``dex_taper_days``;
  methylprednisolone ``mp_mg`` daily at grade >= ``mp_min_grade``; anakinra
  (optional) for CRS >= ``anakinra_min_grade`` after tocilizumab;
  prophylactic dexamethasone / tocilizumab on given days; the seizure
  prophylaxis flag.

:class:`CRSGrade` then grades CRS every step from fever and the support
given (:func:`abm.grading.crs_grade`): fluids count as hypotension support
for ``fluid_support_window_h`` after the last bolus; fever is no longer
required once tocilizumab or a steroid was given at or after CRS onset. An
episode starts at the first grade >= 1 and resolves after
``resolution_hold_h`` at grade 0 (the resolution time is the start of that
stretch). Onset, resolution, duration and maximum grade are scalars; onset,
each new episode maximum and resolution are appended to ``state.events``
(a resolution when it is known, i.e. ``resolution_hold_h`` after the
resolution time given in its detail, so event times never go backwards).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from abm import grading
from abm.presets import load_presets
from abm.schema import Section, param
from abm.kernels import rng, streams
from abm.model import drugs
from abm.model.physiology import OXYGEN_RUNG_LEVEL, OXYGEN_RUNGS, Vitals
from abm.model.eventlog import log_event as _event

_PRESETS = load_presets("clinician")
NAN = float("nan")


@dataclass(frozen=True)
class ClinicianParams(Section):
    """Policy of the virtual clinician (presets in ``abm/presets/clinician.toml``)."""

    PRESETS: ClassVar[dict] = _PRESETS

    preset: str = param("default", unit="-", choices=tuple(_PRESETS),
                        doc="named policy applied before the keys below")
    # monitoring
    assessment_interval_h: float = param(4.0, unit="h", gt=0, le=24, doc="ward assessment interval")
    close_assessment_interval_h: float = param(1.0, unit="h", gt=0, le=24,
                                               doc="interval once CRS or any support is present")
    map_noise_sd_mmhg: float = param(3.0, unit="mmHg", ge=0, doc="measurement noise of MAP")
    spo2_noise_sd_pct: float = param(1.0, unit="%", ge=0, doc="measurement noise of SpO2")
    # hypotension
    map_target_mmhg: float = param(65.0, unit="mmHg", gt=0, doc="MAP target")
    map_severe_mmhg: float = param(55.0, unit="mmHg", gt=0, doc="MAP acted on at the first reading")
    map_persist_assessments: int = param(2, unit="-", ge=1, le=10,
                                         doc="consecutive low MAP readings before acting")
    fluid_bolus_ml: float = param(1000.0, unit="mL", gt=0, le=3000, doc="crystalloid bolus volume")
    max_boluses_per_24h: int = param(3, unit="-", ge=0, le=10, doc="boluses before a vasopressor")
    fluid_support_window_h: float = param(6.0, unit="h", gt=0,
                                          doc="a bolus counts as hypotension support this long (grading)")
    vasopressin: bool = param(True, unit="-", doc="add vasopressin after the first vasopressor")
    max_vasopressors: int = param(3, unit="-", ge=1, le=4, doc="vasopressors excluding vasopressin")
    escalate_after_h: float = param(2.0, unit="h", ge=0, doc="time on a vasopressor rung before the next")
    wean_margin_mmhg: float = param(10.0, unit="mmHg", ge=0, doc="MAP above target needed to wean")
    wean_after_h: float = param(6.0, unit="h", ge=0, doc="time above target + margin before weaning a rung")
    # oxygen
    spo2_target_pct: float = param(92.0, unit="%", gt=50, le=100, doc="SpO2 target")
    spo2_severe_pct: float = param(88.0, unit="%", gt=0, le=100, doc="SpO2 acted on at the first reading")
    spo2_persist_assessments: int = param(1, unit="-", ge=1, le=10,
                                          doc="consecutive low SpO2 readings before acting")
    oxygen_wean_margin_pct: float = param(3.0, unit="%", ge=0, doc="SpO2 above target needed to wean")
    oxygen_wean_after_h: float = param(4.0, unit="h", ge=0, doc="time on a rung before weaning")
    comfort_oxygen: bool = param(True, unit="-", doc="give 2 L/min for comfort to febrile patients")
    comfort_spo2_below_pct: float = param(95.0, unit="%", gt=0, le=100,
                                          doc="room-air SpO2 under which a febrile patient gets comfort O2")
    # tocilizumab
    tocilizumab: bool = param(True, unit="-", doc="tocilizumab is allowed")
    tocilizumab_min_grade: int = param(2, unit="-", ge=1, le=4, doc="CRS grade that triggers tocilizumab")
    tocilizumab_mg_per_kg: float = param(8.0, unit="mg/kg", gt=0, le=12, doc="tocilizumab dose")
    tocilizumab_max_mg: float = param(800.0, unit="mg", gt=0, doc="maximal single dose")
    tocilizumab_min_interval_h: float = param(8.0, unit="h", ge=0, doc="minimal time between doses")
    tocilizumab_max_doses_24h: int = param(3, unit="-", ge=1, le=10, doc="doses in any 24 h")
    tocilizumab_max_doses: int = param(4, unit="-", ge=1, le=20, doc="doses in all")
    # steroids
    dexamethasone: bool = param(True, unit="-", doc="dexamethasone is allowed")
    dex_min_grade: int = param(3, unit="-", ge=1, le=4, doc="CRS grade that triggers dexamethasone")
    dex_refractory_h: float = param(24.0, unit="h", gt=0,
                                    doc="CRS >= 2 this long after the first tocilizumab is refractory")
    dex_icans_min_grade: int = param(2, unit="-", ge=1, le=4, doc="ICANS grade that triggers dexamethasone")
    dex_mg: float = param(10.0, unit="mg", gt=0, le=100, doc="dexamethasone dose")
    dex_grade4_mg: float = param(20.0, unit="mg", gt=0, le=100, doc="dexamethasone dose at grade 4")
    dex_interval_h: float = param(6.0, unit="h", gt=0, doc="dexamethasone dosing interval")
    dex_taper_days: float = param(2.0, unit="day", ge=0, le=30,
                                  doc="taper after a course ends (CRS <= 1); 0: stop at once")
    dex_taper_mg: float = param(5.0, unit="mg", gt=0, le=100, doc="dexamethasone taper dose")
    dex_taper_interval_h: float = param(12.0, unit="h", gt=0, doc="dexamethasone taper interval")
    methylprednisolone: bool = param(True, unit="-", doc="high-dose methylprednisolone is allowed")
    mp_min_grade: int = param(4, unit="-", ge=1, le=4, doc="CRS grade that triggers methylprednisolone")
    mp_mg: float = param(1000.0, unit="mg", gt=0, le=2000, doc="methylprednisolone daily dose")
    mp_max_doses: int = param(3, unit="-", ge=1, le=10, doc="methylprednisolone doses in all")
    mp_icans_min_grade: int = param(4, unit="-", ge=1, le=4,
                                    doc="ICANS grade that triggers methylprednisolone (no tocilizumab for ICANS)")
    anakinra: bool = param(False, unit="-", doc="anakinra is allowed")
    anakinra_min_grade: int = param(3, unit="-", ge=1, le=4,
                                    doc="CRS grade (after tocilizumab) that triggers anakinra")
    anakinra_mg: float = param(100.0, unit="mg", gt=0, le=1000, doc="anakinra dose")
    anakinra_interval_h: float = param(6.0, unit="h", gt=0, doc="anakinra dosing interval")
    # prophylaxis
    seizure_prophylaxis: bool = param(True, unit="-", doc="levetiracetam seizure prophylaxis")
    seizure_prophylaxis_days: tuple[float, ...] = param((0.0, 30.0), unit="day", length=2,
                                                        doc="first and last day of seizure prophylaxis")
    seizure_treatment: bool = param(True, unit="-",
                                    doc="treat a seizure: benzodiazepine, levetiracetam load and maintenance")
    antiepileptic_days: float = param(30.0, unit="day", gt=0, doc="levetiracetam maintenance after a seizure")
    prophylactic_dex_days: tuple[float, ...] = param((), unit="day", doc="days of prophylactic dexamethasone")
    prophylactic_dex_mg: float = param(10.0, unit="mg", gt=0, le=100, doc="prophylactic dexamethasone dose")
    prophylactic_tocilizumab_days: tuple[float, ...] = param((), unit="day",
                                                             doc="days of prophylactic tocilizumab")
    # grading
    resolution_hold_h: float = param(24.0, unit="h", ge=0, doc="grade 0 this long resolves a CRS episode")

    def check(self, fail):
        if self.map_severe_mmhg > self.map_target_mmhg:
            fail("map_severe_mmhg", f"must not exceed clinician.map_target_mmhg = {self.map_target_mmhg} "
                                    f"(got {self.map_severe_mmhg})")
        if self.spo2_severe_pct > self.spo2_target_pct:
            fail("spo2_severe_pct", f"must not exceed clinician.spo2_target_pct = {self.spo2_target_pct} "
                                    f"(got {self.spo2_severe_pct})")
        lo, hi = self.seizure_prophylaxis_days
        if hi < lo:
            fail("seizure_prophylaxis_days", f"must be [first, last] with first <= last (got {[lo, hi]})")

    def vasopressor_rungs(self) -> list[tuple[int, int]]:
        """Escalation ladder: (vasopressors excluding vasopressin, vasopressin) per rung."""
        rungs = [(0, 0), (1, 0)]
        if self.vasopressin:
            rungs.append((1, 1))
        for n in range(2, self.max_vasopressors + 1):
            rungs.append((n, 1 if self.vasopressin else 0))
        return rungs


def hypotension_support(s: dict, t: float, window_h: float) -> int:
    """ASTCT hypotension support level from the scalars at time ``t`` (day)."""
    fluids = t - s.get("clin_last_bolus_day", -math.inf) <= window_h / 24.0 + 1e-9
    return grading.hypotension_level(int(s.get("vasopressors", 0.0)), fluids, s.get("vasopressin", 0.0) > 0)


def oxygen_support(s: dict) -> int:
    """ASTCT hypoxia support level (comfort oxygen never counts: it is not a therapeutic rung)."""
    return OXYGEN_RUNG_LEVEL[int(s.get("oxygen_rung", 0.0))]


def crs_masked(s: dict) -> bool:
    """Tocilizumab or a steroid given at or after the first CRS onset."""
    onset = s.get("crs_onset_day", NAN)
    if onset != onset:
        return False
    return any(s.get(f"{d}_last_day", -math.inf) >= onset - 1e-9
               for d in ("tocilizumab", "dexamethasone", "methylprednisolone"))


def current_crs_grade(s: dict, t: float, window_h: float) -> int:
    """ASTCT CRS grade from the scalars (temperature, support, masking) at time ``t``.

    Fever during an infusion reaction (``infusion_reaction_active``, :mod:`abm.model.events`)
    is attributed to the reaction ("not attributable to any other cause"), not to CRS.
    """
    temperature = s.get("temperature_c", 37.0)
    if s.get("infusion_reaction_active", 0.0) > 0.0:
        temperature = min(temperature, grading.FEVER_C - 0.5)
    return grading.crs_grade(temperature, hypotension_support(s, t, window_h), oxygen_support(s), crs_masked(s))


#: Recorded scalars of the clinician: name -> (unit, long name).
RECORDED = {
    "vasopressors": ("1", "vasopressors running, excluding vasopressin"),
    "vasopressin": ("1", "vasopressin running (add-on)"),
    "oxygen_rung": ("1", "oxygen support rung (0 room air ... 9 ventilation)"),
    "oxygen_flow_l_min": ("L/min", "oxygen flow (0 for positive pressure)"),
    "oxygen_for_comfort": ("1", "oxygen given for comfort only"),
    "fluids_total_ml": ("mL", "cumulative fluid boluses"),
    "fluid_boluses": ("1", "fluid boluses given"),
    "seizure_prophylaxis": ("1", "on seizure prophylaxis"),
    "antiepileptic": ("1", "on levetiracetam after a seizure"),
}


class Clinician:
    """Ward assessments and treatment decisions (phase ``patient``, after physiology).

    Reads: vitals and support scalars, ``crs_grade`` (via the same rules as
    :class:`CRSGrade`), ``icans_grade`` (0 when absent), drug history.
    Writes: ``vasopressors``, ``vasopressin``, ``oxygen_rung``,
    ``oxygen_for_comfort``, fluids, doses (through :func:`abm.model.drugs.give`),
    ``seizure_prophylaxis`` and its own ``clin_*`` bookkeeping.
    """

    phase = "patient"
    meta = RECORDED

    def __init__(self, sim):
        cfg = sim.config
        self.c = cfg.clinician
        self.v = Vitals(cfg, sim.seed)
        self.seed = sim.seed
        self.weight = cfg.patient.weight_kg
        self.dt_day = cfg.run.dt_min / 1440.0
        self.rungs = self.c.vasopressor_rungs()
        self.proph_dex = sorted(self.c.prophylactic_dex_days)
        self.proph_tcz = sorted(self.c.prophylactic_tocilizumab_days)
        s = sim.state.scalars
        if "clinician_initialised" not in s:
            s["clinician_initialised"] = 1.0
            for key in ("vasopressors", "vasopressin", "oxygen_rung", "oxygen_flow_l_min",
                        "oxygen_for_comfort", "fluids_total_ml", "fluid_boluses", "seizure_prophylaxis",
                        "clin_vasopressor_rung", "clin_map_low_count", "clin_spo2_low_count",
                        "clin_proph_dex_next", "clin_proph_tcz_next", "vasopressors_max",
                        "oxygen_rung_max", "antiepileptic", "clin_seizures_seen"):
                s[key] = 0.0
            s["clin_antiepileptic_until_day"] = -math.inf
            s["clin_next_assessment_day"] = cfg.run.start_day
            s["clin_hemo_changed_day"] = -math.inf
            s["clin_o2_changed_day"] = -math.inf
            s["clin_map_ok_since_day"] = NAN
            s["clin_tcz_episode_first_day"] = NAN
            s["clin_dex_course"] = 0.0
            s["clin_dex_taper_until_day"] = -math.inf
            s["clin_last_bolus_day"] = -math.inf
            for i in range(self.c.max_boluses_per_24h):
                s[f"clin_bolus_day_{i}"] = -math.inf
            for i in range(self.c.tocilizumab_max_doses_24h):
                s[f"clin_tcz_day_{i}"] = -math.inf

    # -- helpers -------------------------------------------------------------------
    def _noise(self, state, cell: int) -> float:
        return float(rng.normal(self.seed, streams.CLINICIAN, state.step, cell, 0))

    @staticmethod
    def _slot_free(s: dict, prefix: str, n: int, t: float) -> bool:
        """True when one of ``n`` ring slots holds a time older than 24 h."""
        return n > 0 and min(s[f"{prefix}{i}"] for i in range(n)) <= t - 1.0 + 1e-9

    @staticmethod
    def _slot_use(s: dict, prefix: str, n: int, t: float) -> None:
        oldest = min(range(n), key=lambda i: s[f"{prefix}{i}"])
        s[f"{prefix}{oldest}"] = t

    def _set_vasopressor_rung(self, state, s: dict, rung: int, t: float, why: str) -> None:
        old = int(s["clin_vasopressor_rung"])
        n, vp = self.rungs[rung]
        s["clin_vasopressor_rung"] = float(rung)
        s["vasopressors"], s["vasopressin"] = float(n), float(vp)
        s["clin_hemo_changed_day"] = t
        kind = "vasopressor_up" if rung > old else "vasopressor_down"
        _event(state, t, kind, 0, f"{n} vasopressor(s){' + vasopressin' if vp else ''}; {why}")

    def _set_oxygen_rung(self, state, s: dict, rung: int, t: float, why: str) -> None:
        old = int(s["oxygen_rung"])
        s["oxygen_rung"] = float(rung)
        s["oxygen_flow_l_min"] = OXYGEN_RUNGS[rung][1]
        s["clin_o2_changed_day"] = t
        if rung > 0:
            s["oxygen_for_comfort"] = 0.0
        device, flow, fio2, _ = OXYGEN_RUNGS[rung]
        kind = "oxygen_up" if rung > old else "oxygen_down"
        _event(state, t, kind, 0, f"{device} {flow:g} L/min FiO2 {fio2:g}; {why}")

    # -- one step -------------------------------------------------------------------
    def step(self, state):
        c, s = self.c, state.scalars
        t = state.time_day + self.dt_day
        self._prophylaxis(state, s, t)
        self._seizure(state, s, t)
        if t >= s["clin_next_assessment_day"] - 1e-9:
            self._assess(state, s, t)
            close = (s.get("crs_grade", 0.0) >= 1 or s.get("icans_grade", 0.0) >= 1 or s["clin_vasopressor_rung"] > 0
                     or s["oxygen_rung"] > 0 or t - s["clin_last_bolus_day"] < 1.0)
            interval = c.close_assessment_interval_h if close else c.assessment_interval_h
            s["clin_next_assessment_day"] = t + interval / 24.0
        s["vasopressors_max"] = max(s["vasopressors_max"], s["vasopressors"])
        s["oxygen_rung_max"] = max(s["oxygen_rung_max"], s["oxygen_rung"])
        self.v.update_vitals(s)

    def _prophylaxis(self, state, s: dict, t: float) -> None:
        c = self.c
        lo, hi = c.seizure_prophylaxis_days
        s["seizure_prophylaxis"] = 1.0 if (c.seizure_prophylaxis and lo <= t <= hi) else 0.0
        i = int(s["clin_proph_dex_next"])
        if i < len(self.proph_dex) and t >= self.proph_dex[i] - 1e-9:
            drugs.give(state, "dexamethasone", c.prophylactic_dex_mg, "prophylaxis")
            s["clin_proph_dex_next"] = i + 1.0
        i = int(s["clin_proph_tcz_next"])
        if i < len(self.proph_tcz) and t >= self.proph_tcz[i] - 1e-9:
            self._give_tocilizumab(state, s, t, "prophylaxis")
            s["clin_proph_tcz_next"] = i + 1.0

    def _seizure(self, state, s: dict, t: float) -> None:
        """Treat a new seizure at once: benzodiazepine, levetiracetam load, then maintenance.

        The ICANS grade it causes (>= 3) starts dexamethasone at the next assessment.
        """
        n = s.get("seizures", 0.0)
        if self.c.seizure_treatment and n > s["clin_seizures_seen"]:
            _event(state, t, "benzodiazepine", 0, "lorazepam 2 mg i.v. for a seizure")
            if s["antiepileptic"] == 0.0:
                _event(state, t, "levetiracetam", 0, "load 40 mg/kg i.v. then maintenance"
                       + (" (on prophylaxis)" if s["seizure_prophylaxis"] > 0 else ""))
            s["clin_antiepileptic_until_day"] = t + self.c.antiepileptic_days
            s["clin_next_assessment_day"] = t        # assess (and grade) now
        s["clin_seizures_seen"] = n
        s["antiepileptic"] = 1.0 if t < s["clin_antiepileptic_until_day"] - 1e-9 else 0.0

    def _assess(self, state, s: dict, t: float) -> None:
        self._hemodynamics(state, s, t, self.v.map_mmhg(s) + self.c.map_noise_sd_mmhg * self._noise(state, 0))
        self._oxygen(state, s, t, self.c.spo2_noise_sd_pct * self._noise(state, 1))
        self._drugs(state, s, t)

    def _hemodynamics(self, state, s: dict, t: float, m: float) -> None:
        c = self.c
        rung = int(s["clin_vasopressor_rung"])
        low = m < c.map_target_mmhg
        s["clin_map_low_count"] = s["clin_map_low_count"] + 1.0 if low else 0.0
        if low:
            s["clin_map_ok_since_day"] = NAN
            if s["clin_map_low_count"] < c.map_persist_assessments and m >= c.map_severe_mmhg:
                return
            if rung == 0:
                if self._slot_free(s, "clin_bolus_day_", c.max_boluses_per_24h, t):
                    self._slot_use(s, "clin_bolus_day_", c.max_boluses_per_24h, t)
                    s["fluid_volume_ml"] = s.get("fluid_volume_ml", 0.0) + c.fluid_bolus_ml
                    s["fluid_balance_ml"] = s.get("fluid_balance_ml", 0.0) + c.fluid_bolus_ml
                    s["fluids_total_ml"] += c.fluid_bolus_ml
                    s["fluid_boluses"] += 1.0
                    s["clin_last_bolus_day"] = t
                    _event(state, t, "fluid_bolus", 0, f"{c.fluid_bolus_ml:g} mL; MAP {m:.0f} mmHg")
                else:
                    self._set_vasopressor_rung(state, s, 1, t, f"MAP {m:.0f} mmHg after fluids")
            elif rung + 1 < len(self.rungs) and t - s["clin_hemo_changed_day"] >= c.escalate_after_h / 24.0 - 1e-9:
                self._set_vasopressor_rung(state, s, rung + 1, t, f"MAP {m:.0f} mmHg")
        elif m >= c.map_target_mmhg + c.wean_margin_mmhg:
            if s["clin_map_ok_since_day"] != s["clin_map_ok_since_day"]:
                s["clin_map_ok_since_day"] = t
            wait = c.wean_after_h / 24.0 - 1e-9
            if (rung > 0 and t - s["clin_map_ok_since_day"] >= wait
                    and t - s["clin_hemo_changed_day"] >= wait):
                self._set_vasopressor_rung(state, s, rung - 1, t, f"MAP {m:.0f} mmHg, weaning")
                s["clin_map_ok_since_day"] = t
        else:
            s["clin_map_ok_since_day"] = NAN

    def _oxygen(self, state, s: dict, t: float, noise: float) -> None:
        c, v = self.c, self.v
        rung = int(s["oxygen_rung"])
        top = len(OXYGEN_RUNGS) - 1
        sp = v.spo2(s, rung) + noise   # on the therapeutic rung (room air if comfort only)
        low = sp < c.spo2_target_pct
        s["clin_spo2_low_count"] = s["clin_spo2_low_count"] + 1.0 if low else 0.0
        if low and (s["clin_spo2_low_count"] >= c.spo2_persist_assessments or sp < c.spo2_severe_pct):
            if rung < top:
                new = next((r for r in range(rung + 1, top + 1)
                            if v.spo2(s, r) + noise >= c.spo2_target_pct), top)
                self._set_oxygen_rung(state, s, new, t, f"SpO2 {sp:.0f} %")
        elif (not low and rung > 0 and sp >= c.spo2_target_pct + c.oxygen_wean_margin_pct
              and t - s["clin_o2_changed_day"] >= c.oxygen_wean_after_h / 24.0 - 1e-9
              and v.spo2(s, rung - 1) + noise >= c.spo2_target_pct + 1.0):
            self._set_oxygen_rung(state, s, rung - 1, t, f"SpO2 {sp:.0f} %, weaning")
        if int(s["oxygen_rung"]) == 0:
            comfort = (c.comfort_oxygen and grading.has_fever(s.get("temperature_c", 37.0))
                       and sp < c.comfort_spo2_below_pct)
            if comfort != (s["oxygen_for_comfort"] > 0):
                _event(state, t, "oxygen_comfort", 0, "2 L/min for comfort" if comfort else "stopped")
            s["oxygen_for_comfort"] = 1.0 if comfort else 0.0

    def _give_tocilizumab(self, state, s: dict, t: float, why: str) -> None:
        c = self.c
        mg = min(c.tocilizumab_max_mg, c.tocilizumab_mg_per_kg * self.weight)
        drugs.give(state, "tocilizumab", mg, why)
        self._slot_use(s, "clin_tcz_day_", c.tocilizumab_max_doses_24h, t)
        # first dose of the current CRS episode (refractoriness is counted from it)
        first, onset = s["clin_tcz_episode_first_day"], s.get("crs_episode_onset_day", NAN)
        if s.get("crs_active", 0.0) == 0.0 or first != first or not (onset == onset and first >= onset):
            s["clin_tcz_episode_first_day"] = t

    def _refractory_since(self, s: dict) -> float:
        """Start of the current episode's refractoriness clock (inf outside an episode).

        The episode's first tocilizumab dose; or, when no tocilizumab can be
        given (not allowed, or all doses used), the episode's onset.
        """
        if s.get("crs_active", 0.0) != 1.0:
            return math.inf
        onset = s.get("crs_episode_onset_day", math.inf)
        first = s["clin_tcz_episode_first_day"]
        if first == first and first >= onset - 1e-9:
            return first
        c = self.c
        if not c.tocilizumab or s.get("tocilizumab_doses", 0.0) >= c.tocilizumab_max_doses:
            return onset
        return math.inf

    def _drugs(self, state, s: dict, t: float) -> None:
        c = self.c
        grade = current_crs_grade(s, t, c.fluid_support_window_h)
        icans = s.get("icans_grade", 0.0)

        def due(drug: str, interval_h: float) -> bool:
            return t - s.get(f"{drug}_last_day", -math.inf) >= interval_h / 24.0 - 1e-9

        if (c.tocilizumab and grade >= c.tocilizumab_min_grade
                and s.get("tocilizumab_doses", 0.0) < c.tocilizumab_max_doses
                and due("tocilizumab", c.tocilizumab_min_interval_h)
                and self._slot_free(s, "clin_tcz_day_", c.tocilizumab_max_doses_24h, t)):
            self._give_tocilizumab(state, s, t, f"CRS grade {grade}")
        if c.dexamethasone:
            refractory = grade >= 2 and t - self._refractory_since(s) >= c.dex_refractory_h / 24.0 - 1e-9
            start = grade >= c.dex_min_grade or refractory or icans >= c.dex_icans_min_grade
            going_on = s["clin_dex_course"] == 1.0 and (grade >= 2 or icans >= c.dex_icans_min_grade)
            if start or going_on:
                s["clin_dex_course"] = 1.0
                if due("dexamethasone", c.dex_interval_h):
                    mg = c.dex_grade4_mg if grade >= 4 else c.dex_mg
                    why = f"CRS grade {grade}" + (" refractory" if refractory and grade < c.dex_min_grade else "")
                    if icans >= c.dex_icans_min_grade and grade < c.dex_min_grade and not refractory:
                        why = f"ICANS grade {int(icans)}"
                    drugs.give(state, "dexamethasone", mg, why)
            elif s["clin_dex_course"] == 1.0:          # improved to grade <= 1: taper
                s["clin_dex_course"] = 0.0
                s["clin_dex_taper_until_day"] = t + c.dex_taper_days
            elif t < s["clin_dex_taper_until_day"] - 1e-9 and due("dexamethasone", c.dex_taper_interval_h):
                drugs.give(state, "dexamethasone", c.dex_taper_mg, "taper")
        if (c.methylprednisolone and (grade >= c.mp_min_grade or icans >= c.mp_icans_min_grade)
                and s.get("methylprednisolone_doses", 0.0) < c.mp_max_doses and due("methylprednisolone", 24.0)):
            drugs.give(state, "methylprednisolone", c.mp_mg,
                       f"CRS grade {grade}" if grade >= c.mp_min_grade else f"ICANS grade {int(icans)}")
        if (c.anakinra and grade >= c.anakinra_min_grade and s.get("tocilizumab_doses", 0.0) > 0
                and due("anakinra", c.anakinra_interval_h)):
            drugs.give(state, "anakinra", c.anakinra_mg, f"CRS grade {grade} after tocilizumab")

    def record(self, state, row):
        s = state.scalars
        for key in RECORDED:
            row[key] = s[key]

    def endpoints(self, state, out):
        s = state.scalars
        out["fluids_total_ml"] = s["fluids_total_ml"]
        out["vasopressors_max"] = s["vasopressors_max"]
        out["oxygen_rung_max"] = s["oxygen_rung_max"]


#: Recorded scalars of the CRS grade: name -> (unit, long name).
CRS_RECORDED = {
    "crs_grade": ("1", "ASTCT 2019 CRS grade"),
    "crs_max_grade": ("1", "maximal CRS grade so far"),
    "crs_active": ("1", "inside a CRS episode"),
    "crs_onset_day": ("day", "first CRS onset (NaN before)"),
    "crs_resolved_day": ("day", "last CRS resolution (NaN before)"),
    "crs_duration_days": ("day", "time inside CRS episodes"),
    "crs_masked": ("1", "fever no longer required (tocilizumab or steroid after onset)"),
    "hypotension_support": ("1", "ASTCT hypotension support level (0 none, 1 fluids, 2 one, 3 several vasopressors)"),
    "oxygen_support": ("1", "ASTCT hypoxia support level (0 none, 1 low flow, 2 high flow, 3 positive pressure)"),
}


class CRSGrade:
    """Continuous ASTCT 2019 CRS grade, episodes and events (phase ``patient``, last)."""

    phase = "patient"
    meta = CRS_RECORDED

    def __init__(self, sim):
        self.c = sim.config.clinician
        self.dt_day = sim.config.run.dt_min / 1440.0
        s = sim.state.scalars
        if "crs_initialised" not in s:
            s["crs_initialised"] = 1.0
            for key in ("crs_grade", "crs_max_grade", "crs_active", "crs_episodes", "crs_episode_max_grade",
                        "crs_duration_completed_days", "crs_masked", "hypotension_support", "oxygen_support"):
                s[key] = 0.0
            for key in ("crs_onset_day", "crs_resolved_day", "crs_episode_onset_day", "crs_zero_since_day"):
                s[key] = NAN
            s["crs_duration_days"] = 0.0

    def step(self, state):
        s = state.scalars
        t = state.time_day + self.dt_day
        s["hypotension_support"] = float(hypotension_support(s, t, self.c.fluid_support_window_h))
        s["oxygen_support"] = float(oxygen_support(s))
        s["crs_masked"] = 1.0 if crs_masked(s) else 0.0
        g = current_crs_grade(s, t, self.c.fluid_support_window_h)
        s["crs_grade"] = float(g)
        if g >= 1:
            s["crs_zero_since_day"] = NAN
            if s["crs_active"] == 0.0:
                s["crs_active"] = 1.0
                s["crs_episodes"] += 1.0
                s["crs_episode_onset_day"] = t
                s["crs_episode_max_grade"] = float(g)
                if s["crs_onset_day"] != s["crs_onset_day"]:
                    s["crs_onset_day"] = t
                _event(state, t, "crs_onset", g, f"episode {int(s['crs_episodes'])}; "
                                                 f"T {s.get('temperature_c', 0):.1f} C")
            elif g > s["crs_episode_max_grade"]:
                s["crs_episode_max_grade"] = float(g)
                _event(state, t, "crs_grade", g, f"episode {int(s['crs_episodes'])} reaches grade {g}")
            s["crs_max_grade"] = max(s["crs_max_grade"], float(g))
        elif s["crs_active"] == 1.0:
            if s["crs_zero_since_day"] != s["crs_zero_since_day"]:
                s["crs_zero_since_day"] = t
            if t - s["crs_zero_since_day"] >= self.c.resolution_hold_h / 24.0 - 1e-9:
                end = s["crs_zero_since_day"]
                s["crs_active"] = 0.0
                s["crs_resolved_day"] = end
                s["crs_duration_completed_days"] += end - s["crs_episode_onset_day"]
                _event(state, t, "crs_resolved", int(s["crs_episode_max_grade"]),
                       f"episode {int(s['crs_episodes'])}: grade 0 since day {end:.3f}, "
                       f"lasted {end - s['crs_episode_onset_day']:.2f} days")
        running = 0.0
        if s["crs_active"] == 1.0:
            end = s["crs_zero_since_day"] if s["crs_zero_since_day"] == s["crs_zero_since_day"] else t
            running = end - s["crs_episode_onset_day"]
        s["crs_duration_days"] = s["crs_duration_completed_days"] + running

    def record(self, state, row):
        s = state.scalars
        for key in CRS_RECORDED:
            row[key] = s[key]

    def endpoints(self, state, out):
        s = state.scalars
        for key in ("crs_max_grade", "crs_onset_day", "crs_resolved_day", "crs_duration_days", "crs_episodes"):
            out[key] = s[key]
        out["crs_resolved"] = 1.0 if (s["crs_max_grade"] > 0 and s["crs_active"] == 0.0) else 0.0
