"""History matching with Gaussian-process emulators (Craig 1997, Vernon 2010, Andrianakis 2015).

The engine of ``abm calibrate``, independent of the simulator: a simulator is
any callable that takes design points (an array of parameter values) and
returns one summary per target for each point, so the same code runs the
real model (:mod:`abm.studies.calibrate`) and a cheap synthetic function (the
tests).

In waves: a space-filling design (a Latin hypercube in wave 1, a maximin
subset of the not-ruled-out-yet region afterwards) is simulated; one
Gaussian-process emulator per target summary is fitted (linear mean plus a
Matern 5/2 covariance and a white-noise term, so the simulator's sampling
noise is learnt rather than interpolated); every point ``x`` then gets, per
target ``j``, the implausibility

    I_j(x) = |z_j - E[f_j(x)]| / sqrt(V_em,j(x) + V_pop,j(x) + V_obs,j + V_disc,j)

(``V_em`` the emulator's variance of the mean response, without the noise
term; ``V_pop`` the sampling variance of the simulated population summary that
common seeds make shared by every point, which the noise term cannot see;
``V_obs`` the observation's and ``V_disc`` the model discrepancy's
variance). A point is ruled out when the chosen measure of the ``I_j``
(their maximum, or the second or third largest) exceeds the cut-off under the
emulators of any wave; what is left is the NROY ("not ruled out yet")
region, sampled by rejection from a large set of candidates.

Parameters live in the unit cube for the emulators (:class:`Parameter` maps
a linear or log range to ``[0, 1]``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

#: Measures of the implausibilities of one point: the largest, second or third largest.
MEASURES = {"max": 1, "second_max": 2, "third_max": 3}
#: Candidates predicted at once (memory: ~ candidates x training points doubles).
CHUNK = 20_000


# ----------------------------------------------------------------------------
# parameters and targets
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """One calibrated parameter: a range, linear or log, optionally integer-valued."""

    name: str
    low: float
    high: float
    scale: str = "linear"    # "linear" | "log"
    integer: bool = False

    def __post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"{self.name}: low must be < high")
        if self.scale not in ("linear", "log"):
            raise ValueError(f"{self.name}: scale must be 'linear' or 'log'")
        if self.scale == "log" and not self.low > 0:
            raise ValueError(f"{self.name}: a log range needs low > 0")

    def from_unit(self, u) -> np.ndarray:
        """Values for unit-cube coordinates ``u`` (integers rounded)."""
        u = np.clip(np.asarray(u, float), 0.0, 1.0)
        if self.scale == "log":
            x = np.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            x = self.low + u * (self.high - self.low)
        return np.round(x) if self.integer else x

    def to_unit(self, x) -> np.ndarray:
        x = np.asarray(x, float)
        if self.scale == "log":
            return (np.log(x) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (x - self.low) / (self.high - self.low)


@dataclass(frozen=True)
class Target:
    """One observed summary.

    Attributes:
        name: label.
        observed: z, in the scale the summary is emulated on.
        obs_var: variance of the observation (e.g. p (1 - p) / n of a trial's rate).
        disc_var: model-discrepancy variance.
        rate_n: for a rate from ``rate_n`` simulated patients (common seeds):
            ``V_pop = m~ (1 - m~) / rate_n`` at the emulated rate ``m`` (``m~``
            pulled a little from 0 and 1: ``(rate_n m + 1) / (rate_n + 2)``);
            None: ``V_pop`` is the mean of the sampling variances the simulator
            reported for its points (0 when it reports none).
    """

    name: str
    observed: float
    obs_var: float
    disc_var: float
    rate_n: int | None = None


# ----------------------------------------------------------------------------
# the emulator
# ----------------------------------------------------------------------------


class Emulator:
    """A Gaussian-process emulator of one summary over the unit cube.

    A least-squares linear mean in the inputs (only a constant when there are
    fewer than ``d + 3`` points), and on its residuals, standardised, a
    scikit-learn :class:`~sklearn.gaussian_process.GaussianProcessRegressor`
    with kernel ``C Matern_5/2(anisotropic) + White``. :meth:`predict` returns
    the variance of the mean response (the white-noise term excluded: it is
    the simulator's noise around that mean, learnt from the data).
    """

    def __init__(self, *, seed: int = 0, restarts: int = 3):
        # scikit-learn takes a 32-bit seed; a calibration's seed (e.g. a date) times 1000 is larger
        self.seed = int(seed) % 2**32
        self.restarts = int(restarts)
        self.gp = None
        self.beta = None
        self.y_sd = 1.0
        self.noise_var = math.nan
        self.signal_var = math.nan
        self.lengthscales = None
        self.n = 0

    @staticmethod
    def _basis(u: np.ndarray, linear: bool) -> np.ndarray:
        ones = np.ones((u.shape[0], 1))
        return np.hstack([ones, u]) if linear else ones

    def fit(self, u, y) -> "Emulator":
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        u = np.atleast_2d(np.asarray(u, float))
        y = np.asarray(y, float)
        ok = np.isfinite(y)
        u, y = u[ok], y[ok]
        if y.size < 2:
            raise ValueError("an emulator needs at least 2 points with a finite summary")
        d = u.shape[1]
        self.n = y.size
        self.linear = y.size >= d + 3
        h = self._basis(u, self.linear)
        self.beta = np.linalg.lstsq(h, y, rcond=None)[0]
        resid = y - h @ self.beta
        sd = float(np.std(resid))
        self.y_sd = sd if sd > 1e-12 else max(1e-6, 1e-3 * (float(np.abs(y).max()) or 1.0))
        kernel = (ConstantKernel(1.0, (1e-3, 1e2))
                  * Matern(length_scale=np.full(d, 0.5), length_scale_bounds=(0.1, 30.0), nu=2.5)
                  + WhiteKernel(noise_level=0.1, noise_level_bounds=(1e-6, 2.0)))
        self.gp = GaussianProcessRegressor(kernel=kernel, normalize_y=False, alpha=1e-8,
                                           n_restarts_optimizer=self.restarts,
                                           random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.gp.fit(u, resid / self.y_sd)
        k = self.gp.kernel_
        self.noise_var = float(k.k2.noise_level) * self.y_sd ** 2
        self.signal_var = float(k.k1.k1.constant_value) * self.y_sd ** 2
        self.lengthscales = np.atleast_1d(np.asarray(k.k1.k2.length_scale, float))
        return self

    @property
    def noise_sd(self) -> float:
        return math.sqrt(self.noise_var)

    def predict(self, u) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, variance)`` of the mean response at the points ``u`` (unit cube)."""
        u = np.atleast_2d(np.asarray(u, float))
        means, vars_ = [], []
        noise = float(self.gp.kernel_.k2.noise_level)
        for a in range(0, u.shape[0], CHUNK):
            uu = u[a:a + CHUNK]
            m, s = self.gp.predict(uu, return_std=True)
            means.append(self._basis(uu, self.linear) @ self.beta + m * self.y_sd)
            vars_.append(np.maximum(s ** 2 - noise, 1e-10) * self.y_sd ** 2)
        return np.concatenate(means), np.concatenate(vars_)


# ----------------------------------------------------------------------------
# implausibility
# ----------------------------------------------------------------------------


def rate_variance(m, n: int) -> np.ndarray:
    """Sampling variance of a rate ``m`` over ``n`` patients: ``m~ (1 - m~) / n`` with ``m~``
    pulled a little from 0 and 1, ``(n m + 1) / (n + 2)`` (so a rate of 0 or 1 keeps some)."""
    mt = (n * np.clip(m, 0.0, 1.0) + 1.0) / (n + 2.0)
    return mt * (1.0 - mt) / n


def implausibility(mean, em_var, target: Target, pop_var=0.0) -> np.ndarray:
    """``|z - mean| / sqrt(em_var + pop_var + obs_var + disc_var)``, elementwise."""
    total = (np.asarray(em_var, float) + np.asarray(pop_var, float)
             + target.obs_var + target.disc_var)
    return np.abs(target.observed - np.asarray(mean, float)) / np.sqrt(np.maximum(total, 1e-300))


def combine(imp: np.ndarray, measure: str = "max") -> np.ndarray:
    """The chosen order statistic of the implausibilities ``imp (points, targets)``.

    NaN entries (a target without an emulator) are ignored; with fewer targets
    than the measure's rank the largest is used.
    """
    k = MEASURES[measure]
    imp = np.asarray(imp, float)
    if imp.ndim == 1:
        imp = imp[:, None]
    filled = np.where(np.isfinite(imp), imp, -np.inf)
    srt = -np.sort(-filled, axis=1)   # descending
    n_ok = np.isfinite(imp).sum(axis=1)
    rank = np.clip(np.minimum(k, n_ok) - 1, 0, None)
    out = srt[np.arange(srt.shape[0]), rank]
    return np.where(n_ok > 0, out, 0.0)


# ----------------------------------------------------------------------------
# designs
# ----------------------------------------------------------------------------


def lhs(n: int, d: int, rng: np.random.Generator, tries: int = 20) -> np.ndarray:
    """A Latin hypercube of ``n`` points in ``[0, 1]^d``: the best of ``tries`` by maximin distance."""
    best, best_d = None, -1.0
    for _ in range(max(1, tries)):
        cut = (np.argsort(rng.random((d, n)), axis=1).T + rng.random((n, d))) / n
        dist = _min_distance(cut)
        if dist > best_d:
            best, best_d = cut, dist
    return best


def _min_distance(u: np.ndarray) -> float:
    if len(u) < 2:
        return math.inf
    diff = u[:, None, :] - u[None, :, :]
    d2 = (diff ** 2).sum(-1)
    d2[np.diag_indices(len(u))] = np.inf
    return float(np.sqrt(d2.min()))


def maximin_subset(cands: np.ndarray, n: int, rng: np.random.Generator,
                   avoid: np.ndarray | None = None) -> np.ndarray:
    """``n`` of ``cands`` chosen greedily, each the farthest from those chosen (and ``avoid``)."""
    cands = np.asarray(cands, float)
    if len(cands) <= n:
        return cands.copy()
    if len(cands) > 5000:
        cands = cands[rng.choice(len(cands), 5000, replace=False)]
    dmin = np.full(len(cands), np.inf)
    if avoid is not None and len(avoid):
        for a in np.atleast_2d(avoid):
            dmin = np.minimum(dmin, ((cands - a) ** 2).sum(1))
        first = int(np.argmax(dmin))
    else:
        first = int(rng.integers(len(cands)))
    chosen = [first]
    dmin = np.minimum(dmin, ((cands - cands[first]) ** 2).sum(1))
    for _ in range(n - 1):
        i = int(np.argmax(dmin))
        chosen.append(i)
        dmin = np.minimum(dmin, ((cands - cands[i]) ** 2).sum(1))
    return cands[chosen]


# ----------------------------------------------------------------------------
# waves
# ----------------------------------------------------------------------------


@dataclass
class Wave:
    """One wave: its design (unit cube), the simulated summaries, the emulators fitted after it.

    Attributes:
        u: design points (n, d) in the unit cube.
        y: simulated summaries (n, targets), NaN where a point gave none.
        v: sampling variances the simulator reported (n, targets), or NaN.
        emulators: one per target (None where too few finite summaries).
        trained_on: how many points (all waves so far, inside the previous NROY) each used.
        box: (low, high) of the unit-cube box the candidates were drawn from
            when this wave's design was made.
        nroy_fraction: estimated fraction of the prior box not ruled out after this wave.
    """

    u: np.ndarray
    y: np.ndarray
    v: np.ndarray
    emulators: list = field(default_factory=list)
    pop_var: np.ndarray | None = None
    trained_on: int = 0
    nroy_fraction: float = math.nan
    box: tuple | None = None


@dataclass
class Settings:
    """How the history matching proceeds.

    Attributes:
        cutoff: rule out a point whose implausibility measure exceeds it (3: Pukelsheim's
            three-sigma rule, which holds for any unimodal distribution).
        measure: "max", "second_max" or "third_max" over the targets.
        candidates: points drawn per round when sampling the NROY region.
        seed: root of every random choice (designs, candidates, GP restarts).
    """

    cutoff: float = 3.0
    measure: str = "max"
    candidates: int = 100_000
    seed: int = 0


class HistoryMatching:
    """The state of a history matching: parameters, targets and the waves done so far.

    >>> hm = HistoryMatching(params, targets, Settings(seed=1))          # doctest: +SKIP
    >>> u = hm.design(20)                      # wave 1: a Latin hypercube (unit cube)
    >>> y, v = simulate(hm.values(u))          # (20, targets) summaries, variances or None
    >>> hm.add_wave(u, y, v)                   # fit the emulators
    >>> u2 = hm.design(20)                     # wave 2: inside the NROY region
    >>> samples, frac = hm.nroy_sample(1000)   # parameter values (1000, d), NROY fraction
    """

    def __init__(self, parameters: Sequence[Parameter], targets: Sequence[Target],
                 settings: Settings | None = None):
        self.parameters = list(parameters)
        self.targets = list(targets)
        self.settings = settings or Settings()
        if self.settings.measure not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)}")
        self.waves: list[Wave] = []
        self._nroy_cache: tuple | None = None

    @property
    def d(self) -> int:
        return len(self.parameters)

    def rng(self, purpose: int) -> np.random.Generator:
        """A generator keyed by (seed, wave index, purpose): reproducible choices."""
        return np.random.default_rng([int(self.settings.seed), len(self.waves), int(purpose)])

    def values(self, u) -> np.ndarray:
        """Parameter values (n, d) of unit-cube points."""
        u = np.atleast_2d(u)
        return np.column_stack([p.from_unit(u[:, i]) for i, p in enumerate(self.parameters)])

    def units(self, x) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, float))
        return np.column_stack([p.to_unit(x[:, i]) for i, p in enumerate(self.parameters)])

    # -- implausibility ----------------------------------------------------------
    def target_implausibility(self, wave: Wave, j: int, u) -> np.ndarray:
        """Implausibility of target ``j`` at ``u`` under ``wave``'s emulator (NaN: none)."""
        u = np.atleast_2d(u)
        t, em = self.targets[j], wave.emulators[j]
        if em is None:
            return np.full(u.shape[0], np.nan)
        m, var = em.predict(u)
        if t.rate_n:
            pv = rate_variance(m, t.rate_n)
        else:
            pv = wave.pop_var[j] if wave.pop_var is not None else 0.0
        return implausibility(m, var, t, pv)

    def wave_implausibility(self, wave: Wave, u) -> np.ndarray:
        """Per-target implausibility (n, targets) of ``u`` under ``wave``'s emulators (NaN: none)."""
        u = np.atleast_2d(u)
        return np.column_stack([self.target_implausibility(wave, j, u)
                                for j in range(len(self.targets))]) if self.targets else \
            np.zeros((u.shape[0], 0))

    def measure(self, u, waves: Sequence[Wave] | None = None) -> np.ndarray:
        """The implausibility measure of ``u``: the largest over ``waves`` (default all) of
        each wave's measure over the targets. A point is NROY when it is <= the cut-off."""
        u = np.atleast_2d(u)
        waves = self.waves if waves is None else waves
        out = np.zeros(u.shape[0])
        for w in waves:
            out = np.maximum(out, combine(self.wave_implausibility(w, u), self.settings.measure))
        return out

    def nroy_mask(self, u, waves: Sequence[Wave] | None = None) -> np.ndarray:
        """``measure(u) <= cutoff``, computed target by target for the points still in:
        a point is out once ``k`` of one wave's targets exceed the cut-off (``k`` the
        measure's rank, at most the number of emulated targets)."""
        u = np.atleast_2d(u)
        waves = self.waves if waves is None else waves
        alive = np.ones(u.shape[0], bool)
        for w in waves:
            js = [j for j, e in enumerate(w.emulators) if e is not None]
            if not js:
                continue
            k = min(MEASURES[self.settings.measure], len(js))
            count = np.zeros(u.shape[0], int)
            for j in js:
                idx = np.flatnonzero(alive)
                if idx.size == 0:
                    return alive
                count[idx] += self.target_implausibility(w, j, u[idx]) > self.settings.cutoff
                alive[idx[count[idx] >= k]] = False
        return alive

    # -- waves ----------------------------------------------------------------------
    def add_wave(self, u, y, v=None) -> Wave:
        """Record a simulated wave and fit its emulators.

        Each target's emulator is fitted on the points of every wave so far
        that the earlier waves did not rule out (all of them in wave 1; all of
        them too when fewer than ``d + 2`` would be left).
        """
        u = np.atleast_2d(np.asarray(u, float))
        y = np.atleast_2d(np.asarray(y, float))
        v = np.full_like(y, np.nan) if v is None else np.atleast_2d(np.asarray(v, float))
        box = self.nroy_candidates()[2] if self.waves else None
        wave = Wave(u=u, y=y, v=v, box=box)
        allu = np.vstack([w.u for w in self.waves] + [u])
        ally = np.vstack([w.y for w in self.waves] + [y])
        allv = np.vstack([w.v for w in self.waves] + [v])
        keep = self.nroy_mask(allu) if self.waves else np.ones(len(allu), bool)
        if keep.sum() < self.d + 2:
            keep[:] = True
        wave.trained_on = int(keep.sum())
        ems = []
        for j in range(len(self.targets)):
            yj = ally[keep, j]
            if np.isfinite(yj).sum() < 2:
                ems.append(None)
                continue
            ems.append(Emulator(seed=self.settings.seed * 1000 + len(self.waves) * 37 + j)
                       .fit(allu[keep], yj))
        wave.emulators = ems
        vv = allv[keep]
        wave.pop_var = np.array([float(np.nanmean(vv[:, j])) if np.isfinite(vv[:, j]).any()
                                 else 0.0 for j in range(len(self.targets))])
        self.waves.append(wave)
        self._nroy_cache = None
        wave.nroy_fraction = self.nroy_candidates()[1]
        return wave

    def _box(self) -> tuple[np.ndarray, np.ndarray]:
        """The unit-cube box candidates are drawn from now (see :meth:`nroy_candidates`)."""
        if self.waves and self.waves[-1].box is not None:
            return self.waves[-1].box
        return np.zeros(self.d), np.ones(self.d)

    def nroy_candidates(self) -> tuple[np.ndarray, float, tuple]:
        """Candidates (unit cube) inside the current NROY region, the NROY fraction of
        the prior box, and the box they were drawn from.

        The box is the unit cube up to wave 1, and after wave k > 1 the bounding
        box of the NROY candidates after wave k - 1 widened by 10 % of its width
        on each side (the region only shrinks from wave to wave), recorded as
        that wave's ``box``.
        """
        if self._nroy_cache is not None:
            return self._nroy_cache
        lo, hi = self._box()
        rng = self.rng(1)
        n = int(self.settings.candidates)
        c = lo + rng.random((n, self.d)) * (hi - lo)
        keep = self.nroy_mask(c) if self.waves else np.ones(n, bool)
        vol = float(np.prod(hi - lo))
        frac = vol * keep.mean()
        inside = c[keep]
        if len(inside):
            w = inside.max(0) - inside.min(0)
            nlo = np.clip(inside.min(0) - 0.1 * w - 0.5 / n ** (1 / self.d), 0, 1)
            nhi = np.clip(inside.max(0) + 0.1 * w + 0.5 / n ** (1 / self.d), 0, 1)
            box = (nlo, nhi)
        else:
            box = (lo, hi)
        self._nroy_cache = (inside, frac, box)
        return self._nroy_cache

    def design(self, n: int) -> np.ndarray:
        """``n`` design points (unit cube) for the next wave.

        Wave 1: a maximin Latin hypercube. Later waves: a maximin subset of
        the NROY candidates (fewer points when fewer candidates survived;
        an empty array when none did).
        """
        rng = self.rng(2)
        if not self.waves:
            return lhs(n, self.d, rng)
        inside = self.nroy_candidates()[0]
        return maximin_subset(inside, n, rng)

    def nroy_sample(self, n: int, max_rounds: int = 10) -> tuple[np.ndarray, float]:
        """Up to ``n`` parameter-value draws (n, d) uniform on the NROY region, and its
        fraction of the prior box. Rejection from rounds of ``candidates`` points
        in the current box; fewer draws when the region is too small to fill ``n``."""
        inside, frac, _ = self.nroy_candidates()
        got = [inside]
        total = len(inside)
        lo, hi = self._box()
        rounds = 1
        while total < n and rounds < max_rounds and total > 0:
            rng = np.random.default_rng([int(self.settings.seed), len(self.waves), 3, rounds])
            c = lo + rng.random((int(self.settings.candidates), self.d)) * (hi - lo)
            more = c[self.nroy_mask(c)]
            got.append(more)
            total += len(more)
            rounds += 1
        u = np.vstack(got)[:n] if total else np.zeros((0, self.d))
        return self.values(u), frac


