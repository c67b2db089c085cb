"""Consensus toxicity grades as pure functions (ASTCT 2019, Lee et al. BBMT 2019;25:625): CRS and ICANS.

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


# -- ICANS (ASTCT 2019) -------------------------------------------------------------------------
#
# Immune effector cell-associated neurotoxicity syndrome, adults and children over 12 (Lee et al.
# 2019; table reproduced in PMC8403007; docs/model.md section 7):
#
# ==================================  ==============  ==============  ========================  ===========================
# domain                              grade 1         grade 2         grade 3                   grade 4
# ==================================  ==============  ==============  ========================  ===========================
# ICE score (0-10)                    7-9             3-6             0-2                       0 (unarousable, cannot do ICE)
# depressed level of consciousness    awakens         awakens to      awakens only to           unarousable, or needs vigorous
#                                     spontaneously   voice           tactile stimulus          or repetitive stimuli; coma
# seizure                             --              --              any clinical seizure      prolonged (> 5 min) seizure, or
#                                                                     that resolves rapidly,    repetitive seizures without
#                                                                     or non-convulsive on EEG  return to baseline in between
#                                                                     resolving with treatment
# motor findings                      --              --              --                        deep focal motor weakness
#                                                                                               (hemiparesis, paraparesis)
# raised ICP / cerebral oedema        --              --              focal / local oedema      diffuse oedema; decerebrate or
#                                                                     on imaging                decorticate posturing; CN VI
#                                                                                               palsy; papilloedema; Cushing
# ==================================  ==============  ==============  ========================  ===========================
#
# Rules: the most severe feature sets the grade (ICE 3 with a generalised seizure is grade 3);
# ICE 0 in an awake patient with global aphasia is grade 3, ICE 0 because unarousable is grade 4;
# tremor and myoclonus (graded with CTCAE) and intracranial haemorrhage do not count.

#: ICE items and their maximal points (orientation to year, month, city, hospital; naming three
#: objects; following simple commands; writing a standard sentence; counting back from 100 by 10).
ICE_ITEMS = {"orientation": 4, "naming": 3, "commands": 1, "writing": 1, "attention": 1}
ICE_MAX = 10

# Level of consciousness (the ASTCT grade of the consciousness domain equals the level).
CONSCIOUS_ALERT = 0          #: alert, no depressed consciousness
CONSCIOUS_SPONTANEOUS = 1    #: drowsy, awakens spontaneously
CONSCIOUS_VOICE = 2          #: awakens to voice
CONSCIOUS_TOUCH = 3          #: awakens only to tactile stimulus
CONSCIOUS_UNAROUSABLE = 4    #: unarousable, or needs vigorous / repetitive tactile stimuli; stupor, coma
CONSCIOUSNESS_LABELS = ("alert", "awakens spontaneously", "awakens to voice", "awakens only to touch",
                        "unarousable")

# Seizure domain.
SEIZURE_NONE = 0             #: no seizure
SEIZURE_BRIEF = 1            #: clinical seizure resolving rapidly, or non-convulsive resolving with treatment
SEIZURE_PROLONGED = 2        #: prolonged (> 5 min) or repetitive without return to baseline in between

#: Duration above which a seizure is prolonged (life-threatening), minutes (exclusive).
SEIZURE_PROLONGED_MIN = 5.0

# Raised ICP / cerebral oedema domain.
OEDEMA_NONE = 0              #: no oedema
OEDEMA_FOCAL = 1             #: focal / local oedema on imaging
OEDEMA_DIFFUSE = 2           #: diffuse oedema, or signs of raised intracranial pressure


def ice_score(orientation: int, naming: int, commands: int, writing: int, attention: int) -> int:
    """ICE score (0-10): the sum of the item points (orientation 0-4, naming 0-3, others 0-1)."""
    items = dict(orientation=orientation, naming=naming, commands=commands, writing=writing,
                 attention=attention)
    for name, value in items.items():
        if not (0 <= value <= ICE_ITEMS[name]) or int(value) != value:
            raise ValueError(f"ICE item {name} must be an integer 0..{ICE_ITEMS[name]} (got {value})")
    return int(sum(items.values()))


def ice_grade(ice: int, unarousable: bool = False) -> int:
    """ICANS grade of the ICE domain: 10 -> 0, 7-9 -> 1, 3-6 -> 2, 0-2 -> 3; 4 when unarousable.

    Args:
        ice: ICE score 0..10 (an awake patient with global aphasia scores 0: grade 3).
        unarousable: the patient is unarousable and cannot do the assessment (the score is 0
            *because* unarousable): grade 4, whatever ``ice``.
    """
    if not (0 <= ice <= ICE_MAX):
        raise ValueError(f"ICE score must be 0..{ICE_MAX} (got {ice})")
    if unarousable:
        return 4
    if ice >= 10:
        return 0
    if ice >= 7:
        return 1
    if ice >= 3:
        return 2
    return 3


def consciousness_grade(level: int) -> int:
    """ICANS grade of the depressed-consciousness domain (``CONSCIOUS_*``; alert is 0)."""
    if not (CONSCIOUS_ALERT <= level <= CONSCIOUS_UNAROUSABLE):
        raise ValueError(f"consciousness level must be 0..4 (got {level})")
    return int(level)


def seizure_level(duration_min: float, repetitive: bool = False) -> int:
    """Seizure domain level of one seizure: prolonged (> 5 min) or repetitive, else brief."""
    return SEIZURE_PROLONGED if (duration_min > SEIZURE_PROLONGED_MIN or repetitive) else SEIZURE_BRIEF


def icans_grade(ice: int = ICE_MAX, consciousness: int = CONSCIOUS_ALERT, seizure: int = SEIZURE_NONE,
                motor_weakness: bool = False, oedema: int = OEDEMA_NONE, *, tremor: bool = False,
                myoclonus: bool = False) -> int:
    """ASTCT 2019 ICANS grade (0 = none, 1-4): the most severe domain.

    Args:
        ice: last ICE score (0-10). An unarousable patient cannot be assessed: pass
            ``consciousness=CONSCIOUS_UNAROUSABLE`` (grade 4 whatever ``ice``).
        consciousness: level ``CONSCIOUS_*``.
        seizure: ``SEIZURE_*`` level of the seizure(s) being graded.
        motor_weakness: deep focal motor weakness (hemiparesis, paraparesis).
        oedema: ``OEDEMA_*`` (focal on imaging; diffuse or signs of raised ICP).
        tremor, myoclonus: accepted and ignored -- graded with CTCAE, not part of ICANS.

    Returns:
        ``max`` of the domain grades: ICE (10 -> 0, 7-9 -> 1, 3-6 -> 2, 0-2 -> 3), consciousness
        (its level), seizure (brief 3, prolonged / repetitive 4), motor weakness (4), oedema
        (focal 3, diffuse 4).
    """
    del tremor, myoclonus          # explicitly excluded by ASTCT 2019
    if seizure not in (SEIZURE_NONE, SEIZURE_BRIEF, SEIZURE_PROLONGED):
        raise ValueError(f"seizure level must be 0, 1 or 2 (got {seizure})")
    if oedema not in (OEDEMA_NONE, OEDEMA_FOCAL, OEDEMA_DIFFUSE):
        raise ValueError(f"oedema level must be 0, 1 or 2 (got {oedema})")
    unarousable = consciousness == CONSCIOUS_UNAROUSABLE
    grades = [ice_grade(ice, unarousable), consciousness_grade(consciousness),
              {SEIZURE_NONE: 0, SEIZURE_BRIEF: 3, SEIZURE_PROLONGED: 4}[seizure],
              4 if motor_weakness else 0,
              {OEDEMA_NONE: 0, OEDEMA_FOCAL: 3, OEDEMA_DIFFUSE: 4}[oedema]]
    return max(grades)
