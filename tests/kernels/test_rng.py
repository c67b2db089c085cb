"""Tests of the counter-based generator against truth.

* distribution: KS tests (uniform, normal) and chi-square goodness of fit
  (Poisson, binomial) against scipy, plus mean / variance checks;
* independence: correlations between neighbouring counters and a bit-level
  avalanche (strict avalanche criterion) check of the hash;
* determinism: 1 vs 2 threads in a ``prange`` kernel, JIT on vs off
  (subprocess with ``NUMBA_DISABLE_JIT=1``), repeated calls;
* the stream registry.

All samples use fixed seeds, so each test is deterministic; the thresholds
(p > 0.001, |r| < 0.01) are ones a broken generator fails.

The compiled helpers here are built with ``cache=False``: Numba's on-disk
cache does not notice when a *called* function in another file changes, so a
cached helper could keep running an old ``rng`` after an edit.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from scipy import stats

from abm.kernels import rng, streams
from abm.kernels.jit import jit, pjit

N_KS = 200_000
N_CHI = 100_000
N_CORR = 100_000
P_MIN = 1e-3


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@jit(cache=False)
def _uniform_over_steps(seed, stream, cell, steps, draw):
    out = np.empty(steps.shape[0], dtype=np.float64)
    for i in range(steps.shape[0]):
        out[i] = rng.uniform(seed, stream, steps[i], cell, draw)
    return out


@jit(cache=False)
def _uniform_over_draws(seed, stream, step, cell, draws):
    out = np.empty(draws.shape[0], dtype=np.float64)
    for i in range(draws.shape[0]):
        out[i] = rng.uniform(seed, stream, step, cell, draws[i])
    return out


@jit(cache=False)
def _avalanche_counts(keys, which, bit, out):
    """For each row of ``keys`` flip ``bit`` of key ``which``; count the output
    bits that change, per output bit position (``out[64]``)."""
    one = np.int64(1)
    for i in range(keys.shape[0]):
        k0, k1, k2, k3, k4 = keys[i, 0], keys[i, 1], keys[i, 2], keys[i, 3], keys[i, 4]
        h1 = rng.bits(k0, k1, k2, k3, k4)
        f = one << np.int64(bit)
        if which == 0:
            k0 ^= f
        elif which == 1:
            k1 ^= f
        elif which == 2:
            k2 ^= f
        elif which == 3:
            k3 ^= f
        else:
            k4 ^= f
        d = h1 ^ rng.bits(k0, k1, k2, k3, k4)
        for b in range(64):
            if (d >> np.uint64(b)) & np.uint64(1):
                out[b] += 1


@pjit(cache=False)
def _fill_parallel(seed, n, u, z, k, b):
    for i in numba.prange(n):
        u[i] = rng.uniform(seed, 7, 3, i, 0)
        z[i] = rng.normal(seed, 7, 3, i, 1)
        k[i] = rng.poisson((i % 64) * 0.75, seed, 7, 3, i, 2)
        b[i] = rng.binomial(10 + i % 200, 0.37, seed, 7, 3, i, 3)


def _merged_chisquare(samples, lo, hi, pmf, cdf, sf):
    """Chi-square GOF over bins ``<=lo, lo+1, ..., hi-1, >=hi``, adjacent
    bins merged (left to right) until each expected count is >= 5."""
    n = samples.size
    ks = np.arange(lo, hi + 1)
    probs = pmf(ks).astype(float)
    probs[0] = cdf(lo)
    probs[-1] = sf(hi - 1)
    expected = n * probs / probs.sum()
    observed = np.bincount(np.clip(samples, lo, hi) - lo, minlength=ks.size).astype(float)
    obs_m, exp_m = [], []
    acc_o = acc_e = 0.0
    for o, e in zip(observed, expected):
        acc_o += o
        acc_e += e
        if acc_e >= 5.0:
            obs_m.append(acc_o)
            exp_m.append(acc_e)
            acc_o = acc_e = 0.0
    if acc_e > 0.0 or acc_o > 0.0:
        obs_m[-1] += acc_o
        exp_m[-1] += acc_e
    assert len(obs_m) >= 2
    return stats.chisquare(obs_m, exp_m)


# --------------------------------------------------------------------------
# distributions
# --------------------------------------------------------------------------


def test_uniform_ks_across_cells_and_steps():
    cells = np.arange(N_KS, dtype=np.int64)
    u = rng.uniform_array(20240601, streams.CART_KILL, 17, cells, 0)
    assert u.min() >= 0.0 and u.max() < 1.0
    p_cells = stats.kstest(u, "uniform").pvalue

    steps = np.arange(N_KS, dtype=np.int64)
    v = _uniform_over_steps(987654321, streams.CART_MOVE, 42, steps, 3)
    p_steps = stats.kstest(v, "uniform").pvalue

    w = _uniform_over_draws(5, streams.TUMOUR_DIVIDE, 9, 11, steps)
    p_draws = stats.kstest(w, "uniform").pvalue
    print(f"KS uniform p: cells {p_cells:.3g} steps {p_steps:.3g} draws {p_draws:.3g}")
    assert p_cells > P_MIN and p_steps > P_MIN and p_draws > P_MIN


def test_uniform_open_is_open_and_uniform():
    cells = np.arange(N_KS, dtype=np.int64)
    u = np.array([rng.uniform_open(3, 1, 2, c, 4) for c in cells[:20_000]])
    assert u.min() > 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > P_MIN


def test_normal_ks_and_moments():
    cells = np.arange(N_KS, dtype=np.int64)
    z = rng.normal_array(77, streams.PATIENT_EFFECTS, 0, cells, 5)
    p = stats.kstest(z, "norm").pvalue
    print(f"KS normal p: {p:.3g}, mean {z.mean():.4f}, var {z.var():.4f}")
    assert p > P_MIN
    se = 1.0 / math.sqrt(z.size)
    assert abs(z.mean()) < 5 * se
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2.0) * se


@pytest.mark.parametrize("lam", [0.5, 3.0, 9.9, 10.0, 40.0, 1000.0])
def test_poisson_chisquare_and_moments(lam):
    cells = np.arange(N_CHI, dtype=np.int64)
    k = rng.poisson_array(lam, 11, streams.CART_DIVIDE, int(lam * 10), cells, 2)
    dist = stats.poisson(lam)
    lo = int(dist.ppf(1e-9))
    hi = int(dist.ppf(1 - 1e-9)) + 1
    res = _merged_chisquare(k, lo, hi, dist.pmf, dist.cdf, dist.sf)
    m, v = k.mean(), k.var()
    print(f"poisson lam={lam}: chi2 p {res.pvalue:.3g} mean {m:.4f} var {v:.4f}")
    assert res.pvalue > P_MIN
    n = k.size
    assert abs(m - lam) < 5 * math.sqrt(lam / n)
    # var(s^2) ~ (mu4 - sigma^4) / n, mu4 = lam (1 + 3 lam)
    assert abs(v - lam) < 5 * math.sqrt((lam + 2 * lam * lam) / n)


@pytest.mark.parametrize("n,p", [(5, 0.3), (40, 0.5), (1000, 0.02), (1000, 0.7)])
def test_binomial_chisquare_and_moments(n, p):
    cells = np.arange(N_CHI, dtype=np.int64)
    k = rng.binomial_array(n, p, 13, streams.TUMOUR_LYSIS, n, cells, 1)
    assert k.min() >= 0 and k.max() <= n
    dist = stats.binom(n, p)
    lo = max(0, int(dist.ppf(1e-9)))
    hi = min(n, int(dist.ppf(1 - 1e-9)) + 1)
    res = _merged_chisquare(k, lo, hi, dist.pmf, dist.cdf, dist.sf)
    mean, var = n * p, n * p * (1 - p)
    m, v = k.mean(), k.var()
    print(f"binomial n={n} p={p}: chi2 p {res.pvalue:.3g} mean {m:.4f} var {v:.4f}")
    assert res.pvalue > P_MIN
    size = k.size
    assert abs(m - mean) < 5 * math.sqrt(var / size)
    mu4 = var * (1 + 3 * (n - 2) * p * (1 - p))
    assert abs(v - var) < 5 * math.sqrt((mu4 - var * var) / size)


def test_poisson_binomial_edge_cases():
    assert rng.poisson(0.0, 1, 2, 3, 4, 5) == 0
    assert rng.poisson(-2.0, 1, 2, 3, 4, 5) == 0
    assert rng.binomial(0, 0.5, 1, 2, 3, 4, 5) == 0
    assert rng.binomial(-3, 0.5, 1, 2, 3, 4, 5) == 0
    assert rng.binomial(17, 0.0, 1, 2, 3, 4, 5) == 0
    assert rng.binomial(17, 1.0, 1, 2, 3, 4, 5) == 17
    assert rng.binomial(17, 1.5, 1, 2, 3, 4, 5) == 17
    with pytest.raises(ValueError):
        rng.poisson(math.nan, 1, 2, 3, 4, 5)
    with pytest.raises(ValueError):
        rng.poisson(math.inf, 1, 2, 3, 4, 5)
    with pytest.raises(ValueError):
        rng.binomial(10, math.nan, 1, 2, 3, 4, 5)
    # symmetry: p > 1/2 is n minus a draw with 1 - p on the same counters
    for c in range(50):
        assert rng.binomial(300, 0.75, 9, 1, 1, c, 0) == 300 - rng.binomial(300, 0.25, 9, 1, 1, c, 0)
        assert rng.binomial(12, 0.9, 9, 1, 1, c, 0) == 12 - rng.binomial(12, 1.0 - 0.9, 9, 1, 1, c, 0)


def test_bernoulli_rate_frequency_and_edges():
    rate, dt = 0.05, 4.0  # P = 1 - exp(-0.2)
    hits = sum(rng.bernoulli_rate(rate, dt, 31, streams.CART_DEATH, 5, c, 0) for c in range(50_000))
    res = stats.binomtest(hits, 50_000, 1 - math.exp(-rate * dt))
    assert res.pvalue > P_MIN
    # the rule is exactly "uniform of the same slot < 1 - exp(-rate dt)"
    for c in range(200):
        u = rng.uniform(31, streams.CART_DEATH, 5, c, 0)
        assert rng.bernoulli_rate(rate, dt, 31, streams.CART_DEATH, 5, c, 0) == (u < -math.expm1(-rate * dt))
    assert not any(rng.bernoulli_rate(0.0, dt, 1, 2, 3, c, 0) for c in range(100))
    assert not any(rng.bernoulli_rate(-1.0, dt, 1, 2, 3, c, 0) for c in range(100))
    assert all(rng.bernoulli_rate(math.inf, dt, 1, 2, 3, c, 0) for c in range(100))


# --------------------------------------------------------------------------
# independence
# --------------------------------------------------------------------------


def test_neighbouring_counters_uncorrelated():
    cells = np.arange(N_CORR, dtype=np.int64)
    seed, s, t, d = 424242, streams.CART_ENGAGE, 1000, 2
    base = rng.uniform_array(seed, s, t, cells, d)
    pairs = {
        "stream s+1": rng.uniform_array(seed, s + 1, t, cells, d),
        "cell i+1": rng.uniform_array(seed, s, t, cells + 1, d),
        "step t+1": rng.uniform_array(seed, s, t + 1, cells, d),
        "draw d+1": rng.uniform_array(seed, s, t, cells, d + 1),
        "seed+1": rng.uniform_array(seed + 1, s, t, cells, d),
    }
    steps = np.arange(N_CORR + 1, dtype=np.int64)
    along_steps = _uniform_over_steps(seed, s, 5, steps, d)
    along_draws = _uniform_over_draws(seed, s, t, 5, steps)
    rs = {name: np.corrcoef(base, other)[0, 1] for name, other in pairs.items()}
    rs["steps t,t+1 (one cell)"] = np.corrcoef(along_steps[:-1], along_steps[1:])[0, 1]
    rs["draws d,d+1 (one cell)"] = np.corrcoef(along_draws[:-1], along_draws[1:])[0, 1]
    z = rng.normal_array(seed, s, t, cells, d)
    rs["normal vs uniform same slot"] = np.corrcoef(base, z)[0, 1]
    rs["normal draw d+1"] = np.corrcoef(z, rng.normal_array(seed, s, t, cells, d + 1))[0, 1]
    print("correlations:", {k: round(v, 5) for k, v in rs.items()})
    for name, r in rs.items():
        assert abs(r) < 0.01, (name, r)


def test_avalanche():
    """Flipping any one bit of any key flips each output bit with p ~ 1/2."""
    n = 4000
    keys = np.random.default_rng(12345).integers(0, 2**63 - 1, size=(n, 5), dtype=np.int64)
    worst_mean = 0.0
    worst_bit = 0.0
    total = 0.0
    for which in range(5):
        for bit in range(63):
            out = np.zeros(64, dtype=np.int64)
            _avalanche_counts(keys, which, bit, out)
            mean_flips = out.sum() / n
            total += mean_flips
            worst_mean = max(worst_mean, abs(mean_flips - 32.0))
            worst_bit = max(worst_bit, np.abs(out / n - 0.5).max())
    avg = total / (5 * 63)
    print(f"avalanche: mean flips {avg:.3f}, worst |mean-32| {worst_mean:.3f}, "
          f"worst per-bit |p-1/2| {worst_bit:.4f}")
    assert abs(avg - 32.0) < 0.1
    assert worst_mean < 1.0          # sd of one mean ~0.09
    assert worst_bit < 0.06          # sd of one proportion ~0.008


# --------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------


def test_pure_function_of_counters():
    a = [rng.bits(1, 2, 3, c, 4) for c in range(100)]
    b = [rng.bits(1, 2, 3, c, 4) for c in reversed(range(100))][::-1]
    assert a == b
    assert len(set(int(x) for x in a)) == 100
    # a uint64 array of ids gives the same numbers as int64
    cells = np.arange(1000)
    assert np.array_equal(rng.uniform_array(8, 1, 2, cells, 0),
                          rng.uniform_array(8, 1, 2, cells.astype(np.uint64), 0))
    # the largest seed is accepted and differs from its neighbour
    big = 2**63 - 1
    assert rng.uniform(big, 0, 0, 0, 0) != rng.uniform(big - 1, 0, 0, 0, 0)


def test_same_bits_for_one_and_two_threads():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    n = 100_000
    before = numba.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            u, z = np.empty(n), np.empty(n)
            k, b = np.empty(n, np.int64), np.empty(n, np.int64)
            _fill_parallel(99, n, u, z, k, b)
            results.append((u, z, k, b))
    finally:
        numba.set_num_threads(before)
    (u1, z1, k1, b1), (u2, z2, k2, b2) = results
    assert np.array_equal(u1.view(np.uint64), u2.view(np.uint64))
    assert np.array_equal(z1.view(np.uint64), z2.view(np.uint64))
    assert np.array_equal(k1, k2)
    assert np.array_equal(b1, b2)
    # and the same as the serial array helpers
    cells = np.arange(n, dtype=np.int64)
    assert np.array_equal(u1.view(np.uint64), rng.uniform_array(99, 7, 3, cells, 0).view(np.uint64))
    assert np.array_equal(z1.view(np.uint64), rng.normal_array(99, 7, 3, cells, 1).view(np.uint64))


# Source run both in this process (JIT on) and in a subprocess with the JIT off.
_FIXED_DRAWS_SRC = r'''
import json
import numpy as np
from abm.kernels import rng

def fixed_draws():
    out = []
    for c in range(12):
        seed, stream, step = 2**63 - 1 - c * 977, 3 + c % 4, 10**9 + c
        out.append(int(rng.bits(seed, stream, step, c, 0)))
        out.append(rng.uniform(seed, stream, step, c, 1).hex())
        out.append(rng.uniform_open(seed, stream, step, c, 2).hex())
        out.append(rng.normal(seed, stream, step, c, 3).hex())
        out.append(bool(rng.bernoulli_rate(0.01 * (c + 1), 6.0, seed, stream, step, c, 4)))
        for lam in (0.3, 4.0, 9.99, 10.0, 55.5, 1e4, 3.3e6):
            out.append(int(rng.poisson(lam, seed, stream, step, c, 5)))
        for n, p in ((7, 0.2), (50, 0.9), (400, 0.02), (2000, 0.5), (100000, 0.001),
                     (100000, 0.37), (10**9, 0.999)):
            out.append(int(rng.binomial(n, p, seed, stream, step, c, 6)))
    cells = np.arange(5, 15, dtype=np.int64)
    out += [float(x).hex() for x in rng.uniform_array(1, 2, 3, cells, 4)]
    out += [float(x).hex() for x in rng.normal_array(1, 2, 3, cells, 4)]
    out += [int(x) for x in rng.poisson_array(25.0, 1, 2, 3, cells, 4)]
    out += [int(x) for x in rng.binomial_array(60, 0.4, 1, 2, 3, cells, 4)]
    return out
'''


def test_jit_off_gives_same_bits(root):
    namespace: dict = {}
    exec(_FIXED_DRAWS_SRC, namespace)
    jit_on = namespace["fixed_draws"]()
    assert len(jit_on) > 250

    env = dict(os.environ, NUMBA_DISABLE_JIT="1",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    code = (_FIXED_DRAWS_SRC
            + "\nfrom abm.kernels.jit import JIT_DISABLED\nassert JIT_DISABLED\n"
            + "print(json.dumps(fixed_draws()))\n")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env, cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    jit_off = json.loads(proc.stdout.strip().splitlines()[-1])
    mismatches = [(i, a, b) for i, (a, b) in enumerate(zip(jit_on, jit_off)) if a != b]
    assert len(jit_off) == len(jit_on)
    assert not mismatches, mismatches[:10]


# --------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------

_INITIAL_STREAMS = [
    "VESSEL_LAYOUT", "TUMOUR_INIT", "TUMOUR_ANTIGEN", "TUMOUR_DIVIDE", "TUMOUR_DEATH",
    "TUMOUR_LYSIS", "CART_ENTRY", "CART_ENGAGE", "CART_KILL", "CART_DIVIDE", "CART_DEATH",
    "CART_MOVE", "CART_PHENOTYPE", "CART_EGRESS", "MYELOID_INIT", "MYELOID_RECRUIT",
    "MYELOID_DEATH", "MYELOID_MOVE", "ENDOTHELIAL", "COLOUR_ORDER", "MOVE_PRIORITY",
    "PATIENT_EFFECTS", "CLINICIAN", "ICE_SCORE", "SEIZURE", "INFUSION_REACTION",
    "BATCH_COVARIATES",
]


def test_registry_ids_unique_and_stable():
    ids = list(streams.STREAMS.values())
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) and i >= 0 for i in ids)
    for name, i in streams.STREAMS.items():
        assert getattr(streams, name) == i
        assert streams.stream_id(name) == i
    # ids are never renumbered: the initial ones keep their positions
    for expected, name in enumerate(_INITIAL_STREAMS):
        assert streams.STREAMS[name] == expected


def test_stream_id_unknown_lists_names():
    with pytest.raises(KeyError) as info:
        streams.stream_id("CART_TELEPORT")
    msg = str(info.value)
    assert "CART_TELEPORT" in msg
    for name in _INITIAL_STREAMS:
        assert name in msg
