"""Helpers for the cell-rule tests (arenas, the mixed scenario); no tests here.

Imported by ``tests/model/test_cells_*.py`` and ``tests/kernels/test_agent_pass.py`` and, for
the JIT-off comparison, by a subprocess that puts ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import numpy as np

from abm import cells as C
from abm.config import config_from_dict
from abm.model.agents import CellRules, Extravasation
from abm.model.fields import SPECIES
from abm.process import Process
from abm.build import build_simulation
from abm.simulation import Simulation

F = len(SPECIES)


def deep_update(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_sim(table: dict, seed: int = 1, processes=(CellRules,), clear: bool = True) -> Simulation:
    """A Simulation of ``table`` with only ``processes``; ``clear`` removes every tissue cell."""
    base = {"run": {"start_day": 0.0, "end_day": 30.0},
            "myeloid": {"resident_fraction": 0.0},
            "tumour": {"initial_cells": 1}}
    cfg = config_from_dict(deep_update(base, table))
    sim = build_simulation(cfg, seed=seed, processes=list(processes))
    if clear:
        c = sim.state.cells
        rows = np.flatnonzero((c.kind[: c.n] != C.ENDOTHELIAL) & (c.kind[: c.n] != C.DEAD))
        c.remove(rows)
        c.compact()
    return sim


def cell_snapshot(sim) -> dict:
    """Every cell column (rows in id order), the field sources and the numeric scalars of a simulation."""
    c = sim.state.cells
    o = np.argsort(c.id[: c.n])
    out = {name: col[o].copy() for name, col in c.columns().items()}
    out["sources"] = sim.state.sources.copy()
    out["scalars"] = sorted((k, v) for k, v in sim.state.scalars.items() if isinstance(v, (int, float)))
    return out


def assert_same_snapshot(a: dict, b: dict) -> None:
    """Two :func:`cell_snapshot` results are equal bit for bit, and CAR-T cells killed in them."""
    assert a["scalars"] == b["scalars"]
    for k in a:
        if k != "scalars":
            assert np.array_equal(a[k], b[k]), k
    assert any(v > 0 for k, v in a["scalars"] if k == "cart_kills_total")


def fields2d(sim) -> np.ndarray:
    return sim.state.fields.reshape(F, -1)


def grid_sites(lattice, spacing: int, offset: int = 1) -> np.ndarray:
    """Sites on a square grid of the given spacing (2D)."""
    ny, nx = lattice.shape
    ys = np.arange(offset, ny - 1, spacing)
    xs = np.arange(offset, nx - 1, spacing)
    y, x = np.meshgrid(ys, xs, indexing="ij")
    return (y * nx + x).ravel().astype(np.int64)


def fill_tumour(sim, antigen: float, exclude=()) -> np.ndarray:
    """Fill every free non-vessel site (except ``exclude``) with tumour cells of one antigen density."""
    c, lat = sim.state.cells, sim.state.lattice
    free = (c.occ < 0) & ~lat.vessel
    free[np.asarray(exclude, dtype=np.int64)] = False
    sites = np.flatnonzero(free)
    return c.add(C.TUMOUR, sites, phenotype=C.TUMOUR_ALIVE, antigen=antigen)


def add_cart(sim, sites, **cols) -> np.ndarray:
    values = dict(phenotype=C.CART_EFFECTOR, divisions_left=sim.config.product.max_divisions,
                  target=-1)
    values.update(cols)
    return sim.state.cells.add(C.CART, np.asarray(sites, dtype=np.int64), **values)


class DecayFields(Process):
    """Test-only field phase: ``C <- (C + S dt) / (1 + (k + u) dt)``, element-wise, then clear.

    Keeps a copy of the last step's sources and uptake for comparison.
    """

    phase = "fields"

    def __init__(self, sim):
        super().__init__(sim)
        self.dt = sim.config.run.dt_s
        self.k = 1e-4

    def step(self, state):
        f = state.fields.reshape(F, -1)
        f[:] = (f + state.sources * self.dt) / (1.0 + (self.k + state.uptake) * self.dt)
        state.scalars["_last_sources_sum"] = float(state.sources.sum())
        state.last_sources = state.sources.copy()
        state.last_uptake = state.uptake.copy()
        state.sources.fill(0.0)
        state.uptake.fill(0.0)


MIXED = {
    "lattice": {"shape": [24, 24], "vessel_fraction": 0.06, "vessel_segment_sites": 4},
    "tumour": {"initial_cells": 220, "growth_rate_per_day": 3.0, "death_rate_per_day": 0.5,
               "dying_time_h": 0.3, "homing_reference_burden_cells": 1e9,   # h_T = product.homing_per_day
               # bystander kills fire at the scenario's IFN-gamma (~200-400 pg/mL)
               "bystander_kill_per_day": 3.0, "bystander_ifng_ec50_pg_ml": 200.0},
    "myeloid": {"resident_fraction": 0.2, "recruit_per_vessel_per_day": 20.0,
                "activated_death_per_day": 3.0, "speed_um_per_min": 4.0},
    "product": {"engagement_rate_per_h": 6.0, "division_time_h": 1.5, "exhaustion_engagements": 3,
                # CD28 cells hold oxidative capacity o ~ 0.03: 600/day x o ~ 20/day,
                # reached within the scenario's 2.4 h with a 0.2 h relaxation time
                "memory_conversion_per_day": 600.0, "oxidative_time_h": 0.2,
                "egress_per_day": 100.0,
                "activation_half_life_h": 0.2, "rest_recovery_per_day": 20.0,
                "activation_death_per_day": 3.0, "exhausted_death_per_day": 3.0,
                "homeostatic_division_per_day": 3.0},
    "endothelium": {"release_rate_per_h": 20.0},
    "patient": {"tumour_burden_cells": 1e9},
}


def mixed_scenario(steps: int = 24, threads: int | None = None, par_min: int | None = None,
                   seed: int = 11, checks: bool = True, tile: int = 4, keep_sim: bool = False,
                   extra: dict | None = None) -> dict:
    """The mixed scenario of the determinism tests; returns every array to compare.

    Tiles of 4 sites give 36 tiles (9 per tile colour) on the 24 x 24 lattice,
    so the parallel path has work items to share out. ``keep_sim`` adds the
    Simulation itself (``out["sim"]``); ``extra`` overrides config keys of
    :data:`MIXED`.
    """
    from abm.kernels.jit import set_threads

    if threads is not None:
        set_threads(threads)
    old = CellRules.par_min, CellRules.check_invariants, CellRules.tile_2d
    if par_min is not None:
        CellRules.par_min = par_min
    CellRules.check_invariants = checks
    CellRules.tile_2d = tile
    try:
        table = deep_update(MIXED, {"myeloid": {"resident_fraction": 0.2}})
        sim = make_sim(deep_update(table, extra or {}), seed=seed,
                       processes=(Extravasation, CellRules, DecayFields), clear=False)
        st = sim.state
        c, lat = st.cells, st.lattice
        free = np.flatnonzero((c.occ < 0) & ~lat.vessel)
        add_cart(sim, free[::5], activation=0.5, phenotype=C.CART_NAIVE)
        f = fields2d(sim)
        sites = np.arange(lat.n_sites)
        for i in range(F):
            f[i] = 200.0 * (1.0 + np.sin(0.37 * sites + i))
        st.scalars.update(blood_cart_cells=3e8, steroid_effect=0.2, il6r_occupancy=0.3)
        sim.run(steps=steps)
        out = {name: col.copy() for name, col in c.columns().items()}
        out.update(occ=c.occ.copy(), perm=st.perm.copy(), fields=st.fields.copy(),
                   sources=st.last_sources, uptake=st.last_uptake,
                   next_id=np.array([c.next_id]))
        keys = sorted(k for k in st.scalars if not k.startswith("_"))
        out["scalar_names"] = np.array(keys)
        out["scalars"] = np.array([float(st.scalars[k]) for k in keys])
        if keep_sim:
            out["sim"] = sim
        return out
    finally:
        CellRules.par_min, CellRules.check_invariants, CellRules.tile_2d = old
