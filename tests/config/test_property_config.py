"""Property tests of the config schema: round trips through TOML and JSON, range errors.

Values are drawn from what each parameter declares (``param(..., ge=, gt=,
le=, lt=, choices=, length=)``, read through :func:`abm.config.walk_params`),
so new parameters are covered without editing this file.
"""

from __future__ import annotations

import json
import math
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from abm.config import Config, ConfigError, config_from_dict, to_json, to_toml, walk_params
from abm.config.root import name_problem
from abm.schema import FLOAT_MAX

#: Keys tied to other keys by a section's ``check()`` (ordering, whole multiples,
#: lattice capacity, preset consistency, a forbidden single value): drawn
#: independently they are often rejected, so the round trip draws them apart.
COUPLED = frozenset({
    "run.dt_min", "run.record_every_min", "run.snapshot_every_h", "run.checkpoint_every_h",
    "lattice.shape", "lattice.vessel_fraction", "lattice.vessel_segment_sites",
    "patient.tumour_burden_cells", "patient.tumour_volume_ml",
    "product.costimulation", "coupling.mode",
    "tumour.initial_cells", "tumour.antigen_negative_fraction",
    "brain.sigma_min", "brain.sigma_rest", "brain.focal_oedema_ml", "brain.diffuse_oedema_ml",
    "brain.consciousness_thresholds",
    "clinician.map_severe_mmhg", "clinician.map_target_mmhg", "clinician.spo2_severe_pct",
    "clinician.spo2_target_pct", "clinician.seizure_prophylaxis_days",
    "events.duration_min_h", "events.duration_max_h", "events.fever_c", "events.tls_window_days",
})

#: Largest integer TOML can hold (64-bit signed).
INT64_MAX = 2**63 - 1

#: Text of the Basic Multilingual Plane without lone surrogates (no UTF-8 file holds
#: one): to_toml writes a character beyond the plane as a JSON surrogate pair, which
#: TOML refuses (see test_text_beyond_the_bmp_round_trips).
BMP_TEXT = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)), max_size=20)


LEAVES = {key: (f, tp) for key, f, tp in walk_params(Config)}
INDEPENDENT = sorted(k for k in LEAVES if k not in COUPLED)


def base_type(tp):
    """``float`` for ``float | None`` and the like; tuples stay ``tuple[...]``."""
    args = [a for a in getattr(tp, "__args__", ()) if a is not type(None)]
    if type(None) in getattr(tp, "__args__", ()) and len(args) == 1:
        return args[0]
    return tp


def is_tuple(tp) -> bool:
    return getattr(tp, "__origin__", None) is tuple


def number_strategy(kind, meta: dict):
    """Numbers of type ``kind`` inside the declared bounds."""
    ge, gt, le, lt = (meta.get(k) for k in ("ge", "gt", "le", "lt"))
    if kind is int:
        lo = ge if ge is not None else (gt + 1 if gt is not None else -INT64_MAX)
        hi = le if le is not None else (lt - 1 if lt is not None else INT64_MAX)
        return st.integers(min_value=lo, max_value=hi)
    lo, hi = (ge if ge is not None else gt), (le if le is not None else lt)
    # a bound the field does not declare is the schema's generic FLOAT_MAX
    lo = -FLOAT_MAX if lo is None else lo
    hi = FLOAT_MAX if hi is None else hi
    floats = st.floats(min_value=lo, max_value=hi, exclude_min=gt is not None and ge is None,
                       exclude_max=lt is not None and le is None, allow_nan=False,
                       allow_infinity=False)
    # a TOML integer is accepted where a float is declared
    ints = st.integers(min_value=math.ceil(lo) if lo is not None else -10**6,
                       max_value=math.floor(hi) if hi is not None else 10**6)
    ints = ints.filter(lambda v: (gt is None or v > gt) and (lt is None or v < lt))
    return st.one_of(floats, ints)


#: Narrower draws where the schema's range admits values its checks cannot handle yet:
#: an interval over run.dt_min that overflows to infinity (tiny dt_min, huge or
#: infinite interval) breaks the whole-multiple check with an OverflowError instead
#: of a ConfigError (see test_interval_overflowing_dt_min_is_a_config_error).
NARROWED = {
    "run.name": BMP_TEXT.filter(lambda s: name_problem(s) is None),
    "run.dt_min": st.floats(min_value=1e-3, max_value=60.0),
    **{f"run.{k}": st.floats(min_value=1e-3, max_value=1e6)
       for k in ("record_every_min", "snapshot_every_h", "checkpoint_every_h")},
}


def valid_value(key: str):
    """A value the schema accepts for ``key`` on its own."""
    if key in NARROWED:
        return NARROWED[key]
    f, tp = LEAVES[key]
    meta, optional = f.metadata, base_type(tp) is not tp
    tp = base_type(tp)
    if meta.get("choices") is not None:
        strat = st.sampled_from(meta["choices"])
    elif tp is bool:
        strat = st.booleans()
    elif tp is str:
        strat = BMP_TEXT
    elif tp in (int, float):
        strat = number_strategy(tp, meta)
    elif is_tuple(tp):
        length = meta.get("length")
        sizes = (length,) if isinstance(length, int) else tuple(length or range(0, 5))
        elem = number_strategy(tp.__args__[0], meta)
        strat = st.sampled_from(sizes).flatmap(lambda n: st.lists(elem, min_size=n, max_size=n))
    else:
        raise AssertionError(f"no strategy for {key}: {tp}")
    return st.one_of(st.none(), strat) if optional else strat


