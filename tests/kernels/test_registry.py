"""The codes module and the registry of species and CAR-T rules."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from abm import cells as C
from abm.config import config_from_dict
from abm.io.schema import describe
from abm.kernels import cells_common as KM
from abm.kernels import codes, registry, streams
from abm.kernels.cells_common import uniform
from abm.kernels.jit import jit
from abm.model.fields import SPECIES
from abm.build import build_simulation

ROOT = Path(__file__).resolve().parents[2]

# the tests place CAR-T cells by hand, which the patient's pools know nothing of: no re-lift
SMALL = {"lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 100},
         "run": {"start_day": 0.0, "end_day": 0.1, "seed": 5}, "coupling": {"relift_alpha": 0.0}}


def test_codes_are_plain_ints_defined_once():
    assert (C.DEAD, C.TUMOUR, C.CART, C.MYELOID, C.ENDOTHELIAL) == (-1, 0, 1, 2, 3)
    assert C.CART is KM.CART and type(KM.CART) is int
    assert (KM.CART_NAIVE, KM.CART_EFFECTOR, KM.CART_MEMORY, KM.CART_EXHAUSTED) == (0, 1, 2, 3)
    assert (KM.FREE, KM.RESERVED, KM.EV_KILL, KM.EV_ARRESTED) == (-1, -2, 1, 256)
    assert SPECIES == ("ifng", "gmcsf", "il6", "il1", "il7_15", "ang2", "damage")
    assert [getattr(KM, "F_" + s.upper()) for s in SPECIES] == list(range(len(SPECIES)))
    for s in codes.Stream:
        assert getattr(streams, s.name) == int(s) and type(getattr(streams, s.name)) is int
    assert streams.ENDOTHELIAL == 18 and codes.ENDOTHELIAL == 3


def test_species_list_is_fixed_once_the_config_exists():
    with pytest.raises(registry.RegistryError, match="fixed"):
        registry.register_species(codes.SpeciesDef("late", "late species", "late"))
    assert registry.species_names() == SPECIES


@jit
def _flip(key, row, id_, phenotype, activation, engagements, divisions_left, timer, target, site,
          fields, dt_s, params, counts):
    """Dummy rule: every CAR-T cell flips a coin of probability ``params[0]`` per step."""
    counts[0] += 1
    if uniform(key, id_[row], 0) < params[0]:
        counts[1] += 1


P_FLIP = 0.3
DUMMY_RULE = registry.CartRule(
    "DUMMY_FLIP", _flip,
    params=(registry.RuleParam("p_flip", P_FLIP, "1", "coin probability per cell and step"),),
    events=(registry.RuleEvent("dummy_trials_total", "cells", "dummy rule visits (cumulative)"),
            registry.RuleEvent("dummy_flips_total", "cells", "dummy coin flips won (cumulative)")))


def _add_cart(sim, n):
    c, lat = sim.state.cells, sim.state.lattice
    free = np.flatnonzero((c.occ < 0) & ~lat.vessel)[:n]
    c.add(C.CART, free, phenotype=C.CART_EFFECTOR, divisions_left=2, target=-1)


def test_registered_cart_rule_runs_counts_and_records():
    with registry.cart_rule_registered(DUMMY_RULE) as rule:
        ids = registry.all_streams()
        assert rule.stream >= registry.FIRST_RULE_STREAM
        assert rule.stream not in [int(s) for s in codes.Stream]
        assert len(set(ids.values())) == len(ids)
        sim = build_simulation(config_from_dict(SMALL))
        _add_cart(sim, 40)
        sim.run(steps=6)
        row = sim.record_row()
        meta = {k: v for p in sim.processes for k, v in (getattr(p, "meta", {}) or {}).items()}
    assert registry.cart_rules() == ()                      # cleaned up
    trials, flips = row["dummy_trials_total"], row["dummy_flips_total"]
    assert trials >= 6 * 20                                  # the CAR-T cells were visited each step
    sd = math.sqrt(trials * P_FLIP * (1 - P_FLIP))
    assert abs(flips - P_FLIP * trials) < 5 * sd, (flips, trials)
    assert describe("dummy_flips_total", meta) == ("1", "dummy coin flips won (cumulative)")
    # the same name keeps its stream id; the registry never hands it to another rule
    with registry.cart_rule_registered(DUMMY_RULE) as again:
        assert again.stream == rule.stream
    # without registered rules the simulation records no rule keys
    sim = build_simulation(config_from_dict(SMALL))
    sim.run(steps=1)
    assert "dummy_flips_total" not in sim.record_row()


def test_rule_name_must_not_shadow_a_builtin_stream():
    bad = registry.CartRule("CART_KILL", _flip)
    with pytest.raises(registry.RegistryError):
        registry.register_cart_rule(bad)
    assert registry.cart_rules() == ()


#: Registers a dummy species before the model is imported (the species list is
#: fixed by then), runs a few steps and prints what the test checks.
SPECIES_SCRIPT = r"""
import json, math
import numpy as np
from abm.kernels import codes, registry
idx = registry.register_species(codes.SpeciesDef(
    "dummy", "dummy test signal", "dummy", D_um2_s=0.5, tissue_half_life_min=30.0,
    exchange_per_s=0.0, plasma=True, plasma_half_life_min=90.0))
