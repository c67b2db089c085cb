"""Property tests of :class:`abm.cells.CellTable`: random add / remove / compact sequences.

A plain-Python model (cell id -> its column values) follows the table; after
every operation the table must agree with it: live rows keep their ids and
columns, ids are unique and never reused, compaction drops exactly the dead
rows and keeps the order of the others, the occupancy map points each occupied
site at its tissue cell's row and every other site is FREE, counts per kind match.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from abm.cells import (CART, CART_EXHAUSTED, COLUMNS, DEAD, ENDOTHELIAL, MYELOID,
                       MYELOID_RECRUITED, TUMOUR, TUMOUR_DYING, CellTable)
from abm.kernels.cells_common import FREE

N_SITES = 40
KINDS = (TUMOUR, CART, MYELOID, ENDOTHELIAL)
TOP_PHENOTYPE = {TUMOUR: TUMOUR_DYING, CART: CART_EXHAUSTED, MYELOID: MYELOID_RECRUITED,
                 ENDOTHELIAL: 0}
#: Columns the caller sets through ``add(**values)`` (id, kind, site are the table's).
VALUE_COLUMNS = [c for c in COLUMNS if c not in ("id", "kind", "site")]

unit = st.floats(0.0, 1.0)
finite = st.floats(-1e6, 1e6)
COLUMN_VALUES = {
    "activation": unit,
    "antigen": finite,
    "engagements": st.integers(0, 2**31 - 1),
    "divisions_left": st.integers(0, 2**31 - 1),
    "target": st.integers(-1, N_SITES - 1),
    "timer": finite,
    "store": unit,
    "glycolytic": unit,
    "oxidative": unit,
}
assert set(COLUMN_VALUES) | {"phenotype"} == set(VALUE_COLUMNS)


def is_tissue(kind: int) -> bool:
    return kind != ENDOTHELIAL


class CellTableMachine(RuleBasedStateMachine):
    """Drives one small table (it must grow: 16 rows at first) against a model."""

    def __init__(self):
        super().__init__()
        self.table = CellTable(N_SITES, capacity=16)
        self.model: dict[int, dict] = {}       # live cell id -> kind, site, column values
        self.issued: set[int] = set()          # every id the table has handed out
        self.compacted = False

    # -- operations -------------------------------------------------------------
    @rule(data=st.data(), kind=st.sampled_from(KINDS), k=st.integers(0, 6))
    def add(self, data, kind, k):
        if is_tissue(kind):
            taken = {c["site"] for c in self.model.values() if is_tissue(c["kind"])}
            free = [s for s in range(N_SITES) if s not in taken]
            k = min(k, len(free))
            sites = data.draw(st.lists(st.sampled_from(free), min_size=k, max_size=k,
                                       unique=True)) if k else []
        else:   # endothelial cells line sites without taking them
            sites = data.draw(st.lists(st.integers(0, N_SITES - 1), min_size=k, max_size=k,
                                       unique=True))
        values = {name: data.draw(st.lists(strat, min_size=k, max_size=k))
                  for name, strat in COLUMN_VALUES.items()}
        values["phenotype"] = data.draw(st.lists(st.integers(0, TOP_PHENOTYPE[kind]),
                                                 min_size=k, max_size=k))
        id_floor = self.table.next_id
        rows = self.table.add(kind, np.array(sites, dtype=np.int64),
                              **{n: np.array(v, dtype=COLUMNS[n][0]) for n, v in values.items()})
        assert len(rows) == k
        for j, row in enumerate(rows):
            cid = int(self.table.id[row])
            assert cid >= id_floor and cid not in self.issued, "an id was handed out twice"
            self.issued.add(cid)
            self.model[cid] = {"kind": kind, "site": sites[j],
                               **{n: v[j] for n, v in values.items()}}
        self.compacted = False

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove(self, data):
        live = np.flatnonzero(self.table.kind[: self.table.n] != DEAD)
        rows = data.draw(st.lists(st.sampled_from(list(live)), min_size=1, unique=True))
        gone = [int(self.table.id[r]) for r in rows]
        self.table.remove(np.array(rows, dtype=np.int64))
        for cid in gone:
            del self.model[cid]
        self.compacted = False

    @rule()
    def compact(self):
        before = self.table.n
        self.table.compact()
        assert self.table.n == len(self.model) <= before
        self.compacted = True

    # -- invariants ---------------------------------------------------------------
    @invariant()
    def rows_match_the_model(self):
        t = self.table
        kind = t.kind[: t.n]
        live = np.flatnonzero(kind != DEAD)
        ids = t.id[live]
        assert len(np.unique(ids)) == len(ids), "duplicate ids"
        assert np.all(np.diff(ids) > 0), "live rows are out of their order of addition"
        assert set(ids.tolist()) == set(self.model), "live ids differ from the model"
        assert t.next_id == len(self.issued), "next_id is not the number of ids handed out"
        for row in live:
            cell = self.model[int(t.id[row])]
            assert t.kind[row] == cell["kind"] and t.site[row] == cell["site"]
            for name in VALUE_COLUMNS:
                expected = np.asarray(cell[name], dtype=COLUMNS[name][0])
                assert getattr(t, name)[row] == expected, name
        dead = np.flatnonzero(kind == DEAD)
        assert np.all(t.site[dead] == -1), "a dead row keeps its site"
        assert np.all(t.kind[t.n: t.capacity] == DEAD), "a row beyond n is in use"

    @invariant()
    def compaction_leaves_no_dead_rows(self):
        if self.compacted:
            assert np.all(self.table.kind[: self.table.n] != DEAD), "a dead row survived compact"

    @invariant()
    def occupancy_points_at_each_tissue_cell(self):
        t = self.table
        expected = np.full(N_SITES, FREE, dtype=np.int64)
        for row in range(t.n):
            if t.kind[row] != DEAD and is_tissue(int(t.kind[row])):
                assert expected[t.site[row]] == FREE, "two tissue cells on one site"
                expected[t.site[row]] = row
        assert np.array_equal(t.occ, expected)

    @invariant()
    def counts_per_kind_match(self):
        for kind in KINDS:
            assert self.table.count(kind) == sum(c["kind"] == kind for c in self.model.values())
            for ph in range(TOP_PHENOTYPE[kind] + 1):
                assert self.table.count(kind, ph) == sum(
                    c["kind"] == kind and c["phenotype"] == ph for c in self.model.values())

    @invariant()
    def table_checks_its_own_invariants(self):
        self.table.check_invariants()


TestCellTable = CellTableMachine.TestCase
