"""Covariate draws and Latin hypercube points from the counter-based RNG.

Every number is a pure function of the batch's root seed, so any run of a
batch can be re-created alone. Keys into :mod:`abm.kernels.rng` (stream
:data:`~abm.kernels.streams.BATCH_COVARIATES`)::

    population member m, covariate at path p:   (root, BATCH_COVARIATES, 0, m, draw_id(p))
    LHS point i, parameter p, stratum order:    (root, BATCH_COVARIATES, 1, i, draw_id(p))
    LHS point i, parameter p, offset in stratum:(root, BATCH_COVARIATES, 2, i, draw_id(p))

``draw_id(p)`` is the CRC-32 of the path text, so adding, removing or
reordering covariates leaves the draws of the others unchanged.

Distributions (``u`` uniform on (0, 1), ``z`` standard normal, both from the
slot above):

============ ====================== =======================================
dist         arguments              value
============ ====================== =======================================
uniform      low, high              low + u (high - low)
loguniform   low, high              exp(ln low + u (ln high - ln low))
normal       mean, sd               mean + sd z
lognormal    median, sigma          median exp(sigma z);
             [, low, high]          with bounds: exp of the truncnormal of
                                    (ln median, sigma, ln low, ln high)
truncnormal  mean, sd, low, high    mean + sd Phi^-1(Phi(a) + u (Phi(b) - Phi(a))),
                                    a, b = (low - mean)/sd, (high - mean)/sd
beta         a, b [, low, high]     low + (high - low) I^-1_u(a, b)
choice       values [, weights]     values[k], k the first index with
                                    u < cumsum(weights)[k] / sum(weights)
============ ====================== =======================================

Integer parameters get the value rounded to the nearest integer.
"""

from __future__ import annotations

import math
import zlib
from statistics import NormalDist

import numpy as np

from abm.batch.config import BatchConfig, Covariate, SweepParam, param_kind
from abm.kernels import rng
from abm.kernels.streams import BATCH_COVARIATES

STEP_POPULATION = 0
STEP_LHS_ORDER = 1
STEP_LHS_OFFSET = 2

_STD = NormalDist()


def draw_id(path: str) -> int:
    """The RNG ``draw`` index of a parameter path (CRC-32 of its text)."""
    return zlib.crc32(path.encode("utf-8"))


def _uniforms(root: int, step: int, ids: np.ndarray, path: str) -> np.ndarray:
    return np.asarray(rng.uniform_array(np.int64(root), BATCH_COVARIATES, step,
                                        ids.astype(np.int64), draw_id(path)))


def _uniforms_open(root: int, step: int, ids: np.ndarray, path: str) -> np.ndarray:
    """Uniforms in (0, 1): the slot's base word as ``((W >> 12) + 1/2) 2**-52``."""
    out = np.empty(len(ids))
    for i, k in enumerate(ids):
        out[i] = rng.uniform_open(np.int64(root), BATCH_COVARIATES, step, int(k), draw_id(path))
    return out


def _normals(root: int, step: int, ids: np.ndarray, path: str) -> np.ndarray:
    return np.asarray(rng.normal_array(np.int64(root), BATCH_COVARIATES, step,
                                       ids.astype(np.int64), draw_id(path)))


def _cast(path: str, x):
    if isinstance(x, (float, np.floating)) and param_kind(path) == "int":
        return int(math.floor(float(x) + 0.5))
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, tuple):
        return list(x)
    return x


def _truncnormal(u, mean: float, sd: float, low: float, high: float) -> np.ndarray:
    """Inverse-CDF draws of a normal restricted to ``[low, high]`` from uniforms ``u``."""
    pa = _STD.cdf((low - mean) / sd) if low > -math.inf else 0.0
    pb = _STD.cdf((high - mean) / sd) if high < math.inf else 1.0
    x = np.array([mean + sd * _STD.inv_cdf(min(max(pa + ui * (pb - pa), 1e-300), 1 - 1e-16))
                  for ui in u])
    return np.clip(x, low, high)


