"""``calibration.nc``: the dataset ``abm calibrate`` writes (xarray, h5netcdf engine).

Dimensions: ``parameter`` (dotted config paths), ``target``, ``point`` (the
design points of every wave, in order), ``wave``, ``draw`` (NROY sample) and
``check_draw``. Variables:

=============================== ================================================================
``samples(draw, parameter)``    the NROY sample (float64, parameter values; integers rounded):
                                the calibration "posterior", uniform on the region not ruled out
``design(point, parameter)``    every design point; ``point_wave(point)`` its wave
``simulated(point, target)``    its simulated summary (rates as fractions, kinetics as log10);
                                ``simulated_var``, ``simulated_n``: sampling variance, runs
``implausibility(point, target)`` under the emulators of the last wave
``implausibility_measure(point)`` the measure over targets and waves compared with the cut-off
``nroy(point)``                 1 if the point is not ruled out
``observed(target)``            z (same scale as simulated); ``observed_sd``, ``discrepancy_sd``;
                                ``observed_value`` in natural units
``prior_low/high(parameter)``   the ranges; ``parameter_scale``, ``parameter_kind`` coordinates
``sample_implausibility(draw)``  each draw's emulated implausibility measure (over waves)
``best_estimate(parameter)``    the draw with the smallest one: the point the emulators
                                place closest to every target at once
``nroy_min/max/median/q05/q95`` per-parameter summaries of the sample
``nroy_fraction(wave)``         share of the parameter box not ruled out after each wave
``emulator_noise_sd(wave, target)``, ``emulator_lengthscale(wave, target, parameter)``
``check_*``                     the posterior predictive check (when run): per draw the
                                simulated summary; per target the 90 % predictive interval
                                ``check_lo``/``check_hi`` and ``check_covered``
=============================== ================================================================

Root attributes record the provenance: the config text, software version,
git commit, the root seeds of every wave and arm, the cut-off and measure.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path

import numpy as np
import xarray as xr

from abm.studies.calibrate_targets import from_scale
from abm.version import __version__

#: Predictive interval of the check: 5-95 %.
CHECK_LEVELS = (0.05, 0.95)
#: Predictive draws per NROY draw in the check (observation and discrepancy noise added).
CHECK_REPLICATES = 400


def _str(values) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=object)


def build_dataset(cfg, hm, waves: list[dict], samples: np.ndarray, nroy_fraction: float, *,
                  check: dict | None = None, seeds: dict | None = None, messages=(),
                  git: str = "") -> xr.Dataset:
    """The calibration dataset from the history-matching state and the waves' results."""
    params = cfg.paths
    tnames = [t.name for t in cfg.targets]
    n_w = len(waves)
    d = len(params)
    design = np.vstack([w["values"] for w in waves]) if waves else np.zeros((0, d))
    pwave = np.concatenate([np.full(len(w["values"]), i + 1) for i, w in enumerate(waves)]) \
        if waves else np.zeros(0, int)
    sim = np.vstack([w["y"] for w in waves]) if waves else np.zeros((0, len(tnames)))
    simv = np.vstack([w["v"] for w in waves]) if waves else np.zeros((0, len(tnames)))
    simn = np.vstack([w["n"] for w in waves]) if waves else np.zeros((0, len(tnames)), int)
    u = hm.units(design) if len(design) else np.zeros((0, d))
    if hm.waves and len(u):
        imp = hm.wave_implausibility(hm.waves[-1], u)
        meas = hm.measure(u)
    else:
        imp = np.full((len(u), len(tnames)), np.nan)
        meas = np.full(len(u), np.nan)
    samples = np.asarray(samples, float).reshape(-1, d)
    # emulated, not simulated: free of the winner's curse of picking the best noisy design point
    s_meas = hm.measure(hm.units(samples)) if hm.waves and len(samples) else np.zeros(0)
    best = samples[int(np.argmin(s_meas))] if len(s_meas) else np.full(d, np.nan)

    coords = {
        "parameter": ("parameter", _str(params)),
        "target": ("target", _str(tnames)),
        "point": ("point", np.arange(len(design))),
        "wave": ("wave", np.arange(1, n_w + 1)),
        "draw": ("draw", np.arange(len(samples))),
        "parameter_scale": ("parameter", _str(p.scale for p in cfg.parameters)),
        "parameter_kind": ("parameter", _str("int" if p.integer else "float"
                                             for p in cfg.parameters)),
        "target_arm": ("target", _str(t.arm for t in cfg.targets)),
        "target_summary": ("target", _str(t.summary.name for t in cfg.targets)),
        "target_scale": ("target", _str(t.summary.scale for t in cfg.targets)),
        "target_unit": ("target", _str(t.summary.unit for t in cfg.targets)),
        "point_wave": ("point", pwave.astype(np.int64)),
    }
    q = (lambda f: np.array([f(samples[:, j]) for j in range(d)], float)) if len(samples) \
        else (lambda f: np.full(d, np.nan))
    data = {
        "samples": (("draw", "parameter"), samples.astype(np.float64),
                    {"long_name": "NROY sample (calibration posterior): parameter values",
                     "description": "uniform draws from the region not ruled out by any wave"}),
        "sample_implausibility": (("draw",), s_meas.astype(np.float64),
                                  {"long_name": f"emulated {cfg.measure} implausibility of "
                                                "the draw, largest over waves"}),
        "best_estimate": (("parameter",), best.astype(np.float64),
                          {"long_name": "the NROY draw of smallest emulated implausibility"}),
        "design": (("point", "parameter"), design.astype(np.float64),
                   {"long_name": "design points of every wave"}),
        "simulated": (("point", "target"), sim,
                      {"long_name": "simulated summary (rates: fraction; kinetics: log10)"}),
        "simulated_var": (("point", "target"), simv,
                          {"long_name": "sampling variance of the simulated summary"}),
        "simulated_n": (("point", "target"), simn.astype(np.int64),
                        {"long_name": "runs with the endpoint"}),
        "implausibility": (("point", "target"), imp,
                           {"long_name": "implausibility under the last wave's emulators"}),
        "implausibility_measure": (("point",), meas,
                                   {"long_name": f"{cfg.measure} implausibility over targets, "
                                                 "largest over waves"}),
        "nroy": (("point",), (meas <= cfg.cutoff).astype(np.int8),
                 {"long_name": "1: not ruled out"}),
        "observed": (("target",), np.array([t.target(1).observed for t in cfg.targets], float),
                     {"long_name": "observed target on the emulated scale"}),
        "observed_value": (("target",), np.array([t.observed for t in cfg.targets], float),
                           {"long_name": "observed target in natural units"}),
        "observed_sd": (("target",), np.array([t.obs_sd for t in cfg.targets], float),
                        {"long_name": "observation sd (emulated scale)"}),
        "discrepancy_sd": (("target",), np.array([t.disc_sd for t in cfg.targets], float),
                           {"long_name": "model discrepancy sd (emulated scale)"}),
        "target_source": (("target",), _str(t.source for t in cfg.targets)),
        "prior_low": (("parameter",), np.array([p.low for p in cfg.parameters], float)),
        "prior_high": (("parameter",), np.array([p.high for p in cfg.parameters], float)),
        "nroy_min": (("parameter",), q(np.min), {"long_name": "smallest value kept"}),
        "nroy_max": (("parameter",), q(np.max), {"long_name": "largest value kept"}),
        "nroy_median": (("parameter",), q(np.median)),
        "nroy_q05": (("parameter",), q(lambda x: np.quantile(x, 0.05))),
        "nroy_q95": (("parameter",), q(lambda x: np.quantile(x, 0.95))),
        "nroy_fraction": (("wave",), np.array([w.nroy_fraction for w in hm.waves], float),
                          {"long_name": "share of the parameter box not ruled out after the wave"}),
        "wave_points": (("wave",), np.array([len(w["values"]) for w in waves], np.int64)),
        "emulator_trained_on": (("wave",), np.array([w.trained_on for w in hm.waves], np.int64)),
        "emulator_noise_sd": (("wave", "target"), _em(hm, lambda e: e.noise_sd, len(tnames)),
                              {"long_name": "learnt sd of the simulator noise"}),
        "emulator_signal_sd": (("wave", "target"), _em(hm, lambda e: math.sqrt(e.signal_var),
                                                       len(tnames))),
        "emulator_lengthscale": (("wave", "target", "parameter"), _lengths(hm, len(tnames), d),
                                 {"long_name": "Matern length scale (unit cube)"}),
    }
    if check is not None:
        data.update(_check_vars(cfg, check))
        coords["check_draw"] = ("check_draw", np.arange(len(check["values"])))
    attrs = {
        "title": f"abm calibrate {cfg.name}: history matching with Gaussian-process emulators",
        "software": "abm", "software_version": __version__, "git_commit": git,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config_file": str(cfg.file), "config_toml": cfg.text,
        "seed": str(cfg.seed), "cutoff": cfg.cutoff, "measure": cfg.measure,
        "waves_planned": cfg.waves, "waves_done": n_w,
        "seeds": json.dumps({f"wave{w}": s for w, s in (seeds or {}).items()}
                            | ({"check": check["seeds"]} if check else {})),
        "arms": json.dumps({a.name: {"batch": a.file, "patients": a.patients,
                                     "costimulation": a.costimulation} for a in cfg.arms}),
        "nroy_fraction_final": float(nroy_fraction) if nroy_fraction == nroy_fraction else np.nan,
        "messages": json.dumps(list(messages)),
        "Conventions": "CF-1.10",
    }
    return xr.Dataset({k: xr.Variable(*v) for k, v in data.items()},
                      coords={k: xr.Variable(*v) for k, v in coords.items()}, attrs=attrs)


