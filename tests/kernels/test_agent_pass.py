"""The machinery of the agent pass: grouping, table sort, packed arrays, scratch, hops.

These pieces exist for speed; each must give exactly what a plain reference
computation gives (the rules themselves are tested in ``test_cells_*.py``,
bit-identity across threads, JIT and restart in ``test_cells_determinism.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from abm import cells as C
from abm.errors import ConfigError
from abm.kernels import cells_common as KM
from abm.kernels import cells_tumour as KT
from abm.kernels import rng, streams
from abm.model.agents import CellRules, EndothelialRows, movement_plan, sort_by_site

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers
from helpers.cells import assert_same_snapshot, cell_snapshot, make_sim, mixed_scenario  # noqa: E402


def random_table(n_sites=400, n=250, seed=3, dead=0.1):
    """A cell table with random kinds (some dead) at distinct random sites."""
    g = np.random.default_rng(seed)
    sites = g.choice(n_sites, n, replace=False)
    kind = g.choice([C.TUMOUR, C.CART, C.MYELOID, C.ENDOTHELIAL], n).astype(np.int8)
    kind[g.random(n) < dead] = C.DEAD
    return kind, sites.astype(np.int64)


# -- packed arrays ----------------------------------------------------------------

def test_packed_arrays_are_aligned_filled_and_independent():
    small = C.packed_arrays([((5,), np.int8, 1), ((3, 4), np.float64, 2.5), ((7,), np.int64, -1)])
    assert [a.shape for a in small] == [(5,), (3, 4), (7,)]
    assert [a.dtype for a in small] == [np.int8, np.float64, np.int64]
    assert all(a.ctypes.data % 64 == 0 for a in small)
    small[0][:] = 9
    assert np.all(small[1] == 2.5) and np.all(small[2] == -1)
    src = np.arange(12.0).reshape(3, 4)
    big = C.packed_arrays([((300_000,), np.int64, 0), (src.shape, np.float64, src)])
    assert big[0].ctypes.data % (2 << 20) == 0          # >= 2 MiB: huge-page aligned
    assert np.array_equal(big[1], src)


def test_cell_table_growth_keeps_rows_and_occupancy():
    c = C.CellTable(n_sites=50, capacity=16)
    rows = c.add(C.TUMOUR, np.arange(10), antigen=np.arange(10.0))
    occ_before = c.occ
    c.add(C.CART, np.arange(10, 40))                      # grows 16 -> 64
    assert c.capacity == 64 and c.occ is occ_before      # occupancy is never reallocated
    assert np.array_equal(c.antigen[rows], np.arange(10.0))
    assert np.array_equal(c.occ[np.arange(40)], np.arange(40))
    c.check_invariants()


def test_layout_changes_only_when_rows_move():
    sim = make_sim({"lattice": {"shape": [20, 20]}}, clear=False)
    c = sim.state.cells
    seen = {c.layout}
    c.add(C.CART, np.flatnonzero((c.occ < 0) & ~sim.state.lattice.vessel)[:3])
    c.remove(np.array([c.n - 1]))
    assert c.layout in seen                               # appends and deaths keep rows
    for change in (c.compact, lambda: sort_by_site(c), c.rebuild_occupancy,
                   lambda: c.load_columns(c.columns(), c.next_id)):
        change()
        assert c.layout not in seen
        seen.add(c.layout)
    other = C.CellTable(10)
    assert other.layout not in seen                       # unique across tables


# -- table sort ---------------------------------------------------------------------

def test_sort_gives_kind_blocks_in_rank_order():
    kind, site = random_table()
    rank = np.random.default_rng(5).permutation(400).astype(np.int64)
    perm = KM.site_sort_permutation(len(kind), kind, site, rank)
    live = np.flatnonzero(kind != C.DEAD)
    assert sorted(perm) == list(live)
    block = {C.ENDOTHELIAL: 0, C.TUMOUR: 1, C.CART: 2, C.MYELOID: 3}
    keys = [(block[int(kind[r])], int(rank[site[r]])) for r in perm]
    assert keys == sorted(keys)


def test_sort_keeps_the_relative_order_of_each_kind():
    """Rows of one kind keep their order whatever the blocking (the agent tallies rely on it)."""
    kind, site = random_table(seed=8)
    rank = np.arange(400, dtype=np.int64)
    perm = KM.site_sort_permutation(len(kind), kind, site, rank)
    for k in (C.TUMOUR, C.CART, C.MYELOID, C.ENDOTHELIAL):
        mine = [r for r in perm if kind[r] == k]
        assert mine == sorted(mine, key=lambda r: rank[site[r]])


# -- classes ------------------------------------------------------------------------

def reference_classes(kind, site, key, rows):
    """{class: sorted rows} with class 3 key + kind for the given rows."""
    out = {}
    for r in rows:
        if 0 <= kind[r] < 3:
            out.setdefault(int(key[site[r]]) * 3 + int(kind[r]), []).append(int(r))
    return {c: sorted(v) for c, v in out.items()}


def test_static_plus_dynamic_classes_cover_every_cell_once():
    kind, site = random_table(n_sites=900, n=600, seed=11)
    key, _, n_keys, _ = KM.tile_layout((1, 30, 30), 8)
    n = len(kind)
    n_static = 450                                  # rows appended since: 450..599
    sstart = np.zeros(n_keys + 1, dtype=np.int64)
    srows = np.zeros(n, dtype=np.int64)
    smotile = np.zeros(n, dtype=np.int64)
    m_static = KM.static_classes(n_static, kind, site, key, sstart, srows, smotile)
    kind = kind.copy()
    kind[smotile[:5]] = C.DEAD                      # some motile cells die before the step
    start = np.zeros(3 * n_keys + 1, dtype=np.int64)
    rows = np.zeros(n, dtype=np.int64)
    kbuf = np.zeros(n, dtype=np.int32)
    motile = np.zeros(n, dtype=np.int64)
    m = KM.dynamic_classes(smotile[:m_static], n_static, n, kind, site, key, start, rows, kbuf,
                           motile)
    got = {}
    for k in range(n_keys):                          # static tumour rows, still alive
        for r in srows[sstart[k]:sstart[k + 1]]:
            if kind[r] == C.TUMOUR:
                got.setdefault(3 * k, []).append(int(r))
    for c in range(3 * n_keys):
        for r in rows[start[c]:start[c + 1]]:
            got.setdefault(c, []).append(int(r))
    got = {c: sorted(v) for c, v in got.items()}
    assert got == reference_classes(kind, site, key, np.arange(n))
    expect_motile = [r for r in range(n) if kind[r] in (C.CART, C.MYELOID)]
    assert list(motile[:m]) == expect_motile        # row order (the tallies rely on it)


# -- bit-mask neighbour choice --------------------------------------------------------

def test_pick_free_matches_a_plain_scan():
    g = np.random.default_rng(2)
    nb = g.integers(-1, 60, size=(60, 8)).astype(np.int32)
    occ = np.where(g.random(60) < 0.5, -1, 7).astype(np.int64)
    vessel = g.random(60) < 0.2
    for s in range(60):
        for allow in (True, False):
            for u in (0.0, 0.3, 0.77, 0.999):
                free = [int(t) for t in nb[s] if t >= 0 and occ[t] == -1
                        and (allow or not vessel[t])]
                want = free[int(u * len(free))] if free else -1
                assert KM.pick_free(s, nb, occ, vessel, allow, u) == want


def test_nth_set_bit():
    for mask in (1, 0b1011, 0b11110000, (1 << 25) | 5):
        bits = [i for i in range(27) if mask >> i & 1]
        for pick, b in enumerate(bits):
            assert KM.nth_set_bit(np.int64(mask), pick) == b


# -- hops, tallies, movement plan -------------------------------------------------------

def test_hop_decisions_equal_the_per_pass_draws():
    """The masks made after each update give, pass by pass, the draws of (MOVE, id, 2 sub)."""
    sim = mixed_scenario(steps=5, keep_sim=True, checks=False)["sim"]
    proc = next(p for p in sim.processes if isinstance(p, CellRules))
    st = sim.state
    c = st.cells
    n_before = c.n                                # daughters of the next step come after
    sim.step()                                    # step 5: no table sort, rows stay
    kind = c.kind[:n_before]
    rows = np.flatnonzero((kind == C.CART) | (kind == C.MYELOID))
    assert len(rows) > 10
    step = st.step - 1
    for r in rows:
        if c.kind[r] == C.CART:
            free = c.target[r] < 0 and not (proc._events[r] & KM.EV_ARRESTED)
            stream, p = streams.CART_MOVE, proc.p_cart
        else:
            free, stream, p = True, streams.MYELOID_MOVE, proc.p_mye
        want = 0
        for sub in range(proc.n_move):
            if free and p > 0 and rng.uniform(st.seed, stream, step, int(c.id[r]), 2 * sub) < p:
                want |= 1 << sub
        assert proc._hopmask[r] == want


def test_tallies_balance_the_tumour_count():
    """Per-tile tumour counters: cells now = cells before + daughters - natural deaths - lyses."""
    sim = mixed_scenario(steps=3, keep_sim=True, checks=False)["sim"]
    c, s = sim.state.cells, sim.state.scalars
    proc = next(p for p in sim.processes if isinstance(p, CellRules))
    for _ in range(6):
        n_rows = c.n
        before = int(np.count_nonzero(c.kind[: c.n] == C.TUMOUR))
        died0, lysed0 = s["tumour_died_total"], s["tumour_lysed_total"]
        sim.step()
        born = int(np.count_nonzero(c.kind[n_rows: c.n] == C.TUMOUR))
        died = s["tumour_died_total"] - died0
        lysed = s["tumour_lysed_total"] - lysed0
        assert s["tumour_lysed_step"] == lysed
        if sim.state.step % 10 != 1:               # rows appended this step are at the end
            assert int(np.count_nonzero(c.kind[: c.n] == C.TUMOUR)) == before + born - died - lysed
        assert np.all(proc._birth_site == -1)       # the scratch is left clean
    assert s["tumour_lysed_total"] > 0 and s["tumour_died_total"] > 0


def test_too_many_movement_passes_is_a_config_error():
    sim = make_sim({"lattice": {"shape": [10, 10]}})
    assert movement_plan(sim.config, sim.state.lattice)[0] <= 62
    fast = sim.config.replace(product=sim.config.product.replace(speed_um_per_min=100.0),
                              run=sim.config.run.replace(dt_min=60.0))
    with pytest.raises(ConfigError, match="run.dt_min"):
        movement_plan(fast, sim.state.lattice)


def test_endothelial_rows_follow_the_layout():
    sim = make_sim({"lattice": {"shape": [20, 20]}}, clear=False)
    c = sim.state.cells
    er = EndothelialRows()
    first = er(c)
    assert np.array_equal(first, np.flatnonzero(c.kind[: c.n] == C.ENDOTHELIAL)) and len(first)
    assert er(c) is first                                   # cached
    sort_by_site(c, np.arange(c.occ.shape[0])[::-1].copy())
    again = er(c)
    assert again is not first
    assert np.array_equal(again, np.flatnonzero(c.kind[: c.n] == C.ENDOTHELIAL))


def test_tumour_fate_probabilities():
    """One uniform per cell: death with p_d, a division attempt with (1 - p_d) p_b."""
    sim = make_sim({"lattice": {"shape": [120, 120], "vessel_fraction": 0.0},
                    "run": {"dt_min": 60.0, "record_every_min": 60.0},
                    "tumour": {"growth_rate_per_day": 5.0, "death_rate_per_day": 2.0}})
    c, lat = sim.state.cells, sim.state.lattice
    sites = np.arange(0, lat.n_sites, 3)                    # sparse: room to divide
    sites = sites[(sites // 120) % 3 == 0]
    c.add(C.TUMOUR, sites, antigen=1e4)
    n0 = len(sites)
    sim.step()
    tp = sim.processes[0].tp
    p_d, p_b = tp[KT.T_P_DEATH], tp[KT.T_P_DIVIDE]
    died = sim.state.scalars["tumour_died_total"]
    born = int(np.count_nonzero(c.kind[: c.n] == C.TUMOUR)) - (n0 - died)
    n = len(sites)
    for count, p in ((died, p_d), (born, (1 - p_d) * p_b)):
        sd = np.sqrt(n * p * (1 - p))
        assert abs(count - n * p) < 4 * sd, (count, n * p)
    assert tp[KT.T_P_FATE] == pytest.approx(p_d + (1 - p_d) * p_b)


def _run_3d(threads: int, par_min: int) -> dict:
    """A small 3D mixed patch (tumour, CAR-T, residents, entry) for a few steps."""
    from abm.kernels.jit import set_threads
    from helpers.cells import MIXED, add_cart, deep_update
    from abm.model.agents import Extravasation

    set_threads(threads)
    old = CellRules.par_min, CellRules.tile_3d, CellRules.check_invariants
    CellRules.par_min, CellRules.tile_3d, CellRules.check_invariants = par_min, 4, True
    try:
        table = deep_update(MIXED, {"lattice": {"shape": [8, 12, 12], "vessel_fraction": 0.05}})
        sim = make_sim(table, seed=5, processes=(Extravasation, CellRules), clear=False)
        c, lat = sim.state.cells, sim.state.lattice
        add_cart(sim, np.flatnonzero((c.occ < 0) & ~lat.vessel)[::4], activation=0.5)
        sim.state.fields[...] = 300.0
        sim.state.scalars.update(blood_cart_cells=3e8)
        for _ in range(12):
            sim.step()
        return cell_snapshot(sim)
    finally:
        CellRules.par_min, CellRules.tile_3d, CellRules.check_invariants = old
        set_threads(None)


def test_3d_patch_same_for_one_and_two_threads():
    assert_same_snapshot(_run_3d(1, 10**9), _run_3d(2, 1))
