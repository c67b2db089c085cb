"""Cell storage as columns (structure of arrays) with an occupancy map.

All agents live in one :class:`CellTable`; kernels receive its flat column
arrays. Rows ``0..n-1`` are in use; a dead cell is marked ``kind = DEAD`` and
its row is reclaimed by :meth:`CellTable.compact`, which keeps the order of
the surviving rows. Every cell has a unique, never reused ``id`` that keys its
random numbers, so results do not depend on row order.

Occupancy: ``occ[site]`` is the row of the tissue cell (tumour, CAR-T,
myeloid) at that site or -1. Endothelial cells line vessel sites and are not
in the occupancy map: a vessel site holds its lining plus at most one tissue
cell, which is how cells enter and leave the patch.
"""

from __future__ import annotations

import itertools

import numpy as np

# Cell kinds (the ``kind`` column) and phenotype codes per kind (the
# ``phenotype`` column), defined in abm.kernels.codes.
from abm.kernels.codes import (CART, CART_EFFECTOR, CART_EXHAUSTED, CART_MEMORY,  # noqa: F401
                               CART_NAIVE, DEAD, ENDOTHELIAL, KIND_NAMES, MYELOID,
                               MYELOID_RECRUITED, MYELOID_RESIDENT, TUMOUR, TUMOUR_ALIVE,
                               TUMOUR_DYING)

#: Column name -> (dtype, fill value, unit, description).
COLUMNS: dict[str, tuple[np.dtype, object, str, str]] = {
    "id": (np.int64, -1, "-", "unique cell id (keys the random streams; never reused)"),
    "kind": (np.int8, DEAD, "-", "cell kind: 0 tumour, 1 CAR-T, 2 myeloid, 3 endothelial, -1 dead"),
    "site": (np.int64, -1, "-", "flat lattice site index"),
    "phenotype": (np.int8, 0, "-", "kind-specific state code (see abm.cells)"),
    "activation": (np.float64, 0.0, "1", "activation level in [0, 1]"),
    "antigen": (np.float64, 0.0, "molecules/cell", "target antigen density (tumour)"),
    "engagements": (np.int32, 0, "-", "engagements since last rest (CAR-T)"),
    "divisions_left": (np.int32, 0, "-", "remaining division potential"),
    "target": (np.int64, -1, "-", "site of the engaged target, -1 if none"),
    "timer": (np.float64, 0.0, "h", "time spent in the current state"),
    "store": (np.float64, 0.0, "1", "releasable store (endothelial Weibel-Palade bodies)"),
    "glycolytic": (np.float64, 0.0, "1", "glycolytic (PI3K/Akt/mTOR) signalling drive in [0, 1] (CAR-T)"),
    "oxidative": (np.float64, 0.0, "1", "oxidative (TRAF/NF-kB, mitochondrial) capacity in [0, 1] (CAR-T)"),
}


#: Alignment of a packed buffer of at least this size: one transparent huge page.
_HUGE_PAGE = 2 << 20
#: Every packed array starts on a cache line.
_LINE = 64