def nested(flat: dict) -> dict:
    """``{"a.b.c": v}`` -> ``{"a": {"b": {"c": v}}}``."""
    out: dict = {}
    for key, value in flat.items():
        *path, last = key.split(".")
        node = out
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def get(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


@st.composite
def drawn_params(draw, keys, max_keys=8):
    chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=max_keys, unique=True))
    return {k: draw(valid_value(k)) for k in chosen}


def assert_round_trips(cfg: Config) -> None:
    again = config_from_dict(tomllib.loads(to_toml(cfg)))
    assert again == cfg
    assert to_json(again) == to_json(cfg)   # also tells -0.0 from 0.0
    again = config_from_dict(json.loads(to_json(cfg)))
    assert again == cfg
    assert to_json(again) == to_json(cfg)


def test_every_coupled_key_exists():
    assert COUPLED <= set(LEAVES)


@given(drawn_params(INDEPENDENT))
def test_config_round_trips_through_toml_and_json(flat):
    cfg = config_from_dict(nested(flat))
    for key, value in flat.items():
        expected = tuple(value) if isinstance(value, list) else value
        assert get(cfg, key) == expected, key
    assert_round_trips(cfg)


STRINGS = sorted(k for k, (f, tp) in LEAVES.items()
                 if base_type(tp) is str and f.metadata.get("choices") is None)


@given(st.dictionaries(st.sampled_from(STRINGS), BMP_TEXT, min_size=1))
def test_free_text_params_round_trip(flat):
    flat = {k: v for k, v in flat.items() if k != "run.name" or name_problem(v) is None}
    assert_round_trips(config_from_dict(nested(flat)))


@given(BMP_TEXT.filter(lambda s: name_problem(s) is not None))
def test_run_name_that_is_no_file_name_is_refused(name):
    with pytest.raises(ConfigError) as info:
        config_from_dict({"run": {"name": name}})
    assert info.value.key == "run.name" and "\n" not in str(info.value)


def test_text_beyond_the_bmp_round_trips():
    assert_round_trips(config_from_dict({"run": {"name": "run \U0001F600"}}))


@given(drawn_params(sorted(COUPLED), max_keys=4))
def test_coupled_keys_round_trip_or_name_a_coupled_key(flat):
    try:
        cfg = config_from_dict(nested(flat))
    except ConfigError as exc:
        # a cross-field rule names the key it blames, one of the coupled set
        assert exc.key is not None and exc.key.split("[")[0] in COUPLED, str(exc)
        assert exc.key in str(exc)
        return
    assert_round_trips(cfg)


@pytest.mark.parametrize("run,key", [({"dt_min": 5e-324}, "run.dt_min"),
                                     ({"record_every_min": math.inf}, "run.record_every_min"),
                                     ({"record_every_min": 1e300}, "run.record_every_min")])
def test_interval_overflowing_dt_min_is_a_config_error(run, key):
    with pytest.raises(ConfigError, match=key):
        config_from_dict({"run": run})


# -- values outside the declared range ---------------------------------------------------

def _bounded(key: str) -> bool:
    f, tp = LEAVES[key]
    m = f.metadata
    return (any(m.get(b) is not None for b in ("ge", "gt", "le", "lt", "choices", "length"))
            or base_type(tp) is float)


BOUNDED = sorted(k for k in LEAVES if _bounded(k))


def number_outside(kind, meta: dict):
    """Numbers of type ``kind`` that break one of the declared bounds (floats: or NaN)."""
    options = []
    if kind is float:
        options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
        if meta.get("le") is None and meta.get("lt") is None:
            options.append(st.floats(min_value=FLOAT_MAX, exclude_min=True, allow_nan=False))

    def below(limit, inclusive):
        if kind is int:
            return st.integers(max_value=limit if inclusive else limit - 1)
        return st.floats(max_value=limit, exclude_max=not inclusive, allow_nan=False)

    def above(limit, inclusive):
        if kind is int:
            return st.integers(min_value=limit if inclusive else limit + 1)
        return st.floats(min_value=limit, exclude_min=not inclusive, allow_nan=False)

    if meta.get("ge") is not None:
        options.append(below(meta["ge"], inclusive=False))
    if meta.get("gt") is not None:
        options.append(below(meta["gt"], inclusive=True))
    if meta.get("le") is not None:
        options.append(above(meta["le"], inclusive=False))
    if meta.get("lt") is not None:
        options.append(above(meta["lt"], inclusive=True))
    return st.one_of(options) if options else None


@st.composite
def invalid_param(draw):
    """``(key, value, blamed_key)``: one value the schema must refuse, and the key path it names."""
    key = draw(st.sampled_from(BOUNDED))
    f, tp = LEAVES[key]
    meta, tp = f.metadata, base_type(tp)
    if meta.get("choices") is not None:
        value = draw(st.text(max_size=12).filter(lambda s: s not in meta["choices"]))
        return key, value, key
    if is_tuple(tp):
        elem_type = tp.__args__[0]
        length = meta.get("length")
        sizes = (length,) if isinstance(length, int) else tuple(length or ())
        bad_elem = number_outside(elem_type, meta)
        if bad_elem is None or (sizes and draw(st.booleans())):
            n = draw(st.integers(0, 12).filter(lambda n: n not in sizes))
            return key, [1] * n, key
        n = sizes[0] if sizes else draw(st.integers(1, 4))
        good = draw(st.lists(number_strategy(elem_type, meta), min_size=n, max_size=n))
        i = draw(st.integers(0, n - 1))
        good[i] = draw(bad_elem)
        return key, good, f"{key}[{i}]"
    return key, draw(number_outside(tp, meta)), key


@given(invalid_param())
def test_out_of_range_values_raise_config_error_naming_the_key(case):
    key, value, blamed = case
    with pytest.raises(ConfigError) as info:
        config_from_dict(nested({key: value}))
    assert info.value.key == blamed
    assert blamed in str(info.value)
