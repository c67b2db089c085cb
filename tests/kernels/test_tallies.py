"""The compiled tallies equal, bit for bit, the NumPy expressions they replace."""

from __future__ import annotations

import numpy as np

from abm import cells as C
from abm.kernels import tallies as KY
from abm.kernels.matrix_exp import expm_small


def test_pairwise_mean_is_numpys_to_the_bit():
    rng = np.random.default_rng(1)
    # below, at and above the 8-accumulator block (128) and several halvings above it
    for n in [1, 2, 7, 8, 9, 127, 128, 129, 255, 256, 1000, 4099, 70001]:
        a = rng.standard_normal(n) * np.exp(rng.uniform(-20, 20, n))
        assert KY.mean_of(a, n) == a.mean(), n
        assert 0.0 + KY.pairwise_sum(a, 0, n) == a.sum(), n
    assert KY.mean_of(np.zeros(3), 0) == 0.0


def _table(rng, n):
    kind = rng.integers(-1, 4, n).astype(np.int8)
    ph = rng.integers(0, 4, n).astype(np.int8)
    return kind, ph


def test_counts_and_record_tallies_match_numpy():
    rng = np.random.default_rng(2)
    for n in [0, 1, 50, 3001]:
        kind, ph = _table(rng, n)
        act, gly, oxi, store = (rng.uniform(0, 1, n) for _ in range(4))
        antigen = rng.uniform(-1, 1, n)
        target = rng.integers(-1, 5, n).astype(np.int64)
        cart, mye, endo = kind == C.CART, kind == C.MYELOID, kind == C.ENDOTHELIAL
        alive = (kind == C.TUMOUR) & (ph == C.TUMOUR_ALIVE)
        assert KY.patch_counts(kind, ph, antigen, n) == (
            alive.sum(), (alive & (antigen > 0)).sum(), cart.sum(),
            (cart & (ph == C.CART_EXHAUSTED)).sum())
        assert KY.kind_counts(kind, n) == tuple(int((kind == k).sum()) for k in
                                                (C.TUMOUR, C.CART, C.MYELOID, C.ENDOTHELIAL))
        site = rng.integers(0, 3 * 400, n).astype(np.int64)
        per_patch = np.full(3, 99, dtype=np.int64)
        KY.cart_per_patch(kind, site, n, 400, per_patch)
        np.testing.assert_array_equal(per_patch, np.bincount(site[cart] // 400, minlength=3))
        counts = np.zeros(KY.N_TALLIES, dtype=np.int64)
        means = np.zeros(KY.N_MEANS)
        KY.record_tallies(kind, ph, act, target, gly, oxi, store, n, counts, means,
                          np.zeros((KY.N_MEANS, n + 1)))

        def mean(col, mask):
            return col[mask].mean() if mask.any() else 0.0

        assert counts[KY.T_CART_NAIVE] == (cart & (ph == C.CART_NAIVE)).sum()
        assert counts[KY.T_CART_ENGAGED] == (cart & (target >= 0)).sum()
        assert counts[KY.T_TUMOUR_DYING] == ((kind == C.TUMOUR) & (ph == C.TUMOUR_DYING)).sum()
        assert counts[KY.T_MYELOID_ACTIVATED] == (mye & (act > 0.5)).sum()
        assert counts[KY.T_MYELOID_RECRUITED] == (mye & (ph == C.MYELOID_RECRUITED)).sum()
        assert means[KY.M_CART_ACTIVATION] == mean(act, cart)
        assert means[KY.M_CART_OXIDATIVE] == mean(oxi, cart)
        assert means[KY.M_MYELOID_ACTIVATION] == mean(act, mye)
        assert means[KY.M_ENDOTHELIAL_STORE] == mean(store, endo)


def test_gather_scatter_and_pools():
    rng = np.random.default_rng(3)
    occ = rng.integers(-1, 3, 500)
    sites = np.sort(rng.choice(500, 120, replace=False)).astype(np.int64)
    perm = rng.uniform(0, 2, 500)
    out = np.zeros(len(sites))
    m = KY.free_site_values(occ, sites, perm, -1, out)
    assert np.array_equal(out[:m], perm[sites][occ[sites] == -1])
    dst = np.zeros(500)
    rows = np.array([3, 1, 4], dtype=np.int64)
    site = rng.permutation(500).astype(np.int64)
    KY.scatter_rows(dst, rows, site, perm)
    ref = np.zeros(500)
    ref[site[rows]] = perm[rows]
    assert np.array_equal(dst, ref)
    for _ in range(200):
        a = rng.standard_normal((5, 5)) * rng.uniform(0, 3)
        x = rng.uniform(0, 1e9, 5) * (rng.uniform(0, 1, 5) > 0.3)
        got = np.empty(5)
        KY.advance_pools(a, 0.1 / 24, x, got)
        want = np.maximum((expm_small(a * (0.1 / 24)) * x).sum(axis=1), 0.0)
        assert got.tobytes() == want.tobytes()
