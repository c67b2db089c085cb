"""Layered fields: K uncoupled 2D patches in one ``(F, K, ny, nx)`` array.

Each layer must step exactly as a separate ``(F, ny, nx)`` field would (no
flux between layers, 2D stability limit), and mass is conserved in every
layer on its own with no-flux boundaries.
"""

from __future__ import annotations

import numpy as np
import pytest

from abm.kernels import diffusion_explicit as DE
from abm.kernels import diffusion_implicit as DI
from abm.kernels import source_sink as SS

H = 20.0
PLANE = (3, 13, 17)   # (F, ny, nx): rows not a multiple of 8 on purpose
K = 4
D = np.array([10.0, 35.0, 80.0])
DECAY = np.array([0.0, 2e-4, 1e-3])
G = np.array([1.0, 0.5, 2.0])


def _stepper(scheme, shape, boundary, parallel, layered=False):
    make = DI.make_implicit_stepper if scheme == "implicit" else DE.make_explicit_stepper
    return make(shape, H, 360.0, D, DECAY, boundary, parallel, layered=layered)


def _layers(seed=0):
    """K different 2D fields stacked as ``(F, K, ny, nx)``."""
    rng = np.random.default_rng(seed)
    F, ny, nx = PLANE
    return np.ascontiguousarray(rng.random((F, K, ny, nx)) * 100.0)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("boundary", ["noflux", "fixed"])
@pytest.mark.parametrize("scheme", ["implicit", "explicit"])
def test_layered_step_equals_separate_2d_patches(scheme, boundary, parallel):
    layered = _layers()
    separate = [np.ascontiguousarray(layered[:, k]) for k in range(K)]
    step_l = _stepper(scheme, layered.shape, boundary, parallel, layered=True)
    step_2 = _stepper(scheme, PLANE, boundary, parallel)
    assert step_l.ndim == 2 and step_l.layered
    if scheme == "explicit":
        assert step_l.n_sub == step_2.n_sub   # the 2D stability limit
    g = G if boundary == "fixed" else None
    for _ in range(5):
        step_l(layered, boundary_values=g)
        for c in separate:
            step_2(c, boundary_values=g)
    for k in range(K):
        assert np.array_equal(layered[:, k], separate[k]), k


@pytest.mark.parametrize("scheme", ["implicit", "explicit"])
def test_identical_layers_stay_identical(scheme):
    one = _layers()[:, :1].copy()
    stack = np.ascontiguousarray(np.repeat(one, K, axis=1))
    step = _stepper(scheme, stack.shape, "noflux", True, layered=True)
    for _ in range(10):
        step(stack)
    for k in range(1, K):
        assert np.array_equal(stack[:, k], stack[:, 0])


@pytest.mark.parametrize("scheme", ["implicit", "explicit"])
def test_mass_is_conserved_in_every_layer_and_never_crosses(scheme):
    F, ny, nx = PLANE
    c = np.zeros((F, K, ny, nx))
    c[:, 1] = _layers(3)[:, 1]
    c[:, 3, ny // 2, nx // 2] = 1e4       # a point source in another layer
    mass0 = c.sum(axis=(2, 3))
    # explicit: a short step, as in the 2D conservation test (rounding grows with sub-steps)
    make = DI.make_implicit_stepper if scheme == "implicit" else DE.make_explicit_stepper
    step = make(c.shape, H, 360.0 if scheme == "implicit" else 6.0, D, 0.0, "noflux", True,
                layered=True)
    for _ in range(200):
        step(c)
    assert np.all(c[:, 0] == 0.0) and np.all(c[:, 2] == 0.0)
    np.testing.assert_allclose(c.sum(axis=(2, 3)), mass0, rtol=1e-12, atol=0.0)


def test_layered_source_sink_equals_separate_patches():
    F, ny, nx = PLANE
    rng = np.random.default_rng(5)
    conc = _layers(1)
    src = rng.random((F, K * ny * nx)) * (rng.random((F, K * ny * nx)) < 0.2)
    up = rng.random((F, K * ny * nx)) * 1e-3 * (rng.random((F, K * ny * nx)) < 0.2)
    perm = (rng.random(K * ny * nx) < 0.05).astype(np.float64)
    plasma = np.array([3.0, 1.0, 0.0])
    kex = np.array([1e-3, 2e-3, 0.0])
    whole = conc.copy()
    ss = SS.make_source_sink_stepper(whole.shape, H, 360.0, kex, decay_per_s=DECAY)
    mass = ss(whole, src.copy(), up.copy(), perm, plasma, np.zeros((3, F)))
    ss2 = SS.make_source_sink_stepper(PLANE, H, 360.0, kex, decay_per_s=DECAY)
    n = ny * nx
    total = np.zeros((3, F))
    for k in range(K):
        part = np.ascontiguousarray(conc[:, k])
        total += ss2(part, np.ascontiguousarray(src[:, k * n:(k + 1) * n]),
                     np.ascontiguousarray(up[:, k * n:(k + 1) * n]), perm[k * n:(k + 1) * n],
                     plasma, np.zeros((3, F)))
        assert np.array_equal(whole[:, k], part)
    np.testing.assert_allclose(mass, total, rtol=1e-12, atol=1e-300)


def test_layered_needs_a_four_dimensional_shape():
    with pytest.raises(ValueError, match="layered"):
        DI.make_implicit_stepper(PLANE, H, 360.0, D, DECAY, layered=True)
