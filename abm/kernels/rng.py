"""Counter-based random numbers for Numba kernels.

Every random number is a pure function of five non-negative integer keys::

    (seed, stream, step, cell, draw)

* ``seed``: the run seed (``0 <= seed <= 2**63 - 1``).
* ``stream``: the rule's id from :mod:`abm.kernels.streams`.
* ``step``: the simulation step counter.
* ``cell``: the agent (or lattice site) id.
* ``draw``: which random decision of that rule for that cell in that step.

There is no hidden state, so results do not depend on thread count, on the
order in which cells are visited, or on whether a run was restarted from a
checkpoint; a checkpoint only needs the step counter.

Hash
----
The keys are chained through the SplitMix64 finalizer (Stafford's "Mix13",
a bijection of 64-bit words). Each key is first spread by an odd multiplier
and offset of its own (bijective mod 2**64), so neighbouring counters differ
in many bits before mixing::

    h0 = mix(seed   * M0 + A0)
    h1 = mix(h0 ^ (stream * M1 + A1))
    h2 = mix(h1 ^ (step   * M2 + A2))
    h3 = mix(h2 ^ (cell   * M3 + A3))
    W  = mix(h3 ^ (draw   * M4 + A4))          # the "base word" of the slot
    S_j = mix(W ^ (j * M5 + A5)), j = 0, 1, ...  # "sub-words" of the slot

All arithmetic is mod 2**64.

Counter consumption
-------------------
Each public function consumes exactly one *draw slot* -- one value of
``draw`` -- and nothing else, so a rule gives each of its random decisions
for a (cell, step) a distinct ``draw`` index and never has to know how many
uniforms a sampler used internally:

* :func:`bits`, :func:`uniform`, :func:`uniform_open`, :func:`bernoulli_rate`:
  the base word ``W``.
* :func:`normal`: sub-words ``S_0`` (radius) and ``S_1`` (angle).
* :func:`poisson`, :func:`binomial`: sub-words ``S_0, S_1, ...`` -- one per
  attempt for inversion, two per iteration (``S_2i``, ``S_2i+1``) for the
  PTRS / BTRS rejection loops. The sub-word index space is unbounded and
  private to the slot, so different ``draw`` values never share sub-draws.

Using two different functions on the same slot gives correlated numbers
(e.g. ``uniform(..., d)`` and ``bernoulli_rate(..., d)`` read the same word):
do not.

JIT off
-------
With ``NUMBA_DISABLE_JIT=1`` NumPy's uint64 scalars would warn on the
intended wrap-around, so the hash is defined twice: with ``np.uint64``
(compiled) and with Python ints masked to 64 bits (interpreted). The variant
is picked at import time from :data:`abm.kernels.jit.JIT_DISABLED`. The
floating-point parts use only ``math`` functions (which both Numba and
CPython take from the platform libm) and plain IEEE arithmetic, so both
paths return the same bits.
"""

from __future__ import annotations

import math

import numpy as np

from abm.kernels.jit import JIT_DISABLED, jit

# --------------------------------------------------------------------------
# constants
# --------------------------------------------------------------------------

_MASK = 0xFFFFFFFFFFFFFFFF

# SplitMix64 finalizer multipliers.
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB

# Per-key odd multipliers and offsets: seed, stream, step, cell, draw, sub.
_KEY_MUL = (
    0x9E3779B97F4A7C15,
    0xD1B54A32D192ED03,
    0xAEF17502108EF2D9,
    0xDB4F0B9175AE2165,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
)
_KEY_ADD = (
    0x243F6A8885A308D3,  # pi
    0x13198A2E03707344,
    0xA4093822299F31D0,
    0x082EFA98EC4E6C89,
    0x452821E638D01377,
    0xBE5466CF34E90C6C,
)

_TWO_M53 = 1.0 / 9007199254740992.0  # 2**-53
_TWO_M52 = 1.0 / 4503599627370496.0  # 2**-52
_TWO_PI = 2.0 * math.pi
_HALF_LN_2PI = 0.5 * math.log(2.0 * math.pi)

# log(k!) for k < _LF_TABLE_N; beyond, a Stirling series (as NumPy does).
_LF_TABLE_N = 126
_LOG_FACTORIAL = np.array([math.lgamma(k + 1.0) for k in range(_LF_TABLE_N)],
                          dtype=np.float64)

# Inversion searches stop (and start over with a fresh sub-word) past this k;
# reached only when floating-point rounding keeps the running CDF below u.
_INVERSION_KMAX = 1000

# --------------------------------------------------------------------------
# the hash: two bit-identical variants
# --------------------------------------------------------------------------