from abm.config import config_from_dict, to_toml
from abm.io.schema import describe
from abm.model.fields import SPECIES
from abm.build import build_simulation
cfg = config_from_dict({"lattice": {"shape": [32, 32]}, "tumour": {"initial_cells": 50},
                        "run": {"start_day": 0.0, "end_day": 0.1, "seed": 3},
                        "fields": {"dummy": {"tissue_half_life_min": 20.0}}})
sim = build_simulation(cfg)
st = sim.state
lat = st.lattice
f = st.fields[idx].reshape(-1)
centre = (lat.shape[0] // 2) * lat.shape[1] + lat.shape[1] // 2
f[centre] = 1000.0
st.scalars["plasma_dummy"] = 100.0
n = 4
sim.run(steps=n)
plane = st.fields[idx]
yy, xx = np.indices(plane.shape)
m = plane.sum()
var_x = float((plane * (xx - plane.shape[1] // 2) ** 2).sum() / m)
row = sim.record_row()
meta = {k: v for p in sim.processes for k, v in (getattr(p, "meta", {}) or {}).items()}
print(json.dumps(dict(
    index=idx, species=list(SPECIES), shape=list(st.fields.shape), mass=float(m), var_x=var_x,
    n=n, dt_s=cfg.run.dt_s, h_um=lat.h_um, peak=float(plane.max()),
    half_life=cfg.fields.dummy.tissue_half_life_min, D=cfg.fields.dummy.D_um2_s,
    tissue=row.get("tissue_dummy"), plasma=row.get("plasma_dummy"),
    plasma_units=list(describe("plasma_dummy", meta)), tissue_units=list(describe("tissue_dummy", meta)),
    toml="[fields.dummy]" in to_toml(cfg))))
"""


def test_registered_species_is_a_field_with_config_transport_and_record():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", SPECIES_SCRIPT], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    n_builtin = len(codes.BUILTIN_SPECIES)
    assert out["index"] == n_builtin and out["species"][-1] == "dummy"
    assert out["shape"][0] == n_builtin + 1                       # the plane exists
    assert out["toml"] and out["half_life"] == 20.0 and out["D"] == 0.5   # [fields.dummy] read
    # first-order tissue loss at the configured half-life; no source, no exchange
    k = math.log(2.0) / (out["half_life"] * 60.0)
    expected_mass = 1000.0 * math.exp(-k * out["dt_s"] * out["n"])
    assert out["mass"] == pytest.approx(expected_mass, rel=1e-9)
    # diffusion: each implicit step adds 2 D dt / h^2 sites^2 of variance per axis
    r = out["D"] * out["dt_s"] / out["h_um"] ** 2
    assert out["var_x"] == pytest.approx(2.0 * r * out["n"], rel=1e-3)
    assert out["peak"] < expected_mass                           # it spread
    # recorded: patch mean and plasma (cleared at the declared plasma half-life)
    assert out["tissue"] == pytest.approx(expected_mass / (32 * 32), rel=1e-9)
    kp = math.log(2.0) / (90.0 * 60.0)
    assert out["plasma"] == pytest.approx(100.0 * math.exp(-kp * out["dt_s"] * out["n"]), rel=1e-12)
    assert out["plasma_units"][0] == "pg/mL" and out["tissue_units"][0] == "pg/mL"
