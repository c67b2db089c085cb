"""Small compiled passes that the patient-level model and the records need every step.

Each replaces a handful of NumPy calls whose per-call overhead, not their
arithmetic, dominated a step of the default patch (a NumPy call on ~10^4
rows costs a few microseconds before it does any work):

* :func:`patch_counts`: alive tumour cells, alive antigen-positive ones, CAR-T
  cells and exhausted CAR-T cells, in one pass over the table (the coupling
  reads them every step); :func:`kind_counts`: the cells of each kind;
  :func:`cart_per_patch`: the CAR-T cells of each patch (the re-lift's test);
* :func:`record_tallies`: every cell count and mean of one time-series record
  in one pass;
* :func:`advance_pools`: ``x <- max(exp(A dt) x, 0)`` for the whole patient's
  CAR-T pools (:mod:`abm.model.kinetics`);
* :func:`free_site_values`, :func:`scatter_rows`: the gathers and scatters of
  the vessel entry rule (:class:`abm.model.agents.Extravasation`).

Results are bit-identical to the NumPy expressions they replace: a mean is
NumPy's pairwise sum (:func:`pairwise_sum`, NumPy's own algorithm, applied to
the same values in the same order) divided by the count, and a row sum of a
small product is summed left to right from 0, as NumPy sums fewer than eight
numbers.
"""

from __future__ import annotations

import numpy as np

from abm.kernels.codes import (CART, CART_EFFECTOR, CART_EXHAUSTED, CART_MEMORY, CART_NAIVE,
                               ENDOTHELIAL, MYELOID, MYELOID_RECRUITED, MYELOID_RESIDENT, TUMOUR,
                               TUMOUR_ALIVE, TUMOUR_DYING)
from abm.kernels.jit import jit
from abm.kernels.matrix_exp import expm_small

#: NumPy's pairwise-summation block (``PW_BLOCKSIZE`` in its ``loops_utils.h``).
PW_BLOCKSIZE = 128


