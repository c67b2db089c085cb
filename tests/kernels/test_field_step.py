"""The fused field step: the source-sink step and the implicit step in one compiled call.

:func:`abm.kernels.diffusion_implicit.make_field_step` must give bit for bit
what the ``decay_after`` source-sink step followed by the implicit step give
(fields, masses, cleared sources and uptakes), for 2D, 3D and layered
lattices, no-flux and fixed boundaries, lattices whose site blocks end inside
a row, serial and threaded, and with the JIT off.
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


def _steppers(shape, kex, k, D, parallel, boundary, layered):
    ss = SS.make_source_sink_stepper(shape, H, DT, kex, k, parallel, decay_after=True)
    diffuse = DI.make_implicit_stepper(shape, H, DT, D, k, boundary=boundary, parallel=parallel,
                                       layered=layered)
    return ss, diffuse


def _separate(shape, seed=5, parallel=False, boundary="noflux", layered=False, decayed=True):
    c, S, K, p, kex, k, cb, D = field_exchange_inputs(shape, seed)
    ss, diffuse = _steppers(shape, kex, k, D, parallel, boundary, layered)
    mass = ss(c, S, K, p, cb, clear=True, decayed=decayed)
    diffuse(c, boundary_values=cb * 0.5 if boundary == "fixed" else None)
    return [c, mass, S, K]


def _fused(shape, seed=5, parallel=False, boundary="noflux", layered=False, decayed=True):
    c, S, K, p, kex, k, cb, D = field_exchange_inputs(shape, seed)
    step = DI.make_field_step(*_steppers(shape, kex, k, D, parallel, boundary, layered))
    mass = step(c, S, K, p, cb, clear=True, decayed=decayed,
                boundary_values=cb * 0.5 if boundary == "fixed" else None)
    return [c, mass, S, K]


def _assert_same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("shape, layered", [
    ((4, 70, 90), False),      # 6300 sites: the first block ends inside row 45
    ((3, 64, 64), False),      # blocks end at row boundaries
    ((3, 9, 20, 31), False),   # 3D
    ((3, 2, 37, 29), True),    # two uncoupled layers
    ((2, 5, 3), False),        # fewer than 8 rows: single-row sweeps only
])
def test_fused_step_is_bit_identical_to_the_two_steps(shape, layered):
    _assert_same(_fused(shape, layered=layered), _separate(shape, layered=layered))


def test_fixed_boundary_and_decayed_false():
    shape = (3, 21, 17)
    _assert_same(_fused(shape, boundary="fixed"), _separate(shape, boundary="fixed"))
    fused, separate = _fused(shape, decayed=False), _separate(shape, decayed=False)
    assert np.isnan(fused[1][SS.MASS_DECAYED]).all()
    _assert_same(fused, separate)


def test_sources_and_uptake_are_cleared():
    _, _, S, K = _fused((3, 33, 40))
    assert not S.any() and not K.any()


def test_mismatched_steppers_are_refused():
    shape = (2, 8, 8)
    ss = SS.make_source_sink_stepper(shape, H, DT, 1e-3, 1e-4, decay_after=True)
    with pytest.raises(ValueError, match="decay"):
        DI.make_field_step(ss, DI.make_implicit_stepper(shape, H, DT, 10.0, 2e-4))
    with pytest.raises(ValueError, match="decay_after"):
        DI.make_field_step(SS.make_source_sink_stepper(shape, H, DT, 1e-3, 1e-4),
                           DI.make_implicit_stepper(shape, H, DT, 10.0, 1e-4))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_threaded_equals_serial():
    before = numba.get_num_threads()
    shape = (4, 70, 66)
    try:
        numba.set_num_threads(2)
        two = _fused(shape, parallel=True)
        numba.set_num_threads(1)
        one = _fused(shape, parallel=True)
    finally:
        numba.set_num_threads(before)
    _assert_same(two, one)
    _assert_same(two, _fused(shape, parallel=False))
    _assert_same(two, _separate(shape, parallel=False))


def test_jit_off_identical(tmp_path):
    path = tmp_path / "nojit.npz"
    script = textwrap.dedent("""
        import sys, numpy as np
        sys.path.insert(0, {d!r})
        import test_field_step as t
        np.savez(sys.argv[1], *t._fused((3, 11, 13)))
    """).format(d=os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", script, str(path)],
                   env=dict(os.environ, NUMBA_DISABLE_JIT="1"), check=True, timeout=300)
    with np.load(path) as saved:
        for i, w in enumerate(_fused((3, 11, 13))):
            np.testing.assert_array_equal(saved[f"arr_{i}"], w)
