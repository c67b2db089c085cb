"""Shared pieces of the cell-rule kernels.

* Keyed random numbers: :func:`stream_key` hashes ``(seed, stream, step)``
  once per kernel call; :func:`uniform` / :func:`normal` then finish the chain
  with ``(cell id, draw)``. The numbers are bit-identical to
  :func:`abm.kernels.rng.uniform` / :func:`abm.kernels.rng.normal` with the
  same five keys (tested); splitting the chain only saves three of the five
  mixing rounds per draw.
* :func:`event_prob`: the per-step event rule ``p = 1 - exp(-rate dt)``;
  :func:`fires` draws and decides such an event, skipping ``expm1`` when the
  uniform already exceeds ``rate dt`` (same decision, bit for bit).
* :func:`hill`: ``x^n / (x^n + K^n)``.
* Sublattice colouring: sites are coloured ``(z mod 3, y mod 3, x mod 3)``
  (9 colours in 2D, 27 in 3D). Two sites of one colour are at least 3 sites
  apart along some axis, so the closed Moore (or von Neumann) neighbourhoods
  of two cells of one colour never overlap: cells of one colour can be
  updated in any order or in parallel, each reading and writing only its own
  neighbourhood, with the same result. For memory locality the lattice is
  also cut into tiles (:func:`tile_layout`) with a 2 x 2 (x 2) tile colouring:
  same-coloured tiles run in parallel, and inside a tile the site colours run
  one after the other, so a tile's data stays in cache. Tile colours and
  site colours are visited in orders drawn per step and pass from stream
  ``COLOUR_ORDER``.
* :func:`pick_free`: uniform choice of a free neighbour site.
* :func:`site_sort_permutation`: the counting sort that keeps the cell table
  in blocks by kind, each in tile-major site order; :func:`permute_column`
  applies it to a column.
* :func:`prefetch` / :func:`prefetch2`: cache hints (``llvm.prefetch``) with
  which the agent pass requests the site data of cells a few places ahead in
  its visiting order; memory latency, not arithmetic, bounds the update of
  sparse CAR-T and myeloid cells on large lattices. They never change a
  result and are no-ops with the JIT off.

Kernel modules import numpy, numba, math and the other kernels only; the cell
kind and phenotype codes, the field species rows and the event flags come from
:mod:`abm.kernels.codes` (the one place they are defined) as plain ``int``
compile-time constants and are re-exported here.
"""

from __future__ import annotations

import math

import numpy as np

from abm.kernels import rng as _rng
from abm.kernels import streams
# The cell kind and phenotype codes, field species rows, occupancy markers and
# event flags, re-exported for the cell kernels (defined in abm.kernels.codes).
from abm.kernels.codes import (  # noqa: F401
    CART, CART_EFFECTOR, CART_EXHAUSTED, CART_MEMORY, CART_NAIVE, DEAD, ENDOTHELIAL, EV_ARRESTED,
    EV_CART_DIED, EV_EGRESS, EV_ENGAGED, EV_EXHAUSTED, EV_KILL, EV_LYSED, EV_MYELOID_DIED,
    EV_TUMOUR_DIED, F_ANG2, F_DAMAGE, F_GMCSF, F_IFNG, F_IL1, F_IL6, F_IL7_15, FREE, MYELOID,
    MYELOID_RECRUITED, MYELOID_RESIDENT, N_FIELDS, RESERVED, TUMOUR, TUMOUR_ALIVE, TUMOUR_DYING)
from abm.kernels.jit import JIT_DISABLED, jit

# --------------------------------------------------------------------------
# cache hints (llvm.prefetch; no effect on any value)
# --------------------------------------------------------------------------

if JIT_DISABLED:

    def prefetch(arr, i):
        """Hint that ``arr[i]`` will be read soon (no-op without the JIT)."""

    def prefetch2(arr, i, j):
        """Hint that ``arr[i, j]`` will be read soon (no-op without the JIT)."""

