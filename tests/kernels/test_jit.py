"""The jit wrapper's resolved entries: the same machine code without per-call type dispatch."""

from collections import namedtuple

import numpy as np

from abm.kernels.jit import JIT_DISABLED, jit, resolved

Pair = namedtuple("Pair", ["a", "b"])


@jit
def _weighted_sum(pair, w):
    return (pair.a * w).sum() + pair.b.sum()


def test_resolved_entry_gives_the_dispatchers_result():
    args = (Pair(np.arange(5.0), np.ones(3)), 2.0)
    expected = _weighted_sum(*args)                      # compiles for these types
    entry = resolved(_weighted_sum, args)
    if not JIT_DISABLED:
        assert entry is not _weighted_sum                # the compiled entry, not the dispatcher
    assert entry(*args) == expected == 23.0


def test_unseen_argument_types_fall_back_to_the_dispatcher():
    _weighted_sum(Pair(np.arange(5.0), np.ones(3)), 2.0)
    other = (Pair(np.arange(5, dtype=np.int32), np.ones(3)), 2.0)   # never compiled for int32
    assert resolved(_weighted_sum, other) is _weighted_sum
