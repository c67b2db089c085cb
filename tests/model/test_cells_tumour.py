"""Tumour rules: birth-death moments, antigen inheritance, kill -> dying -> lysis."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from abm import cells as C
from abm.kernels.cells_common import event_prob

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers
from helpers.cells import grid_sites, make_sim  # noqa: E402

DAY = 86400.0


def galton_watson_moments(b_per_day, d_per_day, dt_s, steps):
    """Mean and variance of a clone after ``steps`` steps of the discrete rule.

    Per step a cell dies with p_d, else divides with p_b: offspring 0, 1, 2 with
    probabilities p_d, (1 - p_d)(1 - p_b), (1 - p_d) p_b. Galton-Watson:
    E = m^k, Var = s2 m^(k-1) (m^k - 1) / (m - 1).
    """
    pd = event_prob(d_per_day / DAY, dt_s)
    pb = event_prob(b_per_day / DAY, dt_s)
    m = (1 - pd) * (1 + pb)
    ex2 = (1 - pd) * (1 - pb) + 4 * (1 - pd) * pb
    s2 = ex2 - m * m
    mean = m ** steps
    var = s2 * m ** (steps - 1) * (m ** steps - 1) / (m - 1)
    return mean, var


def test_birth_death_moments_match_expectation():
    """Sparse founders on a big lattice: clone sizes have the birth-death mean and variance.

    Founders sit 10 sites apart; each 10 x 10 block holds one clone (pure
    birth-death while space is free). Continuous-time check as well:
    E = e^{(b-d)t}, Var = (b+d)/(b-d) e^{(b-d)t} (e^{(b-d)t} - 1).
    """
    b, d, days = 0.6, 0.2, 2.0
    spacing = 10
    sizes = []
    for seed in (1, 2, 3):
        sim = make_sim({"lattice": {"shape": [240, 240], "vessel_fraction": 0.0},
                        "tumour": {"growth_rate_per_day": b, "death_rate_per_day": d,
                                   "antigen_inherit_log_sd": 0.0}}, seed=seed)
        lat = sim.state.lattice
        founders = grid_sites(lat, spacing, offset=spacing // 2)
        sim.state.cells.add(C.TUMOUR, founders, phenotype=C.TUMOUR_ALIVE, antigen=1.0)
        steps = int(round(days * DAY / sim.config.run.dt_s))
        sim.run(steps=steps)
        c = sim.state.cells
        sites = c.site[: c.n][c.kind[: c.n] == C.TUMOUR]
        y, x = sites // lat.shape[1], sites % lat.shape[1]
        block = (y // spacing) * (lat.shape[1] // spacing) + x // spacing
        sizes.append(np.bincount(block, minlength=len(founders)))
    n = np.concatenate(sizes).astype(float)
    mean_exp, var_exp = galton_watson_moments(b, d, sim.config.run.dt_s, steps)
    r = b - d
    mean_ct = math.exp(r * days)
    var_ct = (b + d) / r * math.exp(r * days) * (math.exp(r * days) - 1)
    assert abs(mean_exp / mean_ct - 1) < 0.01 and abs(var_exp / var_ct - 1) < 0.02
    N = len(n)
    se_mean = math.sqrt(var_exp / N)
    m4 = np.mean((n - n.mean()) ** 4)
    se_var = math.sqrt((m4 - n.var() ** 2) / N)
    assert abs(n.mean() - mean_exp) < 4 * se_mean, (n.mean(), mean_exp, se_mean)
    assert abs(n.var(ddof=1) - var_exp) < 4 * se_var, (n.var(ddof=1), var_exp, se_var)
    print(f"clones {N}: mean {n.mean():.3f} (expected {mean_exp:.3f}), "
          f"variance {n.var(ddof=1):.3f} (expected {var_exp:.3f})")


def test_tumour_does_not_divide_into_vessels_or_occupied_sites():
    sim = make_sim({"lattice": {"shape": [30, 30], "vessel_fraction": 0.1,
                                "vessel_segment_sites": 5},
                    "tumour": {"growth_rate_per_day": 5.0, "death_rate_per_day": 0.0}})
    c, lat = sim.state.cells, sim.state.lattice
    sim.state.cells.add(C.TUMOUR, np.array([15 * 30 + 15]), antigen=1.0)
    sim.processes[0].check_invariants = True
    sim.run(steps=480)
    tum = c.kind[: c.n] == C.TUMOUR
    assert tum.sum() > 50
    assert not lat.vessel[c.site[: c.n][tum]].any()


def test_daughter_antigen_inherits_with_small_noise():
    sd = 0.1
    sim = make_sim({"lattice": {"shape": [80, 80], "vessel_fraction": 0.0},
                    "tumour": {"growth_rate_per_day": 5.0, "death_rate_per_day": 0.0,
                               "antigen_inherit_log_sd": sd}})
    c = sim.state.cells
    founders = grid_sites(sim.state.lattice, 8, offset=4)
    c.add(C.TUMOUR, founders, antigen=1000.0)
    sim.run(steps=1)
    sim.run(steps=20)  # ~one division per cell
    n = c.n
    ag = c.antigen[:n][c.kind[:n] == C.TUMOUR]
    born = ag[ag != 1000.0]
    assert len(born) > 40
    # every daughter is one or a few log-normal steps away from 1000
    z = np.log(born / 1000.0)
    assert abs(z.mean()) < 4 * sd * 2 / math.sqrt(len(z))
    assert 0.5 * sd < z.std() < 2.5 * sd
    # antigen-negative cells stay negative
    sim2 = make_sim({"lattice": {"shape": [40, 40], "vessel_fraction": 0.0},
                     "tumour": {"growth_rate_per_day": 5.0, "death_rate_per_day": 0.0}})
    sim2.state.cells.add(C.TUMOUR, grid_sites(sim2.state.lattice, 8, 4), antigen=0.0)
    sim2.run(steps=48)
    c2 = sim2.state.cells
    assert c2.count(C.TUMOUR) > 25
    assert np.all(c2.antigen[: c2.n][c2.kind[: c2.n] == C.TUMOUR] == 0.0)


def test_kill_dying_lysis_damage_and_counter():
    """A killed cell is dying, lyses after ~dying_time (exponential), adds damage and is counted."""
    sim = make_sim({"lattice": {"shape": [60, 60], "vessel_fraction": 0.0},
                    "tumour": {"growth_rate_per_day": 0.0, "death_rate_per_day": 0.0,
                               "dying_time_h": 1.0, "damage_release_fg": 5.0}})
    c = sim.state.cells
    sites = grid_sites(sim.state.lattice, 3, offset=1)
    rows = c.add(C.TUMOUR, sites, antigen=1e4)
    c.phenotype[rows] = C.TUMOUR_DYING
    dt_h = sim.config.run.dt_s / 3600.0
    lysed, damage = [], []
    for i in range(30):
        sim.step()
        lysed.append(sim.state.scalars["tumour_lysed_step"])
        damage.append(sim.state.sources[6].sum())
        sim.state.sources.fill(0.0)
    lysed = np.array(lysed)
    assert sim.state.scalars["tumour_lysed_total"] == lysed.sum()
    # survival of the dying state is geometric with p = 1 - exp(-dt / 1 h)
    p = event_prob(1.0 / 3600.0, sim.config.run.dt_s)
    n0 = len(rows)
    expected = n0 * (1 - (1 - p) ** 30)
    assert abs(lysed.sum() - expected) < 4 * math.sqrt(n0 * p * 3)
    mean_time_h = (np.arange(1, 31) * lysed).sum() / lysed.sum() * dt_h
    assert 0.7 < mean_time_h < 1.2
    # damage source per lysis: 5 fg -> pg / voxel_ml / dt
    per = 5e-3 / sim.state.lattice.voxel_ml / sim.config.run.dt_s
    assert np.allclose(np.array(damage), lysed * per, rtol=1e-12)
    assert c.count(C.TUMOUR) == n0 - lysed.sum()