else:
    from llvmlite import ir as _llir
    from numba import types as _nbtypes
    from numba.core import cgutils as _cgutils
    from numba.extending import intrinsic as _intrinsic

    def _prefetch_codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = _cgutils.get_item_pointer(context, builder, aryty, ary, list(args[1:]),
                                        wraparound=False)
        i8p = _llir.IntType(8).as_pointer()
        i32 = _llir.IntType(32)
        fnty = _llir.FunctionType(_llir.VoidType(), [i8p, i32, i32, i32])
        fn = _cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    @_intrinsic
    def prefetch(typingctx, arr, i):
        """Hint that ``arr[i]`` (1-D) will be read soon: ``llvm.prefetch``; no effect on results.

        No bounds check (a prefetch never faults), no array view, no reference counting.
        """
        if not (isinstance(arr, _nbtypes.Array) and arr.ndim == 1
                and isinstance(i, _nbtypes.Integer)):
            return None
        return _nbtypes.void(arr, i), _prefetch_codegen

    @_intrinsic
    def prefetch2(typingctx, arr, i, j):
        """Hint that ``arr[i, j]`` (2-D) will be read soon; see :func:`prefetch`."""
        if not (isinstance(arr, _nbtypes.Array) and arr.ndim == 2
                and isinstance(i, _nbtypes.Integer) and isinstance(j, _nbtypes.Integer)):
            return None
        return _nbtypes.void(arr, i, j), _prefetch_codegen


# --------------------------------------------------------------------------
# keyed random numbers (bit-identical to abm.kernels.rng)
# --------------------------------------------------------------------------

_MASK = _rng._MASK
_M = _rng._KEY_MUL
_A = _rng._KEY_ADD

if JIT_DISABLED:

    def stream_key(seed, stream, step):
        """Hash of ``(seed, stream, step)``: the first three rounds of the rng chain."""
        h = _rng._mix((int(seed) * _M[0] + _A[0]) & _MASK)
        h = _rng._mix(h ^ ((int(stream) * _M[1] + _A[1]) & _MASK))
        return _rng._mix(h ^ ((int(step) * _M[2] + _A[2]) & _MASK))

    def slot_word(key, cell, draw):
        """The base word of slot ``(cell, draw)`` under ``key`` (last two rounds)."""
        h = _rng._mix(key ^ ((int(cell) * _M[3] + _A[3]) & _MASK))
        return _rng._mix(h ^ ((int(draw) * _M[4] + _A[4]) & _MASK))

else:
    _U_M0, _U_M1, _U_M2, _U_M3, _U_M4 = (np.uint64(m) for m in _M[:5])
    _U_A0, _U_A1, _U_A2, _U_A3, _U_A4 = (np.uint64(a) for a in _A[:5])

    @jit
    def stream_key(seed, stream, step):
        """Hash of ``(seed, stream, step)``: the first three rounds of the rng chain."""
        h = _rng._mix(np.uint64(seed) * _U_M0 + _U_A0)
        h = _rng._mix(h ^ (np.uint64(stream) * _U_M1 + _U_A1))
        return _rng._mix(h ^ (np.uint64(step) * _U_M2 + _U_A2))

    @jit
    def slot_word(key, cell, draw):
        """The base word of slot ``(cell, draw)`` under ``key`` (last two rounds)."""
        h = _rng._mix(key ^ (np.uint64(cell) * _U_M3 + _U_A3))
        return _rng._mix(h ^ (np.uint64(draw) * _U_M4 + _U_A4))


@jit
def uniform(key, cell, draw):
    """Uniform [0, 1) equal to ``rng.uniform(seed, stream, step, cell, draw)``."""
    return _rng._unit(slot_word(key, cell, draw))


@jit
def normal(key, cell, draw):
    """Standard normal equal to ``rng.normal(seed, stream, step, cell, draw)``."""
    w = slot_word(key, cell, draw)
    u1 = _rng._unit_open(_rng._sub(w, 0))
    u2 = _rng._unit(_rng._sub(w, 1))
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_rng._TWO_PI * u2)


@jit
def event_prob(rate_per_s, dt_s):
    """Probability ``1 - exp(-rate dt)`` that an event of rate ``rate_per_s`` fires in a step."""
    x = rate_per_s * dt_s
    if x > 0.0:
        return -math.expm1(-x)
    return 0.0


@jit
def fires(key, cell, draw, rate_per_s, dt_s):
    """Whether an event of rate ``rate_per_s`` fires this step: ``uniform(key, cell, draw) < event_prob``.

    Same decision as drawing the uniform and comparing it with
    :func:`event_prob`, but cheaper: nothing is drawn when ``rate dt <= 0``
    (probability 0), and ``expm1`` is skipped when ``u >= rate dt``, since
    ``1 - exp(-x) <= x`` also holds after rounding (the rounded ``-expm1(-x)``
    never exceeds the float ``x``), so the event cannot fire.
    """
    x = rate_per_s * dt_s
    if not (x > 0.0):
        return False
    u = uniform(key, cell, draw)
    if u >= x:
        return False
    return u < -math.expm1(-x)


