"""Matrix exponential of the small rate matrices of the well-mixed compartments.

The whole patient's CAR-T pools form a linear system of a handful of
compartments, advanced each step by ``expm(A dt)``. For matrices this small a
general-purpose routine spends its time in call overhead and BLAS threading;
:func:`expm_small` uses scaling and squaring with a Taylor series instead:
``A`` is scaled by ``2^-s`` until its infinity norm is at most 1/2, the series
is summed to degree 18 (truncation error below ``0.5^19 / 19! ~ 1.6e-23``
relative), and the result squared ``s`` times.
"""

from __future__ import annotations

import math

import numpy as np

from abm.kernels.jit import jit

#: Degree of the Taylor series after scaling.
TAYLOR_DEGREE = 18


@jit
def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` with plain loops (no BLAS call for a handful of rows)."""
    n, m, p = a.shape[0], a.shape[1], b.shape[1]
    out = np.zeros((n, p))
    for i in range(n):
        for k in range(m):
            aik = a[i, k]
            if aik != 0.0:
                for j in range(p):
                    out[i, j] += aik * b[k, j]
    return out


@jit
def expm_small(a: np.ndarray) -> np.ndarray:
    """``exp(a)`` of a small square matrix (float64), by scaling, Taylor series and squaring."""
    n = a.shape[0]
    norm = 0.0
    for i in range(n):
        row = 0.0
        for j in range(n):
            row += abs(a[i, j])
        norm = max(norm, row)
    s = 0
    if norm > 0.5:
        s = int(math.ceil(math.log2(norm / 0.5)))
    scale = 2.0 ** (-s)
    # plain loops rather than array expressions and np.eye: the same operations
    # element by element, and far less for Numba to compile
    x = np.zeros((n, n))
    result = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            x[i, j] = a[i, j] * scale
        result[i, i] = 1.0
    term = result.copy()
    for k in range(1, TAYLOR_DEGREE + 1):
        term = _matmul(term, x)
        for i in range(n):
            for j in range(n):
                term[i, j] = term[i, j] / k
                result[i, j] += term[i, j]
    for _ in range(s):
        result = _matmul(result, result)
    return result
