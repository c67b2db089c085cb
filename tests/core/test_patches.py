"""Layered tissue patches (``lattice.patches = K``): geometry, initial cells, runs.

K independent 2D patches are the planes of one ``(K, ny, nx)`` lattice: no
neighbour crosses a layer, each patch has its own vessels and initial cells,
K = 1 is the plain 2D lattice, and a layered run is thread-count independent
and restarts bit-identically.
"""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from abm.build import build_simulation
from abm.cells import DEAD, ENDOTHELIAL, MYELOID, TUMOUR
from abm.config import config_from_dict
from abm.errors import ConfigError
from abm.io.run import output_path, run_to_file
from abm.lattice import Lattice
from abm.model.agents import CellRules, Extravasation
from abm.model.myeloid import n_residents
from analysis.io import open_group
from helpers.cells import MIXED, add_cart, assert_same_snapshot, cell_snapshot, deep_update, make_sim


def lattice(shape, seed=1, **kw):
    return Lattice(config_from_dict({"lattice": dict(shape=list(shape), **kw),
                                     "tumour": {"initial_cells": 4}}).lattice, seed)


def quiet(_msg):
    pass


# -- geometry ---------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["segments", "points"])
def test_one_patch_is_the_plain_2d_lattice(layout):
    a = lattice((20, 22), seed=5, vessel_layout=layout, vessel_segment_sites=4)
    b = lattice((20, 22), seed=5, vessel_layout=layout, vessel_segment_sites=4, patches=1)
    assert b.shape == a.shape == (20, 22) and not b.layered and b.n_patches == 1
    assert b.axis_names == ("y", "x") and a.zyx_shape == b.zyx_shape
    assert np.array_equal(a.neighbours, b.neighbours) and np.array_equal(a.vessel, b.vessel)
    assert np.array_equal(b.patch_of(np.arange(b.n_sites)), np.zeros(b.n_sites))


@pytest.mark.parametrize("nb", ["moore", "von_neumann"])
def test_no_neighbour_crosses_a_patch(nb):
    plain = lattice((7, 9), neighbourhood=nb, vessel_fraction=0.05, vessel_segment_sites=3)
    lat = lattice((7, 9), neighbourhood=nb, vessel_fraction=0.05, vessel_segment_sites=3,
                  patches=3)
    assert lat.shape == lat.zyx_shape == (3, 7, 9) and lat.ndim == 2 and lat.layered
    assert lat.axis_names == ("patch", "y", "x") and lat.patch_sites == 63
    assert np.all(lat.offsets[:, 0] == 0) and len(lat.offsets) == (8 if nb == "moore" else 4)
    assert lat.voxel_ml == plain.voxel_ml
    sites = np.arange(lat.n_sites)
    assert np.array_equal(lat.patch_of(sites), sites // 63)
    nbr = lat.neighbours
    inside = nbr >= 0
    assert np.all(lat.patch_of(np.where(inside, nbr, 0))[inside]
                  == np.repeat(lat.patch_of(sites)[:, None], nbr.shape[1], axis=1)[inside])
    # every patch has the neighbour table of one 2D patch, shifted by its first site
    for k in range(3):
        block = nbr[k * 63:(k + 1) * 63]
        assert np.array_equal(np.where(block >= 0, block - k * 63, -1), plain.neighbours)


@pytest.mark.parametrize("layout", ["segments", "points"])
def test_every_patch_has_its_own_reproducible_vessels(layout):
    kw = dict(vessel_layout=layout, vessel_segment_sites=5, vessel_fraction=0.05)
    lat = lattice((30, 30), seed=2, patches=4, **kw)
    again = lattice((30, 30), seed=2, patches=4, **kw)
    single = lattice((30, 30), seed=2, **kw)
    assert np.array_equal(lat.vessel, again.vessel)
    per = lat.vessel.reshape(4, -1)
    assert np.all(per.sum(axis=1) == round(0.05 * 900))
    assert np.array_equal(per[0], single.vessel)        # patch 0 = a single patch
    assert len({p.tobytes() for p in per}) == 4          # and the others differ


def test_patches_need_a_2d_shape():
    with pytest.raises(ConfigError, match="lattice.patches") as info:
        config_from_dict({"lattice": {"shape": [4, 8, 8], "patches": 2},
                          "tumour": {"initial_cells": 4}})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="lattice.patches"):
        config_from_dict({"lattice": {"patches": 65}})


# -- initial cells ------------------------------------------------------------------

def test_each_patch_gets_the_initial_tumour_residents_and_endothelium():
    cfg = config_from_dict({"lattice": {"shape": [24, 24], "patches": 3, "vessel_segment_sites": 4},
                            "tumour": {"initial_cells": 90}, "myeloid": {"resident_fraction": 0.1}})
    one = config_from_dict({"lattice": {"shape": [24, 24], "vessel_segment_sites": 4},
                            "tumour": {"initial_cells": 90}, "myeloid": {"resident_fraction": 0.1}})
    sim = build_simulation(cfg, seed=4, processes=[])
    ref = build_simulation(one, seed=4, processes=[])
    c, lat = sim.state.cells, sim.state.lattice
    live = np.arange(c.n)
    patch = lat.patch_of(c.site[live])
    n_res = n_residents(cfg.myeloid, 90)
    for k in range(3):
        here = patch == k
        assert np.count_nonzero(here & (c.kind[live] == TUMOUR)) == 90
        assert np.count_nonzero(here & (c.kind[live] == MYELOID)) == n_res
        endo = np.sort(c.site[live][here & (c.kind[live] == ENDOTHELIAL)])
        assert np.array_equal(endo, lat.vessel_sites[lat.patch_of(lat.vessel_sites) == k])
    # patch 0 holds the tumour mass of a single patch (same sites)
    rc = ref.state.cells
    t_ref = np.sort(rc.site[: rc.n][rc.kind[: rc.n] == TUMOUR])
    t0 = np.sort(c.site[live][(patch == 0) & (c.kind[live] == TUMOUR)])
    assert np.array_equal(t0, t_ref)
    # every tumour mass sits at its patch centre
    for k in range(3):
        yx = lat.coords(c.site[live][(patch == k) & (c.kind[live] == TUMOUR)])[:, 1:]
        assert np.all(np.abs(yx.mean(axis=0) - 11.5) < 1.0)
    assert sim.state.fields.shape == (len(sim.state.species), 3, 24, 24)


