"""Pieces of the agent step that exist to keep compile time down (docs/developing.md, "Compile time").

The serial variant of the agent step and its selection by thread count, the
heap sort that replaced ``np.argsort``, and the tile-update signature a
warm-up helper compiles (it must be the one the agent step calls, or the
helper's work is wasted). Results of the serial and threaded variants are
compared in ``tests/model/test_cells_determinism.py``.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from abm.kernels import cells_step as KS
from abm.kernels.jit import JIT_DISABLED


def test_the_kernel_follows_the_thread_count():
    assert KS.agent_step_kernel(1) is KS.agent_step_serial
    assert KS.agent_step_kernel(2) is KS.agent_step
    name = getattr(KS.agent_step_serial, "py_func", KS.agent_step_serial).__qualname__
    assert name == "agent_step_serial"   # its own entry in the on-disk cache


@pytest.mark.parametrize("n", [0, 1, 2, 3, 8, 33, 500])
def test_sort_by_id_gives_the_argsort_order(n):
    rng = np.random.default_rng(n)
    ids = rng.permutation(4 * n + 3).astype(np.int64)
    rows = rng.choice(ids.size, n, replace=False).astype(np.int64)
    want = rows[np.argsort(ids[rows])]
    KS.sort_by_id(rows, ids)
    np.testing.assert_array_equal(rows, want)


@pytest.mark.skipif(JIT_DISABLED, reason="needs the JIT")
@pytest.mark.parametrize("threads", [1, 2])
def test_tile_update_signature_is_the_one_the_agent_step_compiles(monkeypatch, threads):
    import numba

    from abm.build import build_simulation
    from abm.config import config_from_dict
    from abm.kernels.jit import jit, pjit, set_threads
    from abm.model.agents import CellRules

    @contextlib.contextmanager
    def set_threads_to(n):
        before = set_threads(None)
        set_threads(n)
        try:
            yield
        finally:
            set_threads(before)

    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs 2 Numba threads")
    seen = []
    real = KS.agent_step_kernel

    def spy(threads=None):
        kernel = real(threads)

        def call(*args):
            seen.append(args)
            return kernel(*args)
        return call

    monkeypatch.setattr(KS, "agent_step_kernel", spy)
    monkeypatch.setattr(CellRules, "par_min", 1)   # the threaded loops with 2 threads
    with set_threads_to(threads):
        sim = build_simulation(config_from_dict({
            "lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 50},
            "run": {"start_day": 0.0, "end_day": 0.05, "seed": 1}}))
        sim.step()
    assert seen
    # the step may have been loaded from the disk cache, which types none of its callees: type
    # it afresh (an uncached copy), which compiles or loads the tile update for the signature
    # it really calls
    step = real(threads)
    fresh = (pjit if threads > 1 else jit)(step.py_func, cache=False)
    with set_threads_to(threads):
        fresh(*seen[0])
    sig = KS.tile_update_signature(seen[0])
    assert tuple(sig) in [tuple(s) for s in KS._tile_update.signatures]