def _em(hm, f, n_t) -> np.ndarray:
    out = np.full((len(hm.waves), n_t), np.nan)
    for i, w in enumerate(hm.waves):
        for j, e in enumerate(w.emulators):
            if e is not None:
                out[i, j] = f(e)
    return out


def _lengths(hm, n_t, d) -> np.ndarray:
    out = np.full((len(hm.waves), n_t, d), np.nan)
    for i, w in enumerate(hm.waves):
        for j, e in enumerate(w.emulators):
            if e is not None:
                out[i, j] = np.broadcast_to(e.lengthscales, (d,))
    return out


def predictive_interval(sim, pop_var, obs_var, disc_var, *, seed: int = 0,
                        levels=CHECK_LEVELS, reps: int = CHECK_REPLICATES, clip=None):
    """``(lo, median, hi)`` of the predictive distribution of the observation: each
    draw's simulated summary plus normal noise of variance ``pop_var + obs_var + disc_var``
    (clipped to ``clip = (low, high)``, e.g. (0, 1) for a rate)."""
    sim = np.asarray(sim, float)
    pv = np.nan_to_num(np.asarray(pop_var, float))
    ok = np.isfinite(sim)
    if not ok.any():
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    sd = np.sqrt(pv[ok] + obs_var + disc_var)
    draws = sim[ok][:, None] + sd[:, None] * rng.standard_normal((ok.sum(), reps))
    if clip is not None:
        draws = np.clip(draws, *clip)
    lo, med, hi = np.quantile(draws.ravel(), [levels[0], 0.5, levels[1]])
    return float(lo), float(med), float(hi)