# -- agent pass ----------------------------------------------------------------------

def _run_layered(threads: int, par_min: int) -> dict:
    """A small mixed 3-patch lattice (tumour, CAR-T, residents, entry) for a few steps."""
    from abm.kernels.jit import set_threads

    set_threads(threads)
    old = CellRules.par_min, CellRules.tile_2d, CellRules.check_invariants
    CellRules.par_min, CellRules.tile_2d, CellRules.check_invariants = par_min, 4, True
    try:
        table = deep_update(MIXED, {"lattice": {"shape": [12, 12], "patches": 3,
                                                "vessel_fraction": 0.05},
                                    "tumour": {"initial_cells": 50}})
        sim = make_sim(table, seed=5, processes=(Extravasation, CellRules), clear=False)
        c, lat = sim.state.cells, sim.state.lattice
        add_cart(sim, np.flatnonzero((c.occ < 0) & ~lat.vessel)[::3], activation=0.5)
        sim.state.fields[...] = 300.0
        sim.state.scalars.update(blood_cart_cells=3e8)
        patch0 = lat.patch_of(c.site[: c.n])
        ids0 = c.id[: c.n].copy()
        for _ in range(12):
            sim.step()
        # a cell never changes patch; daughters are born in their mother's patch
        live = np.flatnonzero(c.kind[: c.n] != DEAD)
        same = np.isin(c.id[live], ids0)
        before = dict(zip(ids0.tolist(), patch0.tolist()))
        assert all(before[i] == p for i, p in zip(c.id[live][same].tolist(),
                                                  lat.patch_of(c.site[live][same]).tolist()))
        return cell_snapshot(sim)
    finally:
        CellRules.par_min, CellRules.tile_2d, CellRules.check_invariants = old
        set_threads(None)


def test_layered_agent_pass_same_for_one_and_two_threads():
    assert_same_snapshot(_run_layered(1, 10**9), _run_layered(2, 1))


# -- whole runs ---------------------------------------------------------------------

def _k4_config(threads: int = 1):
    return config_from_dict(deep_update(MIXED, {
        "run": {"name": "k4", "seed": 3, "start_day": 0.0, "end_day": 1.0, "threads": threads,
                "snapshot_every_h": 6.0, "checkpoint_every_h": 6.0},
        "lattice": {"shape": [16, 16], "patches": 4},
        "tumour": {"initial_cells": 80},
        # enough homing that CAR-T enter and kill within the day (the blood pool feeds
        # the patches by density, a few cells per day at the product's default)
        "product": {"homing_per_day": 50.0}}))


def _datasets(path) -> dict:
    out = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                      if isinstance(obj, h5py.Dataset) else None)
    return out


def _assert_same_datasets(a, b):
    da, db = _datasets(a), _datasets(b)
    assert sorted(da) == sorted(db)
    for name in da:
        x, y = np.asarray(da[name]), np.asarray(db[name])
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind == "O":
            assert x.tolist() == y.tolist(), name
        else:
            assert x.tobytes() == y.tobytes(), f"{name} differs"


def test_four_patch_run_threads_and_restart(tmp_path):
    old = CellRules.tile_2d, CellRules.par_min
    CellRules.tile_2d = 4        # many small tiles: the threaded tile loops get work
    try:
        ref = run_to_file(_k4_config(1), out_dir=tmp_path / "a", keep_checkpoints=True, log=quiet)
        CellRules.par_min = 1
        two = run_to_file(_k4_config(2), out_dir=tmp_path / "t", log=quiet)
        CellRules.par_min = old[1]
        target = output_path(_k4_config(1), 3, tmp_path / "b")
        target.parent.mkdir(parents=True)
        shutil.copyfile(ref.path, target)
        run_to_file(_k4_config(1), out_dir=tmp_path / "b", resume=True, from_step=120,
                    keep_checkpoints=True, log=quiet)
    finally:
        CellRules.tile_2d, CellRules.par_min = old
    _assert_same_datasets(ref.path, target)
    a, b = _datasets(ref.path), _datasets(two.path)
    for name in a:
        if not name.startswith("checkpoint/"):
            assert np.asarray(a[name]).tobytes() == np.asarray(b[name]).tobytes(), name
    f = open_group(ref.path, "fields", load=True)
    assert f.il6.dims == ("snapshot", "patch", "y", "x") and f.il6.shape == (5, 4, 16, 16)
    assert f.patch.attrs["units"] == "1" and list(f.patch.values) == [0, 1, 2, 3]
    assert f.x.attrs["units"] == "um"
    c = open_group(ref.path, "cells", load=True)
    assert set(np.unique(c.patch.values)) == {0, 1, 2, 3} and c.patch.attrs["units"] == "1"
    t = open_group(ref.path, "timeseries", load=True)
    assert t.cart_kills_total.values[-1] > 0
