"""Random field-phase inputs for the source-sink and fused field-step tests."""

from __future__ import annotations

import numpy as np


def field_exchange_inputs(shape, seed, density=0.05):
    """Concentrations, sparse sources and uptakes, vessel permeability, exchange, decay,
    blood levels and diffusivities for ``shape = (F, *grid)``.

    Returns ``(c, S, K, p, kex, k, cb, D)``; one species has no decay and the last
    none of the blood exchange, so both special cases are always covered.
    """
    rng = np.random.default_rng(seed)
    F = shape[0]
    n = int(np.prod(shape[1:]))
    c = rng.random(shape) * 100.0
    S = rng.random((F, n)) * (rng.random((F, n)) < density)
    K = rng.random((F, n)) * (rng.random((F, n)) < density) * 1e-3
    p = (1.0 + rng.random(n)) * (rng.random(n) < 0.03)
    kex = np.array([1e-3] * (F - 1) + [0.0])
    k = np.linspace(1e-4, 4e-4, F)
    k[1] = 0.0   # one species without decay
    cb = rng.random(F) * 5.0
    D = np.linspace(5.0, 40.0, F)
    return c, S, K, p, kex, k, cb, D