def _check_vars(cfg, check: dict) -> dict:
    y, v = check["y"], check["v"]
    lo, med, hi, cov = [], [], [], []
    for j, t in enumerate(cfg.targets):
        pv = v[:, j]
        if t.summary.kind == "rate":   # at the check's population size
            n = cfg.check.patients[t.arm]
            m = (n * np.clip(y[:, j], 0, 1) + 1) / (n + 2)
            pv = m * (1 - m) / n
        a, b, c = predictive_interval(y[:, j], pv, t.obs_sd ** 2, t.disc_sd ** 2,
                                      seed=cfg.seed + j,
                                      clip=(0.0, 1.0) if t.summary.kind == "rate" else None)
        z = t.target(1).observed
        lo.append(a)
        med.append(b)
        hi.append(c)
        cov.append(int(a <= z <= c) if np.isfinite(a) else -1)
    return {
        "check_parameters": (("check_draw", "parameter"), np.asarray(check["values"], float)),
        "check_simulated": (("check_draw", "target"), np.asarray(y, float),
                            {"long_name": "simulated summary at an NROY draw (fresh patients)"}),
        "check_n": (("check_draw", "target"), np.asarray(check["n"], np.int64)),
        "check_lo": (("target",), np.array(lo), {"long_name": "predictive 5 %"}),
        "check_median": (("target",), np.array(med)),
        "check_hi": (("target",), np.array(hi), {"long_name": "predictive 95 %"}),
        "check_covered": (("target",), np.array(cov, np.int8),
                          {"long_name": "1: observed inside the predictive interval; -1: no "
                                        "simulated value"}),
    }


def write_dataset(ds: xr.Dataset, path: Path) -> None:
    """Write atomically (a temporary file, then a rename)."""
    path = Path(path)
    tmp = path.with_suffix(".nc.tmp")
    enc = {}
    for k, v in list(ds.variables.items()):
        if v.dtype == object:
            enc[k] = {"dtype": str}
    ds.to_netcdf(tmp, engine="h5netcdf", encoding=enc)
    os.replace(tmp, path)


def natural(ds: xr.Dataset, var: str) -> np.ndarray:
    """A summary-scale variable (e.g. ``simulated``) in natural units (10 ** log10 for kinetics)."""
    from abm.studies.calibrate_targets import SUMMARIES
    x = np.asarray(ds[var].values, float)
    out = x.copy()
    for j, s in enumerate(ds["target_summary"].values):
        sl = (..., j)
        out[sl] = from_scale(SUMMARIES[str(s)], x[sl])
    return out


__all__ = ["build_dataset", "write_dataset", "predictive_interval", "natural", "CHECK_LEVELS"]
