"""Lattice geometry, vessel layout, cell table and occupancy."""

import numpy as np
import pytest

from abm.cells import CART, DEAD, ENDOTHELIAL, TUMOUR, CellTable
from abm.config import config_from_dict
from abm.lattice import Lattice


def lattice(shape, seed=1, **kw):
    return Lattice(config_from_dict({"lattice": dict(shape=list(shape), **kw),
                                     "tumour": {"initial_cells": 4}}).lattice, seed)


@pytest.mark.parametrize("shape,nb,k", [((8, 9), "moore", 8), ((8, 9), "von_neumann", 4),
                                          ((5, 6, 7), "moore", 26), ((5, 6, 7), "von_neumann", 6)])
def test_neighbour_table_matches_brute_force(shape, nb, k):
    lat = lattice(shape, neighbourhood=nb, vessel_fraction=0.05, vessel_segment_sites=3)
    assert lat.neighbours.shape == (lat.n_sites, k)
    zyx = lat.coords(np.arange(lat.n_sites))
    for s in range(lat.n_sites):
        expected = set()
        for t in range(lat.n_sites):
            d = np.abs(zyx[t] - zyx[s])
            cheb, manh = d.max(), d.sum()
            if t != s and (cheb == 1 if nb == "moore" else manh == 1):
                expected.add(t)
        got = set(int(x) for x in lat.neighbours[s] if x >= 0)
        assert got == expected
    # symmetry: t is a neighbour of s iff s is a neighbour of t
    for s in range(lat.n_sites):
        for t in lat.neighbours[s]:
            if t >= 0:
                assert s in lat.neighbours[t]


def test_flat_indexing_round_trip():
    lat = lattice((4, 5, 6), vessel_fraction=0.05, vessel_segment_sites=3)
    sites = np.arange(lat.n_sites)
    z, y, x = lat.coords(sites).T
    assert np.array_equal(lat.site(z, y, x), sites)
    lat2 = lattice((5, 6), vessel_fraction=0.05, vessel_segment_sites=3)
    assert lat2.zyx_shape == (1, 5, 6) and lat2.ndim == 2


@pytest.mark.parametrize("layout", ["segments", "points"])
@pytest.mark.parametrize("shape", [(64, 64), (16, 16, 16)])
def test_vessel_layout_reproducible(layout, shape):
    a = lattice(shape, seed=7, vessel_layout=layout)
    b = lattice(shape, seed=7, vessel_layout=layout)
    c = lattice(shape, seed=8, vessel_layout=layout)
    assert np.array_equal(a.vessel, b.vessel)
    assert not np.array_equal(a.vessel, c.vessel)
    assert a.vessel.sum() == round(0.03 * a.n_sites)


def test_segments_are_straight_runs():
    lat = lattice((64, 64), seed=3, vessel_segment_sites=10)
    # most vessel sites have a vessel neighbour along an axis
    v = lat.vessel_sites
    axis_nb = lat.neighbours[v][:, [1, 3, 4, 6]]  # moore order: (-1,0),(0,-1),(0,1),(1,0)
    has = ((axis_nb >= 0) & lat.vessel[np.where(axis_nb >= 0, axis_nb, 0)]).any(axis=1)
    assert has.mean() > 0.8


def test_cell_table_growth_remove_compact():
    t = CellTable(n_sites=100, capacity=16)
    rows = t.add(TUMOUR, np.arange(10), antigen=5.0)
    t.add(ENDOTHELIAL, np.array([3, 4]))  # lines vessel sites, not in occupancy
    more = t.add(CART, np.arange(10, 40), activation=np.linspace(0, 1, 30))
    assert t.capacity >= 42 and t.n == 42
    t.check_invariants()
    assert t.count(TUMOUR) == 10 and t.count(CART) == 30 and t.count(ENDOTHELIAL) == 2
    ids_before = t.id[: t.n].copy()
    t.remove(rows[::2])
    assert t.count(TUMOUR) == 5
    assert np.all(t.occ[np.arange(0, 10, 2)] == -1)
    t.check_invariants()
    t.compact()
    t.check_invariants()
    assert t.n == 37 and not np.any(t.kind[: t.n] == DEAD)
    # order of survivors and their ids kept
    kept = ids_before[np.r_[rows[1::2], np.arange(10, 42)]]
    assert np.array_equal(t.id[: t.n], kept)
    assert np.allclose(t.activation[t.occ[np.arange(10, 40)]], np.linspace(0, 1, 30))
    # ids are never reused
    new = t.add(TUMOUR, np.array([50]))
    assert t.id[new[0]] == 42


def test_add_to_occupied_site_rejected():
    t = CellTable(n_sites=10)
    t.add(TUMOUR, np.array([1, 2]))
    with pytest.raises(ValueError):
        t.add(CART, np.array([2]))


def test_invariant_checker_catches_corruption():
    t = CellTable(n_sites=10)
    t.add(TUMOUR, np.array([1, 2]))
    t.site[1] = 1  # two cells on one site
    with pytest.raises(AssertionError):
        t.check_invariants()