def sample_covariate(cov: Covariate, root: int, members) -> list:
    """Values of ``cov`` for the population members ``members`` (ints)."""
    ids = np.asarray(list(members), dtype=np.int64)
    a = cov.args
    d = cov.dist
    if d == "normal":
        x = a["mean"] + a["sd"] * _normals(root, STEP_POPULATION, ids, cov.path)
    elif d == "lognormal" and a.get("low", 0.0) <= 0.0 and a.get("high", math.inf) == math.inf:
        x = a["median"] * np.exp(a["sigma"] * _normals(root, STEP_POPULATION, ids, cov.path))
    elif d == "lognormal" and a["sigma"] == 0:
        x = np.full(len(ids), float(a["median"]))
    else:
        u = _uniforms_open(root, STEP_POPULATION, ids, cov.path)
        if d == "uniform":
            x = a["low"] + u * (a["high"] - a["low"])
        elif d == "loguniform":
            lo, hi = math.log(a["low"]), math.log(a["high"])
            x = np.exp(lo + u * (hi - lo))
        elif d == "truncnormal":
            x = _truncnormal(u, a["mean"], a["sd"], a["low"], a["high"])
        elif d == "lognormal":   # with bounds
            lo = math.log(a["low"]) if a.get("low", 0.0) > 0 else -math.inf
            hi = math.log(a["high"]) if a.get("high", math.inf) < math.inf else math.inf
            x = np.exp(_truncnormal(u, math.log(a["median"]), a["sigma"], lo, hi))
        elif d == "beta":
            from scipy.special import betaincinv
            x = a["low"] + (a["high"] - a["low"]) * betaincinv(a["a"], a["b"], u)
        elif d == "choice":
            vals = a["values"]
            w = np.asarray(a["weights"] if a["weights"] is not None else [1.0] * len(vals))
            cum = np.cumsum(w) / w.sum()
            k = np.minimum(np.searchsorted(cum, u, side="right"), len(vals) - 1)
            return [_cast(cov.path, vals[int(j)]) for j in k]
        else:  # pragma: no cover - validated in config
            raise ValueError(f"unknown distribution {d!r}")
    return [_cast(cov.path, float(v)) for v in x]


def lhs_unit(root: int, n: int, path: str) -> np.ndarray:
    """One column of a Latin hypercube: ``n`` points in [0, 1), one per stratum.

    Point i lies in stratum ``rank_i`` (a random permutation of 0..n-1: the
    ranks of uniforms keyed by step 1) at offset ``u_i`` (step 2):
    ``x_i = (rank_i + u_i) / n``.
    """
    ids = np.arange(n, dtype=np.int64)
    keys = _uniforms(root, STEP_LHS_ORDER, ids, path)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(keys, kind="stable")] = ids
    return (rank + _uniforms(root, STEP_LHS_OFFSET, ids, path)) / n


def lhs_values(p: SweepParam, root: int, n: int) -> list:
    """The ``n`` LHS values of one swept parameter."""
    x = lhs_unit(root, n, p.path)
    if p.values is not None:
        k = np.minimum((x * len(p.values)).astype(np.int64), len(p.values) - 1)
        return [_cast(p.path, p.values[int(j)]) for j in k]
    if p.scale == "log":
        lo, hi = math.log(p.low), math.log(p.high)
        v = np.exp(lo + x * (hi - lo))
    else:
        v = p.low + x * (p.high - p.low)
    return [_cast(p.path, float(y)) for y in v]


def sweep_points(batch: BatchConfig) -> list[dict]:
    """Parameter values of each sweep point (``[{}]`` without a sweep)."""
    import itertools
    s = batch.sweep
    if s is None:
        return [{}]
    if s.method == "grid":
        combos = itertools.product(*[p.values for p in s.params])
        return [{p.path: _cast(p.path, v) for p, v in zip(s.params, c)} for c in combos]
    if s.method == "list":
        return [{p.path: _cast(p.path, p.values[i]) for p in s.params}
                for i in range(len(s.params[0].values))]
    cols = {p.path: lhs_values(p, batch.root_seed, s.samples) for p in s.params}
    return [{path: vals[i] for path, vals in cols.items()} for i in range(s.samples)]


def population_members(batch: BatchConfig, members=None) -> dict[int, dict]:
    """Covariate values of population members (all, or those in ``members``)."""
    pop = batch.population
    ids = list(range(batch.n_members)) if members is None else sorted(set(members))
    if pop is None:
        return {m: {} for m in ids}
    out: dict[int, dict] = {m: {} for m in ids}
    for cov in pop.covariates:
        for m, v in zip(ids, sample_covariate(cov, batch.root_seed, ids)):
            out[m][cov.path] = v
    return out


__all__ = ["draw_id", "sample_covariate", "lhs_unit", "lhs_values", "sweep_points",
           "population_members"]