@jit
def hill(x, k, n):
    """Hill term ``x^n / (x^n + k^n)`` for ``x >= 0`` (0 for ``x <= 0``).

    Computed as ``r / (1 + r)`` with ``r = (x / k)^n``; ``n`` of 1 and 2 use
    plain products, other exponents ``exp(n log(x / k))`` (same bits with the
    JIT on and off).
    """
    if not (x > 0.0):
        return 0.0
    r = x / k
    if n == 1.0:
        pass
    elif n == 2.0:
        r = r * r
    else:
        r = math.exp(n * math.log(r))
    return r / (1.0 + r)


@jit
def relax(x, target, f_up, f_down):
    """Exact exponential relaxation of ``x`` toward ``target`` over one step.

    ``f_up = exp(-k_up dt)`` is used when ``target > x`` (rising), ``f_down``
    otherwise: ``x' = target + (x - target) f``.
    """
    f = f_up if target > x else f_down
    return target + (x - target) * f


# --------------------------------------------------------------------------
# neighbourhoods and colouring
# --------------------------------------------------------------------------


def site_colours(zyx_shape) -> np.ndarray:
    """Colour of every site, ``(z % 3) * 9 + (y % 3) * 3 + x % 3`` (int64)."""
    nz, ny, nx = zyx_shape
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    return ((z % 3) * 9 + (y % 3) * 3 + (x % 3)).ravel().astype(np.int64)


def n_colours(zyx_shape) -> int:
    """Number of site colour classes: 9 for a 2D lattice, 27 for 3D."""
    return 9 if zyx_shape[0] == 1 else 27


