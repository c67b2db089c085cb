"""Consensus toxicity grades as pure functions (ASTCT 2019, Lee et al. BBMT 2019;25:625).

CRS is graded from fever and from the *support the clinician gives* for
hypotension and hypoxia, never from raw vital signs:

=====  =========  ==========================================  ==========================================
grade  fever      hypotension                                 hypoxia
=====  =========  ==========================================  ==========================================
1      >= 38.0 C  none                                        none
2      >= 38.0 C  not requiring vasopressors (fluids)         low-flow cannula (<= 6 L/min) or blow-by
3      >= 38.0 C  one vasopressor, with or without            high-flow (> 6 L/min), facemask,
                  vasopressin                                 non-rebreather or Venturi mask
4      >= 38.0 C  multiple vasopressors (not vasopressin)     positive pressure (CPAP, BiPAP, ventilation)
=====  =========  ==========================================  ==========================================

Rules (PMC8021214 Table 1 and footnotes; ``docs/patient.md``):

* the most severe feature sets the grade (one vasopressor + low-flow O2 is 3);
* vasopressin does not count as a second vasopressor;
* oxygen given for comfort is not hypoxia support;
* once tocilizumab or steroids have been given to a patient with CRS, fever is
  no longer required ("masked"): the grade follows hypotension and hypoxia;
* without fever (and without masking) there is no CRS, whatever the support:
  the hypotension or hypoxia is attributed to another cause.

Support levels are small integers so they can live in ``State.scalars`` and
in the time series.
"""

from __future__ import annotations

#: Fever threshold of ASTCT 2019 (deg C, inclusive).
FEVER_C = 38.0

# Hypotension support levels.
HYPO_NONE = 0            #: no treatment for hypotension
HYPO_FLUIDS = 1          #: hypotension treated with fluids only (not requiring vasopressors)
HYPO_ONE_PRESSOR = 2     #: one vasopressor, with or without vasopressin
HYPO_MULTI_PRESSOR = 3   #: two or more vasopressors, vasopressin not counted

# Hypoxia (oxygen) support levels.
O2_NONE = 0              #: room air (or oxygen given only for comfort)
O2_LOW_FLOW = 1          #: low-flow nasal cannula <= 6 L/min or blow-by
O2_HIGH_FLOW = 2         #: high-flow nasal cannula > 6 L/min, facemask, non-rebreather, Venturi
O2_POSITIVE_PRESSURE = 3  #: CPAP, BiPAP, intubation and mechanical ventilation

#: Device names accepted by :func:`oxygen_level`, mapped to support levels.
OXYGEN_DEVICES = {
    "room_air": O2_NONE,
    "nasal_cannula": O2_LOW_FLOW,        # grade depends on flow, see oxygen_level
    "blow_by": O2_LOW_FLOW,
    "high_flow_nasal_cannula": O2_HIGH_FLOW,
    "facemask": O2_HIGH_FLOW,
    "non_rebreather": O2_HIGH_FLOW,
    "venturi": O2_HIGH_FLOW,
    "cpap": O2_POSITIVE_PRESSURE,
    "bipap": O2_POSITIVE_PRESSURE,
    "mechanical_ventilation": O2_POSITIVE_PRESSURE,
}

#: Low-flow ceiling of ASTCT 2019 (L/min, inclusive).
LOW_FLOW_MAX_L_MIN = 6.0


def has_fever(temperature_c: float) -> bool:
    """True when the temperature meets the ASTCT fever criterion (>= 38.0 C)."""
    return temperature_c >= FEVER_C


def hypotension_level(n_vasopressors: int, fluids: bool, vasopressin: bool = False) -> int:
    """Hypotension support level from what is given.

    Args:
        n_vasopressors: number of vasopressors running, *excluding* vasopressin
            (norepinephrine, epinephrine, phenylephrine, dopamine...).
        fluids: hypotension is being treated with fluid boluses.
        vasopressin: vasopressin is running as an add-on. It never counts as
            a vasopressor of its own, so ``n_vasopressors=1, vasopressin=True``
            is one vasopressor (grade 3), not several (grade 4). Vasopressin
            alone (no other agent) is treated as one vasopressor.

    Returns:
        one of ``HYPO_NONE``, ``HYPO_FLUIDS``, ``HYPO_ONE_PRESSOR``,
        ``HYPO_MULTI_PRESSOR``.
    """
    if n_vasopressors < 0:
        raise ValueError(f"n_vasopressors must be >= 0 (got {n_vasopressors})")
    if n_vasopressors >= 2:
        return HYPO_MULTI_PRESSOR
    if n_vasopressors == 1 or vasopressin:
        return HYPO_ONE_PRESSOR
    return HYPO_FLUIDS if fluids else HYPO_NONE


def oxygen_level(device: str, flow_l_min: float = 0.0, for_comfort: bool = False) -> int:
    """Hypoxia support level from the oxygen device and flow.

    Args:
        device: a key of :data:`OXYGEN_DEVICES`.
        flow_l_min: oxygen flow; a nasal cannula above 6 L/min is high flow.
        for_comfort: oxygen given for comfort, not to correct an oxygenation
            deficit; it does not count (level ``O2_NONE``).
    """
    if device not in OXYGEN_DEVICES:
        raise ValueError(f"unknown oxygen device {device!r}; known: {', '.join(OXYGEN_DEVICES)}")
    if for_comfort:
        return O2_NONE
    level = OXYGEN_DEVICES[device]
    if device == "nasal_cannula" and flow_l_min > LOW_FLOW_MAX_L_MIN:
        level = O2_HIGH_FLOW
    return level


def crs_grade(temperature_c: float, hypotension: int, oxygen: int, masked: bool = False) -> int:
    """ASTCT 2019 CRS grade (0 = no CRS, 1-4).

    Args:
        temperature_c: core temperature (deg C).
        hypotension: hypotension support level (``HYPO_*``).
        oxygen: hypoxia support level (``O2_*``; comfort oxygen is ``O2_NONE``).
        masked: tocilizumab or a steroid has been given to this patient for
            CRS, so fever is no longer required.

    Returns:
        The most severe of the fever, hypotension and hypoxia grades; 0 when
        there is neither fever nor masking (no CRS), and 0 when masked but
        neither hypotension nor hypoxia support remains.
    """
    if not (HYPO_NONE <= hypotension <= HYPO_MULTI_PRESSOR):
        raise ValueError(f"hypotension level must be 0..3 (got {hypotension})")
    if not (O2_NONE <= oxygen <= O2_POSITIVE_PRESSURE):
        raise ValueError(f"oxygen level must be 0..3 (got {oxygen})")
    fever = has_fever(temperature_c)
    if not fever and not masked:
        return 0
    # Support levels 1..3 map onto grades 2..4.
    support = max(hypotension, oxygen)
    if support > 0:
        return support + 1
    return 1 if fever else 0
