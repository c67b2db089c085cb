"""ASTCT 2019 ICANS grade (abm.grading), table cell by table cell and rule by rule."""

import pytest

from abm import grading as g
from abm.grading import (CONSCIOUS_ALERT, CONSCIOUS_SPONTANEOUS, CONSCIOUS_TOUCH, CONSCIOUS_UNAROUSABLE,
                         CONSCIOUS_VOICE, OEDEMA_DIFFUSE, OEDEMA_FOCAL, SEIZURE_BRIEF, SEIZURE_PROLONGED,
                         icans_grade)

# ICE domain: every score 0..10
ICE_TABLE = [(10, 0), (9, 1), (8, 1), (7, 1), (6, 2), (5, 2), (4, 2), (3, 2), (2, 3), (1, 3), (0, 3)]


@pytest.mark.parametrize("ice, grade", ICE_TABLE)
def test_ice_domain(ice, grade):
    assert g.ice_grade(ice) == grade
    assert icans_grade(ice=ice) == grade


@pytest.mark.parametrize("level, grade", [(CONSCIOUS_ALERT, 0), (CONSCIOUS_SPONTANEOUS, 1), (CONSCIOUS_VOICE, 2),
                                          (CONSCIOUS_TOUCH, 3), (CONSCIOUS_UNAROUSABLE, 4)])
def test_consciousness_domain(level, grade):
    assert g.consciousness_grade(level) == grade
    assert icans_grade(consciousness=level) == grade


@pytest.mark.parametrize("kwargs, grade", [
    (dict(seizure=SEIZURE_BRIEF), 3),                 # any clinical seizure resolving rapidly / NCSE with treatment
    (dict(seizure=SEIZURE_PROLONGED), 4),             # prolonged > 5 min or repetitive
    (dict(motor_weakness=True), 4),                   # deep focal motor weakness
    (dict(oedema=OEDEMA_FOCAL), 3),                   # focal / local oedema on imaging
    (dict(oedema=OEDEMA_DIFFUSE), 4),                 # diffuse oedema / raised ICP signs
    (dict(), 0),                                      # nothing: no ICANS
])
def test_other_domains(kwargs, grade):
    assert icans_grade(**kwargs) == grade


def test_seizure_level_from_duration_and_repetition():
    assert g.seizure_level(1.0) == SEIZURE_BRIEF
    assert g.seizure_level(5.0) == SEIZURE_BRIEF          # > 5 min is prolonged, exactly 5 is not
    assert g.seizure_level(5.1) == SEIZURE_PROLONGED
    assert g.seizure_level(1.0, repetitive=True) == SEIZURE_PROLONGED


def test_ice_5_then_one_brief_seizure_is_grade_3():
    assert icans_grade(ice=5, consciousness=CONSCIOUS_ALERT) == 2
    assert icans_grade(ice=5, consciousness=CONSCIOUS_ALERT, seizure=SEIZURE_BRIEF) == 3


def test_ice_3_with_generalised_seizure_is_grade_3():      # the ASTCT worked example
    assert icans_grade(ice=3, seizure=SEIZURE_BRIEF) == 3


def test_ice_0_awake_is_3_unarousable_is_4():
    assert icans_grade(ice=0, consciousness=CONSCIOUS_ALERT) == 3          # awake, global aphasia
    assert icans_grade(ice=0, consciousness=CONSCIOUS_TOUCH) == 3
    assert icans_grade(ice=0, consciousness=CONSCIOUS_UNAROUSABLE) == 4    # ICE 0 because unarousable
    assert g.ice_grade(0, unarousable=True) == 4
    assert g.ice_grade(9, unarousable=True) == 4


def test_tremor_and_myoclonus_do_not_count():
    for ice in (10, 8, 5):
        base = icans_grade(ice=ice)
        assert icans_grade(ice=ice, tremor=True) == base
        assert icans_grade(ice=ice, myoclonus=True) == base
        assert icans_grade(ice=ice, tremor=True, myoclonus=True) == base
    assert icans_grade(tremor=True, myoclonus=True) == 0


@pytest.mark.parametrize("features, grade", [
    (dict(ice=8, consciousness=CONSCIOUS_VOICE), 2),
    (dict(ice=5, consciousness=CONSCIOUS_TOUCH), 3),
    (dict(ice=2, oedema=OEDEMA_DIFFUSE), 4),
    (dict(ice=9, motor_weakness=True), 4),
    (dict(ice=7, seizure=SEIZURE_BRIEF, oedema=OEDEMA_FOCAL), 3),
    (dict(ice=10, consciousness=CONSCIOUS_SPONTANEOUS), 1),
])
def test_most_severe_feature_wins(features, grade):
    assert icans_grade(**features) == grade


def test_ice_score_items():
    assert g.ice_score(4, 3, 1, 1, 1) == 10
    assert g.ice_score(0, 0, 0, 0, 0) == 0
    assert g.ice_score(2, 1, 1, 0, 1) == 5
    assert sum(g.ICE_ITEMS.values()) == g.ICE_MAX
    with pytest.raises(ValueError):
        g.ice_score(5, 3, 1, 1, 1)
    with pytest.raises(ValueError):
        g.ice_score(4, 3, 2, 1, 1)


@pytest.mark.parametrize("bad", [dict(ice=11), dict(ice=-1), dict(consciousness=5), dict(seizure=3), dict(oedema=-1)])
def test_out_of_range_inputs_raise(bad):
    with pytest.raises(ValueError):
        icans_grade(**bad)