def tile_layout(zyx_shape, tile: int):
    """Tiles of ``tile`` sites per axis, coloured so that same-coloured tiles never touch.

    Tiles get colour ``(tz % 2) * 4 + (ty % 2) * 2 + tx % 2`` (4 colours in 2D,
    8 in 3D): two tiles of one colour are separated by a whole tile, so with
    ``tile >= 2`` the closed neighbourhoods of cells in different same-colour
    tiles never overlap and those tiles can be updated in parallel.

    Returns:
        key: int64 per site, ``tile_position * n_colours + site_colour``, where
            tiles are numbered by (tile colour, tile index); sorting cells by
            key groups them by tile, then by site colour class.
        tile_start: int64 ``(n_tile_colours + 1,)``: tiles of colour ``k`` hold
            positions ``tile_start[k]:tile_start[k + 1]``.
        n_keys: number of keys (tiles x site colours).
        rank: int64 per site, its position in tile-major order (tiles by
            position, row-major inside a tile), the order of the table sort.
    """
    nz, ny, nx = zyx_shape
    tz = tile if nz > 1 else 1
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    z, y, x = z.ravel(), y.ravel(), x.ravel()
    ntz, nty, ntx = -(-nz // tz), -(-ny // tile), -(-nx // tile)
    cz, cy, cx = z // tz, y // tile, x // tile
    tile_of_site = (cz * nty + cy) * ntx + cx
    tz_, ty_, tx_ = np.meshgrid(np.arange(ntz), np.arange(nty), np.arange(ntx), indexing="ij")
    tile_colour = ((tz_ % 2) * 4 + (ty_ % 2) * 2 + (tx_ % 2)).ravel()
    n_tc = 4 if nz == 1 else 8
    order = np.lexsort((np.arange(tile_colour.size), tile_colour))
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    tile_start = np.zeros(n_tc + 1, dtype=np.int64)
    np.cumsum(np.bincount(tile_colour, minlength=n_tc), out=tile_start[1:])
    nc = n_colours(zyx_shape)
    pos = position[tile_of_site]
    key = (pos * nc + site_colours(zyx_shape)).astype(np.int64)
    sites = np.arange(nz * ny * nx)
    rank = np.empty(sites.size, dtype=np.int64)
    rank[np.lexsort((sites, pos))] = sites
    return key, tile_start, int(order.size * nc), rank


@jit
def colour_order(seed, step, pass_id, out):
    """Fill ``out`` with a random permutation of ``0..len(out)-1`` (Fisher-Yates).

    Draws come from stream ``COLOUR_ORDER`` keyed by ``(step, cell=pass_id,
    draw=i)``, so every pass of every step has its own order.
    """
    n = out.shape[0]
    key = stream_key(seed, streams.COLOUR_ORDER, step)
    for i in range(n):
        out[i] = i
    for i in range(n - 1, 0, -1):
        j = int(uniform(key, pass_id, i) * (i + 1))
        t = out[i]
        out[i] = out[j]
        out[j] = t


@jit(inline="always")
def write_cursors(start):
    """Counting sort, middle step: turn the counts in ``start[1:]`` into class starts.

    ``start[k + 1]`` holds the size of class ``k`` (``start[0] == 0``); after
    the call ``start[k]`` is where class ``k`` begins. Returns a copy of the
    starts, the write cursors of the scatter pass.
    """
    nk = start.shape[0] - 1
    for c in range(nk):
        start[c + 1] += start[c]
    return start[:nk].copy()


#: Kinds updated by the agent pass, in the order they are visited inside a
#: colour class (their codes are 0, 1, 2: the class of a cell is
#: ``3 * key[site] + kind``).
N_UPDATED_KINDS = 3


@jit
def static_classes(n, kind, site, key, sstart, srows, smotile):
    """Group the tumour rows ``< n`` by site key and list the CAR-T and myeloid rows.

    Tumour cells never move: once grouped, a tumour row stays in its class
    until the table's rows move (:attr:`abm.cells.CellTable.layout`); it can
    only die. The agent pass therefore groups them once per table layout
    (stable counting sort) and regroups only the other cells every step
    (:func:`dynamic_classes`).

    Args:
        n: rows in use.
        kind, site: cell columns.
        key: key of every site (:func:`tile_layout`: tile, then site colour).
        sstart: int64 ``(n_keys + 1,)`` output; key ``k`` holds
            ``srows[sstart[k]:sstart[k + 1]]``.
        srows: int64 output of length >= n.
        smotile: int64 output of length >= n: the CAR-T and myeloid rows in
            row order.

    Returns:
        the number of rows written to ``smotile``.
    """
    sstart[:] = 0
    m = 0
    for r in range(n):
        k = kind[r]
        if k == TUMOUR:
            sstart[key[site[r]] + 1] += 1
        elif k == CART or k == MYELOID:
            smotile[m] = r
            m += 1
    cursor = write_cursors(sstart)
    for r in range(n):
        if kind[r] == TUMOUR:
            c = key[site[r]]
            srows[cursor[c]] = r
            cursor[c] += 1
    return m


#: How far ahead :func:`dynamic_classes` requests a row's site key.
_KEY_PF = 16


@jit
def dynamic_classes(smotile, n_static, n, kind, site, key, start, rows, kbuf, motile):
    """Group the cells that :func:`static_classes` did not by site key and kind.

    These are the CAR-T and myeloid rows of ``smotile`` still alive and every
    live tumour, CAR-T or myeloid row from ``n_static`` (rows appended since
    the static grouping) to ``n``. Cell ``r`` goes to class ``3 key[site[r]] +
    kind[r]``: inside one site colour class of one tile the tumour cells come
    first, then the CAR-T cells, then the myeloid cells. Cells of one colour
    class never share a neighbour, so the order inside it changes no result;
    grouping by kind lets the agent pass run one rule per loop (no
    unpredictable branch on the kind of the next cell).

    Args:
        start: int64 ``(3 n_keys + 1,)`` output; class ``k`` holds
            ``rows[start[k]:start[k + 1]]``.
        rows: int64 output.
        kbuf: int32 scratch (each candidate's class).
        motile: int64 output: the live CAR-T and myeloid rows, in row order.

    Returns:
        the number of rows written to ``motile``.
    """
    start[:] = 0
    m = 0
    ns = smotile.shape[0]
    for i in range(ns):
        if i + _KEY_PF < ns:  # the site key of a row a few places ahead (a cache hint)
            q = site[smotile[i + _KEY_PF]]
            if q >= 0:
                prefetch(key, q)
        r = smotile[i]
        k = kind[r]
        if k == CART or k == MYELOID:
            c = key[site[r]] * N_UPDATED_KINDS + k
            motile[m] = r
            kbuf[m] = c
            start[c + 1] += 1
            m += 1
    for r in range(n_static, n):
        k = kind[r]
        if k >= 0 and k < N_UPDATED_KINDS:
            c = key[site[r]] * N_UPDATED_KINDS + k
            motile[m] = r
            kbuf[m] = c
            start[c + 1] += 1
            m += 1
    cursor = write_cursors(start)
    mm = 0
    for i in range(m):
        c = kbuf[i]
        r = motile[i]
        rows[cursor[c]] = r
        cursor[c] += 1
        if c % N_UPDATED_KINDS != TUMOUR:
            motile[mm] = r
            mm += 1
    return mm


if JIT_DISABLED:

    def trailing_zeros(m):
        """Index of the lowest set bit of ``m > 0``."""
        m = int(m)
        return (m & -m).bit_length() - 1

else:
    from numba.cpython.unsafe.numbers import trailing_zeros


@jit(inline="always")
def nth_set_bit(mask, pick):
    """Index of the ``pick``-th (from 0) lowest set bit of ``mask`` (which has more than ``pick``)."""
    for _ in range(pick):
        mask &= mask - 1
    return trailing_zeros(mask)


@jit(inline="always")
def pick_free(s, neighbours, occ, vessel, allow_vessel, u):
    """A free neighbour of site ``s`` chosen uniformly with the uniform ``u``, or -1.

    Free means inside the lattice and ``occ == FREE``; vessel sites count only
    when ``allow_vessel``. The ``count`` free neighbours are taken in
    neighbour-table order and the ``int(u count)``-th is returned. One pass
    over the neighbourhood builds a bit mask of the free ones (non-short-
    circuit ``&``, so the loop has no data-dependent branch; an outside
    neighbour ``-1`` reads ``occ[-1]``, a valid element, and is masked off).
    """
    kmax = neighbours.shape[1]
    mask = 0
    count = 0
    for k in range(kmax):
        t = neighbours[s, k]
        ok = (t >= 0) & (occ[t] == FREE)
        if not allow_vessel:
            ok = ok & (not vessel[t])
        mask |= np.int64(ok) << k
        count += np.int64(ok)
    if count == 0:
        return -1
    return neighbours[s, nth_set_bit(mask, int(u * count))]


# --------------------------------------------------------------------------
# housekeeping
# --------------------------------------------------------------------------


#: Block of each kind in the sorted table (endothelial, tumour, CAR-T, myeloid).
_SORT_GROUP = np.array([1, 2, 3, 0], dtype=np.int64)  # indexed by kind 0..3
N_SORT_GROUPS = 4


@jit
def site_sort_permutation(n, kind, site, rank):
    """Rows of live cells ordered by kind block, then ``rank[site]``, stable.

    Blocks: endothelial, tumour, CAR-T, myeloid. Inside a block cells follow
    ``rank`` (a permutation of the sites, e.g. tile-major order from
    :func:`tile_layout`), so the cells of one tile sit together; keeping each
    kind in its own block packs the columns that only CAR-T and myeloid
    cells use into whole cache lines. Dead rows are dropped. Rows of one kind
    keep their relative order whatever the blocks, so sums over the rows of
    one kind (the agent tallies) do not depend on the blocking.
    """
    n_sites = rank.shape[0]
    counts = np.zeros(n_sites + 1, dtype=np.int64)
    live = 0
    for r in range(n):
        if kind[r] != DEAD:
            counts[rank[site[r]] + 1] += 1
            live += 1
    for i in range(n_sites):
        counts[i + 1] += counts[i]
    by_rank = np.empty(live, dtype=np.int64)
    for r in range(n):
        if kind[r] != DEAD:
            q = rank[site[r]]
            by_rank[counts[q]] = r
            counts[q] += 1
    # stable partition into kind blocks
    block = np.zeros(N_SORT_GROUPS + 1, dtype=np.int64)
    for i in range(live):
        block[_SORT_GROUP[kind[by_rank[i]]] + 1] += 1
    for g in range(N_SORT_GROUPS):
        block[g + 1] += block[g]
    perm = np.empty(live, dtype=np.int64)
    for i in range(live):
        r = by_rank[i]
        g = _SORT_GROUP[kind[r]]
        perm[block[g]] = r
        block[g] += 1
    return perm


@jit
def permute_column(col, perm, n, fill):
    """``col[:m] = col[perm]`` (``m = len(perm)``) and ``col[m:n] = fill``: one column of a table sort."""
    m = perm.shape[0]
    tmp = np.empty(m, dtype=col.dtype)
    for i in range(m):
        tmp[i] = col[perm[i]]
    for i in range(m):
        col[i] = tmp[i]
    for i in range(m, n):
        col[i] = fill


__all__ = [
    "stream_key", "slot_word", "uniform", "normal", "event_prob", "fires", "prefetch", "prefetch2", "hill", "relax",
    "site_colours", "n_colours", "tile_layout", "colour_order", "static_classes", "dynamic_classes",
    "N_UPDATED_KINDS",
    "write_cursors", "pick_free",
    "nth_set_bit", "trailing_zeros",
    "site_sort_permutation", "permute_column",
]
