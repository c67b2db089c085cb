"""The pass that runs one registered CAR-T rule over the CAR-T rows.

:func:`make_rule_pass` compiles, for a rule function of
:class:`abm.kernels.registry.CartRule`, a loop over the live CAR-T rows of
the cell table that calls the rule once per row with the rule's stream key
of the step (``stream_key(seed, stream, step)``; draws then add the cell id
and a draw index, as every rule does). Rows are visited in table order, but
a rule's numbers depend only on the cell id, so the order does not change
which numbers a cell draws.

The pass is compiled per process (not cached on disk: it closes over the
rule function); the built-in kernels are unaffected.
"""

from __future__ import annotations

from abm.kernels.cells_common import CART, stream_key
from abm.kernels.jit import jit


def make_rule_pass(rule):
    """A compiled ``run(seed, stream, step, n, kind, id, phenotype, activation, engagements,
    divisions_left, timer, target, site, fields, dt_s, params, counts)`` calling ``rule`` per CAR-T row."""

    def run(seed, stream, step, n, kind, id_, phenotype, activation, engagements, divisions_left,
            timer, target, site, fields, dt_s, params, counts):
        key = stream_key(seed, stream, step)
        for row in range(n):
            if kind[row] == CART:
                rule(key, row, id_, phenotype, activation, engagements, divisions_left, timer,
                     target, site, fields, dt_s, params, counts)

    return jit(run, cache=False)


__all__ = ["make_rule_pass"]