@jit
def _block_sum(a: np.ndarray, lo: int, n: int) -> float:
    """NumPy's pairwise sum of ``a[lo:lo + n]`` for ``n <= PW_BLOCKSIZE`` (one block)."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    stop = n - n % 8
    while i < stop:
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@jit
def _half(n: int) -> int:
    n2 = n // 2
    return n2 - n2 % 8


@jit
def pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:
    """Sum of ``a[lo:lo + n]`` exactly as NumPy's ``add.reduce`` of a contiguous float64 array
    sums it, without the leading 0: blocks of at most 128 with eight accumulators, and above
    that the sum of the two halves (the first a multiple of 8), each summed the same way.

    NumPy recurses; this walks the same tree with an explicit stack (Numba cannot
    cache a recursive function).
    """
    if n <= PW_BLOCKSIZE:
        return _block_sum(a, lo, n)
    los = np.empty(64, dtype=np.int64)
    ns = np.empty(64, dtype=np.int64)
    left = np.empty(64)
    stage = np.empty(64, dtype=np.int64)   # 0: nothing summed, 1: left half pending, 2: right
    top = 0
    los[0], ns[0], stage[0] = lo, n, 0
    ret = 0.0
    have = False
    while True:
        if have:   # a child's sum arrived for frame ``top``
            if stage[top] == 1:
                left[top] = ret
                stage[top] = 2
                n2 = _half(ns[top])
                top += 1
                los[top], ns[top], stage[top] = los[top - 1] + n2, ns[top - 1] - n2, 0
                have = False
            else:
                ret = left[top] + ret
                top -= 1
                if top < 0:
                    return ret
            continue
        m = ns[top]
        if m <= PW_BLOCKSIZE:
            ret = _block_sum(a, los[top], m)
            top -= 1
            if top < 0:
                return ret
            have = True
        else:
            stage[top] = 1
            n2 = _half(m)
            top += 1
            los[top], ns[top], stage[top] = los[top - 1], n2, 0


@jit
def mean_of(a: np.ndarray, n: int) -> float:
    """``a[:n].mean()`` as NumPy computes it (0 when ``n == 0``, where NumPy would warn)."""
    if n == 0:
        return 0.0
    return (0.0 + pairwise_sum(a, 0, n)) / n


@jit
def patch_counts(kind: np.ndarray, phenotype: np.ndarray, antigen: np.ndarray, n: int):
    """``(alive tumour, alive antigen-positive tumour, CAR-T, exhausted CAR-T)`` of rows ``0..n-1``.

    Branch-free (sums of comparisons): ~2.5x faster than branching on the kind.
    """
    tum = pos = cart = exh = 0
    for i in range(n):
        k = kind[i]
        ph = phenotype[i]
        alive = (k == TUMOUR) & (ph == TUMOUR_ALIVE)
        tum += alive
        pos += alive & (antigen[i] > 0.0)
        is_cart = k == CART
        cart += is_cart
        exh += is_cart & (ph == CART_EXHAUSTED)
    return tum, pos, cart, exh


@jit
def cart_per_patch(kind: np.ndarray, site: np.ndarray, n: int, patch_sites: int, out: np.ndarray) -> None:
    """``out[k]``: CAR-T cells among rows ``0..n-1`` in patch ``k`` (sites ``k * patch_sites`` on)."""
    out[:] = 0
    for i in range(n):
        if kind[i] == CART:
            out[site[i] // patch_sites] += 1


@jit
def kind_counts(kind: np.ndarray, n: int):
    """``(tumour, CAR-T, myeloid, endothelial)`` rows among rows ``0..n-1`` (one vectorised
    sum of comparisons per kind: ~4x faster than one branching pass)."""
    tum = cart = mye = endo = 0
    for i in range(n):
        tum += kind[i] == TUMOUR
    for i in range(n):
        cart += kind[i] == CART
    for i in range(n):
        mye += kind[i] == MYELOID
    for i in range(n):
        endo += kind[i] == ENDOTHELIAL
    return tum, cart, mye, endo


@jit
def free_site_values(occ: np.ndarray, sites: np.ndarray, values: np.ndarray, free: int,
                     out: np.ndarray) -> int:
    """``m``, with ``out[:m] = values[sites][occ[sites] == free]`` (in the order of ``sites``)."""
    m = 0
    for i in range(sites.shape[0]):
        v = sites[i]
        if occ[v] == free:
            out[m] = values[v]
            m += 1
    return m


@jit
def scatter_rows(dst: np.ndarray, rows: np.ndarray, site: np.ndarray, values: np.ndarray) -> None:
    """``dst[site[rows]] = values[rows]``."""
    for i in range(rows.shape[0]):
        r = rows[i]
        dst[site[r]] = values[r]


#: Slots of the integer tallies of :func:`record_tallies`.
(T_TUMOUR, T_CART, T_MYELOID, T_ENDOTHELIAL, T_CART_NAIVE, T_CART_EFFECTOR, T_CART_MEMORY,
 T_CART_EXHAUSTED, T_CART_ENGAGED, T_TUMOUR_DYING, T_MYELOID_RESIDENT, T_MYELOID_RECRUITED,
 T_MYELOID_ACTIVATED) = range(13)
N_TALLIES = 13
#: Slots of the means of :func:`record_tallies`.
(M_CART_ACTIVATION, M_CART_GLYCOLYTIC, M_CART_OXIDATIVE, M_MYELOID_ACTIVATION,
 M_ENDOTHELIAL_ACTIVATION, M_ENDOTHELIAL_STORE) = range(6)
N_MEANS = 6


@jit
def record_tallies(kind: np.ndarray, phenotype: np.ndarray, activation: np.ndarray,
                   target: np.ndarray, glycolytic: np.ndarray, oxidative: np.ndarray,
                   store: np.ndarray, n: int, counts: np.ndarray, means: np.ndarray,
                   scratch: np.ndarray) -> None:
    """Counts (slots ``T_*``) and means (slots ``M_*``, 0 for no cells) of rows ``0..n-1``.

    ``scratch``: float64 ``(N_MEANS, >= n)``; each mean's values are gathered
    there in row order and summed as NumPy sums ``column[mask]``.
    """
    c_tum = c_cart = c_mye = c_endo = c_naive = c_eff = c_mem = c_exh = c_eng = 0
    c_dying = c_res = c_rec = c_act = 0
    for i in range(n):   # branch-free counts (vectorised)
        k = kind[i]
        ph = phenotype[i]
        is_tum = k == TUMOUR
        is_cart = k == CART
        is_mye = k == MYELOID
        c_tum += is_tum
        c_cart += is_cart
        c_mye += is_mye
        c_endo += k == ENDOTHELIAL
        c_naive += is_cart & (ph == CART_NAIVE)
        c_eff += is_cart & (ph == CART_EFFECTOR)
        c_mem += is_cart & (ph == CART_MEMORY)
        c_exh += is_cart & (ph == CART_EXHAUSTED)
        c_eng += is_cart & (target[i] >= 0)
        c_dying += is_tum & (ph == TUMOUR_DYING)
        c_res += is_mye & (ph == MYELOID_RESIDENT)
        c_rec += is_mye & (ph == MYELOID_RECRUITED)
        c_act += is_mye & (activation[i] > 0.5)
    counts[T_TUMOUR], counts[T_CART], counts[T_MYELOID], counts[T_ENDOTHELIAL] = c_tum, c_cart, c_mye, c_endo
    counts[T_CART_NAIVE], counts[T_CART_EFFECTOR], counts[T_CART_MEMORY] = c_naive, c_eff, c_mem
    counts[T_CART_EXHAUSTED], counts[T_CART_ENGAGED], counts[T_TUMOUR_DYING] = c_exh, c_eng, c_dying
    counts[T_MYELOID_RESIDENT], counts[T_MYELOID_RECRUITED] = c_res, c_rec
    counts[T_MYELOID_ACTIVATED] = c_act
    n_cart = n_mye = n_endo = 0
    for i in range(n):   # the values of each mean, in row order
        k = kind[i]
        if k == TUMOUR:
            continue
        if k == CART:
            scratch[M_CART_ACTIVATION, n_cart] = activation[i]
            scratch[M_CART_GLYCOLYTIC, n_cart] = glycolytic[i]
            scratch[M_CART_OXIDATIVE, n_cart] = oxidative[i]
            n_cart += 1
        elif k == MYELOID:
            scratch[M_MYELOID_ACTIVATION, n_mye] = activation[i]
            n_mye += 1
        elif k == ENDOTHELIAL:
            scratch[M_ENDOTHELIAL_ACTIVATION, n_endo] = activation[i]
            scratch[M_ENDOTHELIAL_STORE, n_endo] = store[i]
            n_endo += 1
    means[M_CART_ACTIVATION] = mean_of(scratch[M_CART_ACTIVATION], n_cart)
    means[M_CART_GLYCOLYTIC] = mean_of(scratch[M_CART_GLYCOLYTIC], n_cart)
    means[M_CART_OXIDATIVE] = mean_of(scratch[M_CART_OXIDATIVE], n_cart)
    means[M_MYELOID_ACTIVATION] = mean_of(scratch[M_MYELOID_ACTIVATION], n_mye)
    means[M_ENDOTHELIAL_ACTIVATION] = mean_of(scratch[M_ENDOTHELIAL_ACTIVATION], n_endo)
    means[M_ENDOTHELIAL_STORE] = mean_of(scratch[M_ENDOTHELIAL_STORE], n_endo)


@jit
def advance_pools(a: np.ndarray, dt: float, x: np.ndarray, out: np.ndarray) -> None:
    """``out = max(expm(a dt) x, 0)``, each row summed as NumPy sums ``(E * x).sum(axis=1)``
    for a handful of columns (left to right from 0), then ``np.maximum(., 0.0)``."""
    e = expm_small(a * dt)
    n = x.shape[0]
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += e[i, j] * x[j]
        out[i] = s if (s > 0.0 or s != s) else 0.0
