"""Runs the registered CAR-T rules in the agents phase and records their events.

:class:`RegisteredCartRules` takes the rules registered when a simulation is
built (:func:`abm.kernels.registry.cart_rules`) and, each step after the core
agent pass, runs each as its own compiled pass over the CAR-T rows
(:func:`abm.kernels.cells_rules.make_rule_pass`). Each event a rule counts is
kept cumulatively in ``state.scalars[<event key>]`` (so a run resumed from a
checkpoint continues the tallies) and recorded under that key with the unit
and long name the rule declares. With no rule registered it does nothing.
"""

from __future__ import annotations

import numpy as np

from abm.kernels import registry
from abm.kernels.cells_rules import make_rule_pass


class RegisteredCartRules:
    """The registered CAR-T rules of one simulation: passes, parameters, event tallies."""

    def __init__(self, dt_s: float):
        self.dt_s = float(dt_s)
        self.rules = registry.cart_rules()
        self.passes = [make_rule_pass(r.rule) for r in self.rules]
        self.params = [r.param_values() for r in self.rules]
        self.counts = [np.zeros(len(r.events), dtype=np.int64) for r in self.rules]
        #: Recorded keys -> (unit, long name), for the file writer.
        self.meta = {e.key: (e.unit, e.long_name) for r in self.rules for e in r.events}

    def step(self, state, fields: np.ndarray) -> None:
        """Run every rule once over the CAR-T rows; add its event counts to the scalars."""
        c, sc = state.cells, state.scalars
        for rule, run, params, counts in zip(self.rules, self.passes, self.params, self.counts):
            counts[:] = 0
            run(state.seed, rule.stream, state.step, c.n, c.kind, c.id, c.phenotype, c.activation,
                c.engagements, c.divisions_left, c.timer, c.target, c.site, fields, self.dt_s,
                params, counts)
            for event, k in zip(rule.events, counts):
                sc[event.key] = sc.get(event.key, 0) + int(k)

    def record(self, state, row) -> None:
        for key in self.meta:
            row[key] = int(state.scalars.get(key, 0))


__all__ = ["RegisteredCartRules"]