def history_match(parameters: Sequence[Parameter], targets: Sequence[Target],
                  simulate: Callable, *, waves: int = 2, points: int | Sequence[int] = 20,
                  settings: Settings | None = None, samples: int = 1000,
                  log: Callable[[str], None] | None = None) -> tuple[HistoryMatching, np.ndarray]:
    """Run ``waves`` waves against ``simulate`` and return ``(state, NROY samples)``.

    Args:
        simulate: ``simulate(x, wave)`` with ``x`` the parameter values (n, d)
            and ``wave`` the 1-based wave number; returns ``y`` (n, targets) or
            ``(y, v)`` with ``v`` the sampling variances of ``y`` (or None).
        points: design points per wave (one number, or one per wave).
    """
    hm = HistoryMatching(parameters, targets, settings)
    per = [int(points)] * waves if np.ndim(points) == 0 else [int(p) for p in points]
    for w in range(waves):
        u = hm.design(per[min(w, len(per) - 1)])
        if len(u) == 0:
            if log:
                log(f"wave {w + 1}: every candidate ruled out; stopping")
            break
        out = simulate(hm.values(u), w + 1)
        y, v = out if isinstance(out, tuple) else (out, None)
        wave = hm.add_wave(u, y, v)
        if log:
            log(f"wave {w + 1}: {len(u)} points; NROY {100 * wave.nroy_fraction:.3g} % of the box")
    draws, _ = hm.nroy_sample(samples)
    return hm, draws


__all__ = ["Parameter", "Target", "Emulator", "implausibility", "combine", "lhs",
           "maximin_subset", "Wave", "Settings", "HistoryMatching", "history_match", "MEASURES"]