if JIT_DISABLED:

    def _mix(z):
        z = ((z ^ (z >> 30)) * _MIX1) & _MASK
        z = ((z ^ (z >> 27)) * _MIX2) & _MASK
        return z ^ (z >> 31)

    def _base(seed, stream, step, cell, draw):
        h = _mix((int(seed) * _KEY_MUL[0] + _KEY_ADD[0]) & _MASK)
        h = _mix(h ^ ((int(stream) * _KEY_MUL[1] + _KEY_ADD[1]) & _MASK))
        h = _mix(h ^ ((int(step) * _KEY_MUL[2] + _KEY_ADD[2]) & _MASK))
        h = _mix(h ^ ((int(cell) * _KEY_MUL[3] + _KEY_ADD[3]) & _MASK))
        return _mix(h ^ ((int(draw) * _KEY_MUL[4] + _KEY_ADD[4]) & _MASK))

    def _sub(word, j):
        return _mix(word ^ ((int(j) * _KEY_MUL[5] + _KEY_ADD[5]) & _MASK))

    def _top53(word):
        return word >> 11

    def _top52(word):
        return word >> 12

    def _as_u64(word):
        return np.uint64(word)

else:
    _U_MIX1 = np.uint64(_MIX1)
    _U_MIX2 = np.uint64(_MIX2)
    _U_M0, _U_M1, _U_M2, _U_M3, _U_M4, _U_M5 = (np.uint64(m) for m in _KEY_MUL)
    _U_A0, _U_A1, _U_A2, _U_A3, _U_A4, _U_A5 = (np.uint64(a) for a in _KEY_ADD)
    _U_11 = np.uint64(11)
    _U_12 = np.uint64(12)
    _U_27 = np.uint64(27)
    _U_30 = np.uint64(30)
    _U_31 = np.uint64(31)

    @jit
    def _mix(z):
        z = (z ^ (z >> _U_30)) * _U_MIX1
        z = (z ^ (z >> _U_27)) * _U_MIX2
        return z ^ (z >> _U_31)

    @jit
    def _base(seed, stream, step, cell, draw):
        h = _mix(np.uint64(seed) * _U_M0 + _U_A0)
        h = _mix(h ^ (np.uint64(stream) * _U_M1 + _U_A1))
        h = _mix(h ^ (np.uint64(step) * _U_M2 + _U_A2))
        h = _mix(h ^ (np.uint64(cell) * _U_M3 + _U_A3))
        return _mix(h ^ (np.uint64(draw) * _U_M4 + _U_A4))

    @jit
    def _sub(word, j):
        return _mix(word ^ (np.uint64(j) * _U_M5 + _U_A5))

    @jit
    def _top53(word):
        return np.int64(word >> _U_11)

    @jit
    def _top52(word):
        return np.int64(word >> _U_12)

    @jit
    def _as_u64(word):
        return word


@jit
def _unit(word):
    """Top 53 bits of ``word`` as a float in [0, 1) (exact)."""
    return _top53(word) * _TWO_M53


@jit
def _unit_open(word):
    """Top 52 bits of ``word`` as ``(k + 1/2) / 2**52``, a float in (0, 1)."""
    return (_top52(word) + 0.5) * _TWO_M52


# --------------------------------------------------------------------------
# public scalar API
# --------------------------------------------------------------------------


@jit
def bits(seed, stream, step, cell, draw):
    """64 random bits: the base word of the slot.

    Args:
        seed: run seed, ``0 <= seed <= 2**63 - 1``.
        stream: rule id from :mod:`abm.kernels.streams`.
        step: step counter (>= 0).
        cell: agent / site id (>= 0).
        draw: draw index within (stream, step, cell) (>= 0).

    Returns:
        uint64 ``W = H(seed, stream, step, cell, draw)`` (see module docstring).
    """
    return _as_u64(_base(seed, stream, step, cell, draw))


@jit
def uniform(seed, stream, step, cell, draw):
    """Uniform float in [0, 1) with 53 random bits: ``(W >> 11) * 2**-53``.

    Consumes the base word of slot ``draw``. Arguments as in :func:`bits`.
    """
    return _unit(_base(seed, stream, step, cell, draw))


@jit
def uniform_open(seed, stream, step, cell, draw):
    """Uniform float in (0, 1): ``((W >> 12) + 1/2) * 2**-52``; safe for ``log``.

    Consumes the base word of slot ``draw``. Arguments as in :func:`bits`.
    """
    return _unit_open(_base(seed, stream, step, cell, draw))


