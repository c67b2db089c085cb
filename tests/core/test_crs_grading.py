"""ASTCT 2019 CRS grading, case by case (abm.grading)."""

import itertools

import pytest

from abm import grading as g

AFEBRILE, FEVER = 37.5, 38.0

# Every cell of the ASTCT table with fever: rows = hypotension support
# (none, fluids, one vasopressor +/- vasopressin, several vasopressors),
# columns = oxygen support (none, low flow, high flow, positive pressure).
# The most severe feature sets the grade.
GRID = [
    [1, 2, 3, 4],
    [2, 2, 3, 4],
    [3, 3, 3, 4],
    [4, 4, 4, 4],
]
TABLE = {(h, o): GRID[h][o] for h in range(4) for o in range(4)}


@pytest.mark.parametrize("hypo,oxy", sorted(TABLE))
def test_every_cell_with_fever(hypo, oxy):
    assert g.crs_grade(FEVER, hypo, oxy) == TABLE[hypo, oxy]


def test_table_spelled_out():
    # grade 1: fever alone
    assert g.crs_grade(38.0, g.HYPO_NONE, g.O2_NONE) == 1
    # grade 2: fever + fluids and/or low-flow
    assert g.crs_grade(38.4, g.HYPO_FLUIDS, g.O2_NONE) == 2
    assert g.crs_grade(38.4, g.HYPO_NONE, g.O2_LOW_FLOW) == 2
    assert g.crs_grade(38.4, g.HYPO_FLUIDS, g.O2_LOW_FLOW) == 2
    # grade 3: one vasopressor and/or high flow
    assert g.crs_grade(39.0, g.HYPO_ONE_PRESSOR, g.O2_NONE) == 3
    assert g.crs_grade(39.0, g.HYPO_NONE, g.O2_HIGH_FLOW) == 3
    # the footnote example: one vasopressor + low-flow cannula is grade 3
    assert g.crs_grade(39.0, g.HYPO_ONE_PRESSOR, g.O2_LOW_FLOW) == 3
    # grade 4: several vasopressors and/or positive pressure
    assert g.crs_grade(40.0, g.HYPO_MULTI_PRESSOR, g.O2_NONE) == 4
    assert g.crs_grade(40.0, g.HYPO_NONE, g.O2_POSITIVE_PRESSURE) == 4
    assert g.crs_grade(40.0, g.HYPO_FLUIDS, g.O2_POSITIVE_PRESSURE) == 4


@pytest.mark.parametrize("hypo,oxy", sorted(TABLE))
def test_no_fever_no_masking_is_no_crs(hypo, oxy):
    assert g.crs_grade(AFEBRILE, hypo, oxy) == 0


@pytest.mark.parametrize("hypo,oxy", sorted(TABLE))
def test_masking_drops_the_fever_requirement(hypo, oxy):
    masked = g.crs_grade(AFEBRILE, hypo, oxy, masked=True)
    expected = 0 if (hypo, oxy) == (0, 0) else TABLE[hypo, oxy]
    assert masked == expected
    # with fever, masking changes nothing
    assert g.crs_grade(FEVER, hypo, oxy, masked=True) == TABLE[hypo, oxy]


def test_fever_threshold_is_inclusive():
    assert g.has_fever(38.0)
    assert not g.has_fever(37.99)
    assert g.crs_grade(37.99, g.HYPO_NONE, g.O2_NONE) == 0


@pytest.mark.parametrize("n,fluids,vaso,level", [
    (0, False, False, g.HYPO_NONE),
    (0, True, False, g.HYPO_FLUIDS),
    (1, False, False, g.HYPO_ONE_PRESSOR),
    (1, True, False, g.HYPO_ONE_PRESSOR),
    (1, False, True, g.HYPO_ONE_PRESSOR),   # vasopressin is not a second vasopressor
    (0, False, True, g.HYPO_ONE_PRESSOR),   # vasopressin alone: one vasopressor
    (2, False, False, g.HYPO_MULTI_PRESSOR),
    (2, False, True, g.HYPO_MULTI_PRESSOR),
    (3, True, True, g.HYPO_MULTI_PRESSOR),
])
def test_hypotension_levels(n, fluids, vaso, level):
    assert g.hypotension_level(n, fluids, vaso) == level


def test_vasopressin_does_not_make_grade_4():
    one_plus_vaso = g.hypotension_level(1, True, vasopressin=True)
    assert g.crs_grade(39.0, one_plus_vaso, g.O2_NONE) == 3
    two = g.hypotension_level(2, True, vasopressin=False)
    assert g.crs_grade(39.0, two, g.O2_NONE) == 4


@pytest.mark.parametrize("device,flow,level", [
    ("room_air", 0.0, g.O2_NONE),
    ("blow_by", 0.0, g.O2_LOW_FLOW),
    ("nasal_cannula", 2.0, g.O2_LOW_FLOW),
    ("nasal_cannula", 6.0, g.O2_LOW_FLOW),          # <= 6 L/min is low flow
    ("nasal_cannula", 6.5, g.O2_HIGH_FLOW),         # > 6 L/min is high flow
    ("high_flow_nasal_cannula", 40.0, g.O2_HIGH_FLOW),
    ("facemask", 8.0, g.O2_HIGH_FLOW),
    ("non_rebreather", 15.0, g.O2_HIGH_FLOW),
    ("venturi", 10.0, g.O2_HIGH_FLOW),
    ("cpap", 0.0, g.O2_POSITIVE_PRESSURE),
    ("bipap", 0.0, g.O2_POSITIVE_PRESSURE),
    ("mechanical_ventilation", 0.0, g.O2_POSITIVE_PRESSURE),
])
def test_oxygen_levels(device, flow, level):
    assert g.oxygen_level(device, flow) == level


@pytest.mark.parametrize("device,flow", [("nasal_cannula", 2.0), ("facemask", 8.0), ("high_flow_nasal_cannula", 40)])
def test_oxygen_for_comfort_does_not_count(device, flow):
    level = g.oxygen_level(device, flow, for_comfort=True)
    assert level == g.O2_NONE
    assert g.crs_grade(38.5, g.HYPO_NONE, level) == 1
    assert g.crs_grade(37.0, g.HYPO_NONE, level) == 0


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        g.oxygen_level("tent")
    with pytest.raises(ValueError):
        g.hypotension_level(-1, False)
    with pytest.raises(ValueError):
        g.crs_grade(38.0, 4, 0)
    with pytest.raises(ValueError):
        g.crs_grade(38.0, 0, -1)


def test_grade_is_monotone_in_support():
    for t, masked in itertools.product((37.0, 38.5), (False, True)):
        for h, o in TABLE:
            base = g.crs_grade(t, h, o, masked)
            if h < 3:
                assert g.crs_grade(t, h + 1, o, masked) >= base
            if o < 3:
                assert g.crs_grade(t, h, o + 1, masked) >= base
