"""Declarative parameter schema: frozen dataclasses whose fields carry units and ranges.

A parameter section is a frozen dataclass whose fields are declared with
:func:`param`::

    @dataclass(frozen=True)
    class TumourParams(Section):
        growth_rate_per_day: float = param(0.1, unit="1/day", ge=0, doc="division rate into free space")

:func:`build` turns a TOML table into such an object, checking every key:
unknown keys (with a did-you-mean hint), wrong types, values outside the
declared range or choices, and -- through each section's ``check()`` method --
inconsistent combinations. Every failure raises :class:`abm.errors.ConfigError`
naming the key path, the value and what is allowed.

Nested sections are dataclass-typed fields; their defaults may differ from the
class defaults (a default instance), and user keys override field by field.
A section may declare ``PRESETS`` (name -> table) selected by a ``preset`` key:
the preset's table is applied first, then the user's keys override it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from abm.errors import ConfigError

_NO_DEFAULT = object()

#: Largest magnitude of a float parameter that declares no bound of its own. No
#: quantity of the model comes near it (the largest, a tumour burden, is <= 1e13
#: cells), and it keeps products of parameters far from float overflow, so an
#: accepted config cannot turn into inf or NaN in the output.
FLOAT_MAX = 1e15
#: Largest magnitude of an integer parameter without a bound of its own (int64).
INT_MAX = 2**63 - 1


def param(default: Any = _NO_DEFAULT, *, unit: str, doc: str = "", ge=None, gt=None,
          le=None, lt=None, choices=None, length=None):
    """Declare a parameter field with its unit, documentation and allowed range.

    Args:
        default: default value (immutable: numbers, strings, tuples, None).
        unit: physical unit ("1/day", "um", "pg/mL", ...); "1" for dimensionless,
            "-" for labels, flags and counts.
        doc: one-line description.
        ge, gt, le, lt: inclusive / exclusive bounds for numbers (and for each
            element of a tuple).
        choices: allowed values for strings.
        length: allowed tuple lengths (an int or a tuple of ints).
    """
    meta = dict(unit=unit, doc=doc, ge=ge, gt=gt, le=le, lt=lt, choices=choices,
                length=length)
    if default is _NO_DEFAULT:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def section(factory, doc: str = ""):
    """Declare a nested section field whose default is ``factory()``."""
    return field(default_factory=factory, metadata=dict(unit="-", doc=doc, section=True))


@dataclass(frozen=True)
class Section:
    """Base class of parameter sections; subclasses add ``check`` for cross-field rules."""

    PRESETS: ClassVar[dict[str, dict]] = {}

    def check(self, fail) -> None:
        """Check combinations of fields; call ``fail(key, message)`` for each problem."""

    def to_dict(self) -> dict:
        """Plain nested dict (tuples as lists) suitable for TOML/JSON output."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Section):
                out[f.name] = v.to_dict()
            elif isinstance(v, tuple):
                out[f.name] = list(v)
            elif v is not None:
                out[f.name] = v
        return out

    def replace(self, **changes) -> "Section":
        return dataclasses.replace(self, **changes)


def describe(f: dataclasses.Field) -> str:
    """Human text for a field's allowed values, e.g. '>= 0 1/day'."""
    m = f.metadata
    parts = []
    if m.get("choices") is not None:
        parts.append("one of " + ", ".join(repr(c) for c in m["choices"]))
    for key, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if m.get(key) is not None:
            parts.append(f"{sym} {m[key]}")
    unit = m.get("unit")
    text = " and ".join(parts) if parts else "any value"
    if unit and unit not in ("-", "1"):
        text += f" (unit {unit})"
    return text


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