def packed_arrays(specs) -> list[np.ndarray]:
    """Arrays ``(shape, dtype, fill)`` allocated together in one buffer.

    Each array starts on a 64-byte cache line; a buffer of 2 MiB or more is
    aligned to 2 MiB. NumPy asks the kernel for transparent huge pages on
    large allocations (``madvise``), so a big cell table or scratch set is
    backed by a few huge pages instead of thousands of 4 KiB ones, which
    spares the TLB when the agent pass touches rows and sites out of order
    (the arrays behave as ordinary arrays; their ``base`` is the buffer).
    """
    sizes = [int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype, _ in specs]
    padded = [-(-nb // _LINE) * _LINE for nb in sizes]
    total = max(_LINE, sum(padded))
    align = _HUGE_PAGE if total >= _HUGE_PAGE else _LINE
    buf = np.empty(total + align, dtype=np.uint8)
    off = (-buf.ctypes.data) % align
    out = []
    for (shape, dtype, fill), nb, pad in zip(specs, sizes, padded):
        a = buf[off: off + nb].view(dtype).reshape(shape)
        a[...] = fill
        out.append(a)
        off += pad
    return out


#: Source of :attr:`CellTable.layout` values (unique across all tables).
_LAYOUTS = itertools.count(1)


class CellTable:
    """Columns of all agents, with capacity growth, compaction and occupancy.

    Args:
        n_sites: number of lattice sites (size of the occupancy map).
        capacity: initial number of rows allocated.
    """

    def __init__(self, n_sites: int, capacity: int = 1024):
        self.n = 0
        self.next_id = 0
        #: Changes (to a value no table has had) whenever rows may have moved:
        #: :meth:`rebuild_occupancy`, which :meth:`compact`, :meth:`load_columns`
        #: and the table sort call. Between two changes rows are only appended
        #: and a row's kind only changes to dead, so row lists built from the
        #: table stay valid while ``layout`` is unchanged.
        self.layout = next(_LAYOUTS)
        self.capacity = max(16, int(capacity))
        self._allocate(self.capacity)
        (self.occ,) = packed_arrays([((n_sites,), np.int64, -1)])

    # -- capacity -------------------------------------------------------------
    def ensure_capacity(self, extra: int) -> None:
        """Grow (doubling) so that ``extra`` more rows fit after row ``n``."""
        need = self.n + int(extra)
        if need <= self.capacity:
            return
        new_cap = self.capacity
        while new_cap < need:
            new_cap *= 2
        old = {name: getattr(self, name) for name in COLUMNS}
        self._allocate(new_cap)
        for name, col in old.items():
            getattr(self, name)[: self.n] = col[: self.n]
        self.capacity = new_cap

    def _allocate(self, capacity: int) -> None:
        """Fresh columns of ``capacity`` rows (filled), packed together (:func:`packed_arrays`)."""
        cols = packed_arrays([((capacity,), dtype, fill) for dtype, fill, _, _ in COLUMNS.values()])
        for name, col in zip(COLUMNS, cols):
            setattr(self, name, col)

    def add(self, kind: int, sites: np.ndarray, **values) -> np.ndarray:
        """Append cells of one kind at ``sites``; returns their row indices.

        Tissue cells (not endothelial) are entered in the occupancy map; their
        sites must be free. Other columns take ``values`` (scalars or arrays).
        """
        sites = np.asarray(sites, dtype=np.int64)
        k = len(sites)
        self.ensure_capacity(k)
        rows = np.arange(self.n, self.n + k, dtype=np.int64)
        if kind != ENDOTHELIAL:
            if np.any(self.occ[sites] >= 0) or len(np.unique(sites)) != k:
                raise ValueError("CellTable.add: a target site is already occupied")
            self.occ[sites] = rows
        self.id[rows] = np.arange(self.next_id, self.next_id + k, dtype=np.int64)
        self.kind[rows] = kind
        self.site[rows] = sites
        for name, v in values.items():
            getattr(self, name)[rows] = v
        self.n += k
        self.next_id += k
        return rows

    def remove(self, rows: np.ndarray) -> None:
        """Mark rows dead and free their sites (rows are reclaimed by :meth:`compact`)."""
        rows = np.asarray(rows, dtype=np.int64)
        tissue = rows[self.kind[rows] != ENDOTHELIAL]
        self.occ[self.site[tissue]] = -1
        self.kind[rows] = DEAD
        self.site[rows] = -1

    def compact(self) -> None:
        """Drop dead rows, keeping the order of live ones; rebuild occupancy."""
        live = np.flatnonzero(self.kind[: self.n] != DEAD)
        m = len(live)
        for name, (dtype, fill, _, _) in COLUMNS.items():
            col = getattr(self, name)
            col[:m] = col[live]
            col[m: self.n] = fill
        self.n = m
        self.rebuild_occupancy()

    def rebuild_occupancy(self) -> None:
        """Recompute ``occ`` from the table (and mark the row layout as changed)."""
        self.layout = next(_LAYOUTS)
        self.occ[:] = -1
        rows = np.flatnonzero((self.kind[: self.n] != DEAD) & (self.kind[: self.n] != ENDOTHELIAL))
        self.occ[self.site[rows]] = rows

    # -- queries -------------------------------------------------------------
    def rows_of(self, kind: int) -> np.ndarray:
        return np.flatnonzero(self.kind[: self.n] == kind)

    def count(self, kind: int, phenotype: int | None = None) -> int:
        mask = self.kind[: self.n] == kind
        if phenotype is not None:
            mask &= self.phenotype[: self.n] == phenotype
        return int(np.count_nonzero(mask))

    def columns(self) -> dict[str, np.ndarray]:
        """Views of the used part of every column."""
        return {name: getattr(self, name)[: self.n] for name in COLUMNS}

    def load_columns(self, cols: dict[str, np.ndarray], next_id: int) -> None:
        """Replace the contents with ``cols`` (e.g. from a checkpoint)."""
        n = len(cols["id"])
        self.n = 0
        self.ensure_capacity(n)
        for name, (dtype, fill, _, _) in COLUMNS.items():
            col = getattr(self, name)
            col[:] = fill
            col[:n] = np.asarray(cols[name], dtype=dtype)
        self.n = n
        self.next_id = int(next_id)
        self.rebuild_occupancy()

    #: When True, the agent processes call :meth:`check_invariants` after every
    #: step (tests switch it on; it costs a few NumPy passes over the table).
    check_each_step = False

    def check_invariants(self, lattice=None) -> None:
        """Raise AssertionError unless the table is consistent.

        Always: occupancy and table agree (one tissue cell per site), ids are
        unique, no site is left reserved, kinds and phenotype codes are valid,
        activation and store lie in [0, 1], counters are non-negative.
        With ``lattice``: endothelial cells line exactly the vessel sites (one
        each), tumour cells are off vessel sites, and an engaged CAR-T cell's
        target is a neighbour of its site.
        """
        n = self.n
        kind = self.kind[:n]
        assert np.all(np.isin(kind, (DEAD, TUMOUR, CART, MYELOID, ENDOTHELIAL))), "unknown kind"
        assert not np.any(self.occ < -1), "a site is still reserved after the step"
        live = kind != DEAD
        ph = self.phenotype[:n]
        max_code = {TUMOUR: TUMOUR_DYING, CART: CART_EXHAUSTED, MYELOID: MYELOID_RECRUITED,
                    ENDOTHELIAL: 0}
        for k, top in max_code.items():
            m = kind == k
            assert np.all((ph[m] >= 0) & (ph[m] <= top)), f"bad phenotype code for kind {k}"
        act = self.activation[:n][live]
        assert np.all((act >= 0.0) & (act <= 1.0)), "activation outside [0, 1]"
        st = self.store[:n][live]
        assert np.all((st >= 0.0) & (st <= 1.0)), "store outside [0, 1]"
        for name in ("glycolytic", "oxidative"):
            x = getattr(self, name)[:n][live]
            assert np.all((x >= 0.0) & (x <= 1.0)), f"{name} outside [0, 1]"
        assert np.all(self.engagements[:n][live] >= 0), "negative engagement count"
        assert np.all(self.divisions_left[:n][live] >= 0), "negative division potential"
        tissue = np.flatnonzero((kind != DEAD) & (kind != ENDOTHELIAL))
        sites = self.site[tissue]
        assert np.all(sites >= 0), "a live tissue cell has no site"
        assert len(np.unique(sites)) == len(sites), "two tissue cells share a site"
        assert np.array_equal(self.occ[sites], tissue), "occupancy does not point at its cell"
        assert np.count_nonzero(self.occ >= 0) == len(tissue), "occupancy holds stale entries"
        ids = self.id[np.flatnonzero(kind != DEAD)]
        assert len(np.unique(ids)) == len(ids), "duplicate cell ids"
        assert np.all(ids < self.next_id), "cell id beyond next_id"
        if lattice is None:
            return
        endo = np.flatnonzero(kind == ENDOTHELIAL)
        assert np.array_equal(np.sort(self.site[endo]), lattice.vessel_sites), \
            "endothelial cells do not line exactly the vessel sites"
        tum = np.flatnonzero(kind == TUMOUR)
        assert not np.any(lattice.vessel[self.site[tum]]), "a tumour cell sits on a vessel site"
        cart = np.flatnonzero((kind == CART) & (self.target[:n] >= 0))
        if len(cart):
            nb = lattice.neighbours[self.site[cart]]
            assert np.all((nb == self.target[cart][:, None]).any(axis=1)), \
                "an engaged CAR-T cell is not next to its target"