@jit
def normal(seed, stream, step, cell, draw):
    """Standard normal variate by Box-Muller.

    ``Z = sqrt(-2 ln U1) * cos(2 pi U2)`` with ``U1`` in (0, 1) from sub-word
    ``S_0`` and ``U2`` in [0, 1) from sub-word ``S_1`` of slot ``draw``.
    Arguments as in :func:`bits`.

    Returns:
        float64 ~ N(0, 1).
    """
    w = _base(seed, stream, step, cell, draw)
    u1 = _unit_open(_sub(w, 0))
    u2 = _unit(_sub(w, 1))
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)


@jit
def bernoulli_rate(rate_per_s, dt_s, seed, stream, step, cell, draw):
    """The per-step event rule: True with probability ``1 - exp(-rate * dt)``.

    The event happens if ``U < -expm1(-rate_per_s * dt_s)`` with ``U`` the
    :func:`uniform` of slot ``draw``. A rate or step <= 0 never fires; an
    infinite rate always fires.

    Args:
        rate_per_s: event rate (1/s).
        dt_s: step length (s).
        seed, stream, step, cell, draw: as in :func:`bits`.

    Returns:
        bool.
    """
    x = rate_per_s * dt_s
    if not (x > 0.0):
        return False
    prob = -math.expm1(-x)
    return _unit(_base(seed, stream, step, cell, draw)) < prob


@jit
def _log_factorial(k):
    """``log(k!)`` for a non-negative integral float or int ``k``.

    Table of ``math.lgamma(k + 1)`` for k < 126, else the Stirling series
    ``(k + 1/2) ln k - k + ln(2 pi)/2 + (1/12 - 1/(360 k^2)) / k``
    (absolute error < 1e-14 there).
    """
    if k < _LF_TABLE_N:
        return _LOG_FACTORIAL[int(k)]
    return ((k + 0.5) * math.log(k) - k + _HALF_LN_2PI
            + (1.0 / k) * (1.0 / 12.0 - 1.0 / (360.0 * k * k)))


@jit
def _poisson_inversion(lam, w):
    """Sequential-search inversion for ``lam < 10``; sub-word j per attempt."""
    p0 = math.exp(-lam)
    j = 0
    while True:
        u = _unit(_sub(w, j))
        j += 1
        k = 0
        p = p0
        cdf = p0
        while u >= cdf and k < _INVERSION_KMAX:
            k += 1
            p *= lam / k
            cdf += p
        if k < _INVERSION_KMAX:
            return k


@jit
def _poisson_ptrs(lam, w):
    """Hormann (1993) PTRS transformed rejection for ``lam >= 10``.

    Iteration i uses sub-words ``S_2i`` (U) and ``S_2i+1`` (V).
    """
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_invalpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2.0)
    j = 0
    while True:
        u = _unit(_sub(w, j)) - 0.5
        v = _unit_open(_sub(w, j + 1))
        j += 2
        us = 0.5 - abs(u)
        # Reject the thin tails first (also keeps us > 0 below).
        if us < 0.013 and v > us:
            continue
        kf = np.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return int(kf)
        if kf < 0.0:
            continue
        if (math.log(v) + log_invalpha - math.log(a / (us * us) + b)
                <= -lam + kf * loglam - _log_factorial(kf)):
            return int(kf)


@jit
def poisson(lam, seed, stream, step, cell, draw):
    """Poisson variate with mean ``lam`` (exact algorithms).

    * ``lam <= 0``: 0 (no sub-words consumed).
    * ``0 < lam < 10``: inversion by sequential search from 0, one uniform
      per attempt from sub-words ``S_0, S_1, ...`` (a new attempt only when
      rounding leaves the CDF below the uniform, practically never).
    * ``lam >= 10``: Hormann's PTRS transformed rejection, iteration i using
      sub-words ``S_2i`` and ``S_2i+1``.

    All sub-words belong to slot ``draw`` only.

    Args:
        lam: mean (finite; NaN or inf raise ValueError).
        seed, stream, step, cell, draw: as in :func:`bits`.

    Returns:
        int64 count.
    """
    if lam != lam or lam == math.inf:
        raise ValueError("poisson: lam must be finite")
    if lam <= 0.0:
        return 0
    w = _base(seed, stream, step, cell, draw)
    if lam < 10.0:
        return _poisson_inversion(lam, w)
    return _poisson_ptrs(lam, w)