class _Builder:
    def __init__(self, file: str | None):
        self.file = file

    def fail(self, key: str, message: str):
        raise ConfigError(f"{key} {message}" if key else message, path=self.file, key=key)

    # -- values -------------------------------------------------------------
    def coerce(self, tp, value, key: str, meta: dict):
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)]
            return self.coerce(inner[0], value, key, meta)
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(key, f"must be a number (got {value!r})")
            value = float(value)
            if not math.isfinite(value):
                self.fail(key, f"must be a finite number (got {value!r})")
            unbounded_above = meta.get("le") is None and meta.get("lt") is None
            unbounded_below = meta.get("ge") is None and meta.get("gt") is None
            if (unbounded_above and value > FLOAT_MAX) or (unbounded_below and value < -FLOAT_MAX):
                self.fail(key, f"must lie within +-{FLOAT_MAX:g} (got {value!r})")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(key, f"must be an integer (got {value!r})")
            if abs(value) > INT_MAX:
                self.fail(key, f"must be between {-INT_MAX} and {INT_MAX} (got {value!r})")
            return value
        if tp is bool:
            if not isinstance(value, bool):
                self.fail(key, f"must be true or false (got {value!r})")
            return value
        if tp is str:
            if not isinstance(value, str):
                self.fail(key, f"must be a string (got {value!r})")
            return value
        if origin is tuple:
            if not isinstance(value, (list, tuple)):
                self.fail(key, f"must be an array (got {value!r})")
            elem = args[0]
            return tuple(self.coerce(elem, v, f"{key}[{i}]", meta) for i, v in enumerate(value))
        raise TypeError(f"unsupported parameter type {tp} at {key}")  # programming error

    def check_range(self, value, key: str, f: dataclasses.Field):
        m = f.metadata
        if value is None:
            return
        if isinstance(value, tuple):
            length = m.get("length")
            if length is not None:
                allowed = (length,) if isinstance(length, int) else tuple(length)
                if len(value) not in allowed:
                    self.fail(key, f"must have {' or '.join(map(str, allowed))} elements "
                                   f"(got {len(value)}: {list(value)!r})")
            for i, v in enumerate(value):
                self._check_scalar(v, f"{key}[{i}]", f)
            return
        self._check_scalar(value, key, f)

    def _check_scalar(self, value, key, f):
        m = f.metadata
        if m.get("choices") is not None and value not in m["choices"]:
            hint = ""
            if isinstance(value, str):
                close = difflib.get_close_matches(value, [str(c) for c in m["choices"]], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
            self.fail(key, f"must be {describe(f)} (got {value!r}){hint}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            bad = ((m.get("ge") is not None and not value >= m["ge"])
                   or (m.get("gt") is not None and not value > m["gt"])
                   or (m.get("le") is not None and not value <= m["le"])
                   or (m.get("lt") is not None and not value < m["lt"]))
            if bad:
                self.fail(key, f"must be {describe(f)} (got {value!r})")

    # -- sections -------------------------------------------------------------
    def build(self, cls, data, prefix: str, base: Section | None = None):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.fail(prefix, f"must be a table of keys (got {data!r})")
        hints = typing.get_type_hints(cls)
        flds = {f.name: f for f in fields(cls)}
        known = set(flds)
        for k in data:
            if k not in known:
                close = difflib.get_close_matches(k, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                where = f"{prefix}.{k}" if prefix else k
                self.fail(where, f"is not a known key{hint} (known keys in "
                                 f"[{prefix or 'top level'}]: {', '.join(sorted(known))})")
        data = dict(data)
        if "preset" in flds and cls.PRESETS:
            name = data.get("preset", getattr(base, "preset", None) if base else None)
            if name is None:
                name = flds["preset"].default
            if name not in cls.PRESETS:
                self.fail(f"{prefix}.preset", f"must be one of "
                          f"{', '.join(repr(p) for p in cls.PRESETS)} (got {name!r})")
            merged = dict(cls.PRESETS[name])
            merged.update(data)
            merged["preset"] = name
            data = merged
        values = {}
        for name, f in flds.items():
            key = f"{prefix}.{name}" if prefix else name
            tp = hints[name]
            default_obj = getattr(base, name) if base is not None else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
            if isinstance(tp, type) and issubclass(tp, Section):
                values[name] = self.build(tp, data.get(name), key, base=default_obj)
                continue
            if name in data:
                value = self.coerce(tp, data[name], key, f.metadata)
            elif default_obj is dataclasses.MISSING:
                self.fail(key, "is required")
            else:
                value = default_obj
            self.check_range(value, key, f)
            values[name] = value
        obj = cls(**values)
        obj.check(lambda k, msg: self.fail(f"{prefix}.{k}" if prefix else k, msg))
        return obj


def build(cls, data: dict, *, file: str | None = None, prefix: str = ""):
    """Validate ``data`` (a parsed TOML table) into a frozen ``cls`` instance."""
    return _Builder(file).build(cls, data, prefix)


def walk_params(cls, prefix: str = ""):
    """Yield ``(key_path, field, type)`` for every leaf parameter of a section class."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if isinstance(tp, type) and issubclass(tp, Section):
            yield from walk_params(tp, key)
        else:
            yield key, f, tp
