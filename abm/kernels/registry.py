"""The registry of field species and extra CAR-T rules.

Species
    :func:`species` lists the built-in species (:data:`abm.kernels.codes.BUILTIN_SPECIES`)
    followed by those added with :func:`register_species`. The list sets the
    species axis of the field array, the ``[fields.<name>]`` config sections,
    the plasma and exchange scalars and the recorded ``tissue_<name>`` /
    ``plasma_<name>`` keys. The config classes are built from it when
    :mod:`abm.model.fields` is imported, which freezes the list: register a
    species before that import (a plugin module imported first), or add a row
    to ``BUILTIN_SPECIES``.

CAR-T rules
    :func:`register_cart_rule` adds a :class:`CartRule`: a per-cell rule
    function (compiled with :func:`abm.kernels.jit.jit`), its parameters with
    units and the events it counts. The agents process runs every registered
    rule, in registration order, as its own pass over the CAR-T rows after the
    core agent pass (:mod:`abm.kernels.cells_rules`), drawing from the rule's
    own stream. The registry allocates that stream id: the first id after the
    built-in :class:`abm.kernels.codes.Stream` ids not yet given to a rule, in
    registration order; a name keeps its id for the life of the process, also
    across :func:`unregister_cart_rule`.

The built-in rules (tumour, CAR-T, myeloid, endothelium) are not registry
entries: they live in the fused agent pass of :mod:`abm.kernels.cells_step`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from abm.kernels.codes import BUILTIN_SPECIES, SpeciesDef, Stream


class RegistryError(ValueError):
    """A registration conflicts with what is already registered."""


# -- species ----------------------------------------------------------------------

_extra_species: list[SpeciesDef] = []
_species_frozen = False


def species(freeze: bool = False) -> tuple[SpeciesDef, ...]:
    """All field species in storage order; ``freeze``: no species may be added afterwards."""
    global _species_frozen
    if freeze:
        _species_frozen = True
    return BUILTIN_SPECIES + tuple(_extra_species)


def species_names() -> tuple[str, ...]:
    """Names of :func:`species`, in storage order."""
    return tuple(s.name for s in species())


def species_index(name: str) -> int:
    """Row of species ``name`` on the species axis."""
    return species_names().index(name)


def register_species(spec: SpeciesDef) -> int:
    """Add a field species after the existing ones; returns its row on the species axis.

    Raises:
        RegistryError: the name is taken, or the species list is frozen
            (:mod:`abm.model.fields` was imported: register before it).
    """
    if _species_frozen:
        raise RegistryError(
            f"cannot register species {spec.name!r}: the species list is fixed once "
            "abm.model.fields is imported (register it before importing the model or the config)")
    if not spec.name.isidentifier() or spec.name in species_names():
        raise RegistryError(f"species name {spec.name!r} is taken or not an identifier")
    _extra_species.append(spec)
    return len(species()) - 1


# -- CAR-T rules ------------------------------------------------------------------

@dataclass(frozen=True)
class RuleParam:
    """A parameter of a CAR-T rule: name, value, unit and meaning."""

    name: str
    value: float
    unit: str
    doc: str = ""


@dataclass(frozen=True)
class RuleEvent:
    """An event a CAR-T rule counts, recorded cumulatively in the time series as ``key``."""

    key: str
    unit: str
    long_name: str


@dataclass(frozen=True)
class CartRule:
    """A stochastic per-cell CAR-T rule.

    Attributes:
        name: the rule's name; also the name of its random stream.
        rule: compiled function called once per live CAR-T row and step as
            ``rule(key, row, id, phenotype, activation, engagements,
            divisions_left, timer, target, site, fields, dt_s, params, counts)``:
            ``key`` is the rule's stream key of this step (draw with
            ``cells_common.uniform(key, id[row], draw)``), the column arrays
            are those of the cell table (the rule may change a row's
            phenotype, activation, engagements, divisions_left, timer),
            ``fields`` is ``(species, sites)`` in pg/mL, ``dt_s`` the step (s),
            ``params`` the values of :attr:`params` in order, and
            ``counts[j] += 1`` counts event ``j`` of :attr:`events`.
        params: the rule's parameters (values with units).
        events: the events it counts, in the order of ``counts``.
    """

    name: str
    rule: Callable
    params: tuple[RuleParam, ...] = ()
    events: tuple[RuleEvent, ...] = ()
    stream: int = field(default=-1, compare=False)

    def param_values(self) -> np.ndarray:
        """The parameter values as the float64 array the rule receives."""
        return np.array([p.value for p in self.params], dtype=np.float64)


_rules: dict[str, CartRule] = {}
_rule_streams: dict[str, int] = {}
#: The first stream id the registry gives to a CAR-T rule.
FIRST_RULE_STREAM = max(int(s) for s in Stream) + 1


def _stream_for(name: str) -> int:
    if name in Stream.__members__:
        raise RegistryError(f"rule name {name!r} is the name of a built-in stream")
    if name not in _rule_streams:
        _rule_streams[name] = FIRST_RULE_STREAM + len(_rule_streams)
    return _rule_streams[name]


def register_cart_rule(rule: CartRule) -> CartRule:
    """Register ``rule``; returns it with its allocated stream id.

    Raises:
        RegistryError: the name is taken, or an event key is already recorded
            by another registered rule.
    """
    if rule.name in _rules:
        raise RegistryError(f"a CAR-T rule named {rule.name!r} is already registered")
    taken = {e.key for r in _rules.values() for e in r.events}
    keys = [e.key for e in rule.events]
    if len(set(keys)) != len(keys) or taken & set(keys):
        raise RegistryError(f"rule {rule.name!r}: event keys {keys} repeat or are already recorded")
    registered = CartRule(rule.name, rule.rule, tuple(rule.params), tuple(rule.events),
                          stream=_stream_for(rule.name))
    _rules[rule.name] = registered
    return registered


def unregister_cart_rule(name: str) -> None:
    """Remove the rule ``name`` (its stream id stays reserved for that name)."""
    del _rules[name]


def cart_rules() -> tuple[CartRule, ...]:
    """The registered CAR-T rules, in registration order."""
    return tuple(_rules.values())


@contextlib.contextmanager
def cart_rule_registered(rule: CartRule):
    """Register ``rule`` for the duration of a ``with`` block (tests, experiments)."""
    registered = register_cart_rule(rule)
    try:
        yield registered
    finally:
        unregister_cart_rule(rule.name)


def all_streams() -> dict[str, int]:
    """Name -> id of every stream: the built-in ones and those given to CAR-T rules."""
    return {**{s.name: int(s) for s in Stream}, **_rule_streams}


__all__ = ["RegistryError", "species", "species_names", "species_index", "register_species",
           "RuleParam", "RuleEvent", "CartRule", "register_cart_rule", "unregister_cart_rule",
           "cart_rules", "cart_rule_registered", "all_streams", "FIRST_RULE_STREAM"]