@jit
def _binomial_inversion(n, p, w):
    """Sequential-search inversion for ``p <= 1/2`` and ``n p < 10``."""
    q_n = math.exp(n * math.log1p(-p))
    s = p / (1.0 - p)
    kmax = min(n, _INVERSION_KMAX)
    j = 0
    while True:
        u = _unit(_sub(w, j))
        j += 1
        k = 0
        pk = q_n
        cdf = q_n
        while u >= cdf and k < kmax:
            k += 1
            pk *= s * (n - k + 1) / k
            cdf += pk
        if u < cdf:
            return k


@jit
def _binomial_btrs(n, p, w):
    """Hormann (1993) BTRS transformed rejection for ``p <= 1/2``, ``n p >= 10``.

    Iteration i uses sub-words ``S_2i`` (U) and ``S_2i+1`` (V).
    """
    q = 1.0 - p
    spq = math.sqrt(n * p * q)
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = n * p + 0.5
    vr = 0.92 - 4.2 / b
    alpha = (2.83 + 5.1 / b) * spq
    lpq = math.log(p / q)
    m = np.floor((n + 1) * p)
    h = _log_factorial(m) + _log_factorial(n - m)
    j = 0
    while True:
        u = _unit(_sub(w, j)) - 0.5
        v = _unit_open(_sub(w, j + 1))
        j += 2
        us = 0.5 - abs(u)
        if us == 0.0:  # u = -1/2 maps to k = -inf: rejected
            continue
        kf = np.floor((2.0 * a / us + b) * u + c)
        if kf < 0.0 or kf > n:
            continue
        if us >= 0.07 and v <= vr:
            return int(kf)
        lv = math.log(v * alpha / (a / (us * us) + b))
        if lv <= h - _log_factorial(kf) - _log_factorial(n - kf) + (kf - m) * lpq:
            return int(kf)


@jit
def binomial(n, p, seed, stream, step, cell, draw):
    """Binomial variate: successes in ``n`` trials of probability ``p`` (exact).

    With ``p' = min(p, 1 - p)`` (the result is ``n - X`` when ``p > 1/2``):

    * ``n <= 0`` or ``p <= 0``: 0; ``p >= 1``: n (no sub-words consumed).
    * ``n p' < 10``: inversion by sequential search, one uniform per attempt
      from sub-words ``S_0, S_1, ...``.
    * ``n p' >= 10``: Hormann's BTRS, iteration i using sub-words ``S_2i``
      and ``S_2i+1``.

    Args:
        n: number of trials.
        p: success probability (NaN raises ValueError).
        seed, stream, step, cell, draw: as in :func:`bits`.

    Returns:
        int64 in [0, n].
    """
    if p != p:
        raise ValueError("binomial: p is NaN")
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return int(n)
    w = _base(seed, stream, step, cell, draw)
    flip = p > 0.5
    pp = 1.0 - p if flip else p
    if n * pp < 10.0:
        k = _binomial_inversion(n, pp, w)
    else:
        k = _binomial_btrs(n, pp, w)
    return int(n - k) if flip else int(k)


# --------------------------------------------------------------------------
# array conveniences (tests, analysis)
# --------------------------------------------------------------------------


@jit
def uniform_array(seed, stream, step, cells, draw):
    """:func:`uniform` for each id in ``cells`` (1-D int array) -> float64 array."""
    out = np.empty(cells.shape[0], dtype=np.float64)
    for i in range(cells.shape[0]):
        out[i] = uniform(seed, stream, step, cells[i], draw)
    return out


@jit
def normal_array(seed, stream, step, cells, draw):
    """:func:`normal` for each id in ``cells`` (1-D int array) -> float64 array."""
    out = np.empty(cells.shape[0], dtype=np.float64)
    for i in range(cells.shape[0]):
        out[i] = normal(seed, stream, step, cells[i], draw)
    return out


@jit
def poisson_array(lam, seed, stream, step, cells, draw):
    """:func:`poisson` with mean ``lam`` for each id in ``cells`` -> int64 array."""
    out = np.empty(cells.shape[0], dtype=np.int64)
    for i in range(cells.shape[0]):
        out[i] = poisson(lam, seed, stream, step, cells[i], draw)
    return out


@jit
def binomial_array(n, p, seed, stream, step, cells, draw):
    """:func:`binomial` (n, p) for each id in ``cells`` -> int64 array."""
    out = np.empty(cells.shape[0], dtype=np.int64)
    for i in range(cells.shape[0]):
        out[i] = binomial(n, p, seed, stream, step, cells[i], draw)
    return out


__all__ = [
    "bits", "uniform", "uniform_open", "normal", "poisson", "binomial",
    "bernoulli_rate", "uniform_array", "normal_array", "poisson_array",
    "binomial_array",
]
