"""The ``decay_after`` (sparse) source-sink mode used by the field phase with the implicit solver.

Paired with an implicit stepper that applies the decay factor, it must give
the same fields and masses as the default mode followed by a decay-free
implicit step (to rounding), a closed mass balance, cleared sources and uptakes, and the same numbers for any
thread count, serial or parallel, and with the JIT off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from abm.kernels import diffusion_implicit as DI
from abm.kernels import source_sink as SS
from tests.helpers.fields import field_exchange_inputs

H = 20.0
DT = 360.0


def _inputs(shape, seed):
    return field_exchange_inputs(shape, seed)[:7]   # no diffusivities here


def _both(shape, seed, parallel=False):
    c, S, K, p, kex, k, cb = _inputs(shape, seed)
    D = np.full(shape[0], 15.0)
    old = c.copy()
    m_old = SS.make_source_sink_stepper(shape, H, DT, kex, k, parallel)(old, S, K, p, cb)
    DI.make_implicit_stepper(shape, H, DT, D, np.zeros_like(k), parallel=parallel)(old)
    new = c.copy()
    S2, K2 = S.copy(), K.copy()
    m_new = SS.make_source_sink_stepper(shape, H, DT, kex, k, parallel, decay_after=True)(
        new, S2, K2, p, cb, clear=True)
    DI.make_implicit_stepper(shape, H, DT, D, k, parallel=parallel)(new)
    return c, S, K, p, cb, old, m_old, new, m_new, S2, K2


@pytest.mark.parametrize("shape", [(4, 70, 90), (3, 9, 20, 31)])
def test_same_fields_and_masses_as_the_default_mode(shape):
    c, S, K, p, cb, old, m_old, new, m_new, S2, K2 = _both(shape, 3)
    np.testing.assert_allclose(new, old, rtol=1e-13, atol=0)
    np.testing.assert_allclose(m_new, m_old, rtol=1e-12, atol=1e-15 * np.abs(m_old).max())
    assert not S2.any() and not K2.any()   # clear=True consumed both


def test_mass_balance_closes_with_noflux_diffusion():
    shape = (3, 64, 80)
    c, S, K, p, cb, old, m_old, new, m, S2, K2 = _both(shape, 7)
    vol = H ** 3 * 1e-12
    lhs = (new.reshape(3, -1).sum(axis=1) - c.reshape(3, -1).sum(axis=1)) * vol
    rhs = S.sum(axis=1) * DT * vol - m[SS.MASS_EXCHANGED] - m[SS.MASS_UPTAKE] - m[SS.MASS_DECAYED]
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-12 * np.abs(m).max())


def test_decayed_false_skips_only_the_decayed_mass():
    shape = (3, 40, 50)
    c, S, K, p, kex, k, cb = _inputs(shape, 9)
    step = SS.make_source_sink_stepper(shape, H, DT, kex, k, decay_after=True)
    a, b = c.copy(), c.copy()
    ma = step(a, S, K, p, cb).copy()
    mb = step(b, S, K, p, cb, decayed=False)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma[:2], mb[:2])
    assert np.isnan(mb[SS.MASS_DECAYED]).all()


def test_needs_the_exact_method():
    with pytest.raises(ValueError, match="decay_after"):
        SS.make_source_sink_stepper((2, 8, 8), H, DT, 1e-3, 1e-4, method="backward_euler",
                                     decay_after=True)


def _run(parallel, shape=(4, 70, 66)):   # 4620 sites: two blocks, so the threaded path runs
    c, S, K, p, kex, k, cb = _inputs(shape, 11)
    new = c.copy()
    mass = SS.make_source_sink_stepper(shape, H, DT, kex, k, parallel, decay_after=True)(
        new, S.copy(), K.copy(), p, cb, clear=True)
    return [new, mass]


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_bit_identical_across_threads_and_serial():
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _run(True)
        numba.set_num_threads(2)
        two = _run(True)
        serial = _run(False)
    finally:
        numba.set_num_threads(before)
    for a, b, c in zip(one, two, serial):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_jit_off_identical(tmp_path):
    path = tmp_path / "nojit.npz"
    script = textwrap.dedent("""
        import sys, numpy as np
        sys.path.insert(0, {d!r})
        import test_source_sink_sparse as t
        np.savez(sys.argv[1], *t._run(False, shape=(3, 9, 11)))
    """).format(d=os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", script, str(path)],
                   env=dict(os.environ, NUMBA_DISABLE_JIT="1"), check=True, timeout=120)
    want = _run(False, shape=(3, 9, 11))
    with np.load(path) as saved:
        for i, w in enumerate(want):
            np.testing.assert_array_equal(saved[f"arr_{i}"], w)
