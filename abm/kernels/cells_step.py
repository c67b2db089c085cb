"""The agent phase: every endothelial, tumour, CAR-T and myeloid cell once per step.

Scheme (thread-count and schedule independent):

1. cells are grouped by the key of their site
   (:func:`abm.kernels.cells_common.tile_layout`): by tile, then by site
   colour class. Tumour cells, which never move, are grouped once per table
   layout (:func:`abm.kernels.cells_common.static_classes`); the others and
   the rows appended since then are grouped every step, by key and kind
   (:func:`abm.kernels.cells_common.dynamic_classes`);
2. tile colours and site colours are visited in orders drawn per step
   (:func:`abm.kernels.cells_common.colour_order`);
3. the tiles of one tile colour run in a ``prange``; inside a tile the site
   colour classes run one after the other. Cells of one site class are at
   least 3 sites apart, and same-coloured tiles are a whole tile apart, so
   two cells updated "at the same time" never share a neighbour: each reads
   and writes only its own closed neighbourhood (occupancy, neighbour cells,
   sources and uptake at its own site, its own scratch slots). The order of
   cells within a class therefore does not matter, and no two threads touch
   the same memory;
4. births only reserve the daughter's site (``occ = RESERVED``); daughters are
   appended serially afterwards, in order of parent id
   (:func:`append_births`), so ids do not depend on row order;
5. float tallies are written per row and summed serially in row order
   (:func:`tally`): no floating-point reduction across threads.

Movement runs as separate passes with the same scheme: a free cell hops to a
uniformly chosen free neighbour with a fixed probability per pass (CAR-T
cells that are engaged or arrested on antigen contact stay). Whether a cell
attempts a hop in each pass is decided for all passes right after its update
(:func:`_hop_mask`); each pass then groups and visits only the cells that
attempt one.

Everything runs in one compiled call per step (:func:`agent_step`), so a
small patch pays no per-pass Python or thread start-up cost; a step with
fewer than ``par_min`` cells runs serially (same result).
"""

from __future__ import annotations

import types

import numba
import numpy as np
from numba import prange

from abm.kernels import streams
from abm.kernels.cells_cart import cart_prefetch, cart_update
from abm.kernels.cells_common import (CART, EV_ARRESTED, EV_CART_DIED, EV_EGRESS, EV_ENGAGED,
                                      EV_EXHAUSTED, EV_KILL, EV_MYELOID_DIED, FREE, MYELOID,
                                      N_UPDATED_KINDS, TUMOUR,
                                      TUMOUR_ALIVE, colour_order, dynamic_classes, pick_free,
                                      prefetch, prefetch2, static_classes, stream_key, uniform,
                                      write_cursors)
from abm.kernels.cells_endothelial import endothelial_prefetch, endothelial_update
from abm.kernels.cells_myeloid import myeloid_prefetch, myeloid_update
from abm.kernels.cells_tumour import TC_BYSTANDER, TC_DIED, TC_LYSED, tumour_update
from abm.kernels.jit import JIT_DISABLED, jit, pjit

#: Stream of each key in the tuple built by :func:`make_keys` (positions are the
#: ``K_*`` constants of the rule modules).
KEY_STREAMS = (
    streams.TUMOUR_DEATH, streams.TUMOUR_DIVIDE, streams.TUMOUR_ANTIGEN, streams.TUMOUR_LYSIS,
    streams.CART_DEATH, streams.CART_EGRESS, streams.CART_KILL, streams.CART_ENGAGE,
    streams.CART_PHENOTYPE, streams.CART_DIVIDE, streams.MYELOID_DEATH, streams.TUMOUR_BYSTANDER,
)

# tally slots (integer counts)
N_KILLS, N_CART_DIED, N_EGRESS, N_LYSED, N_TUMOUR_DIED, N_MYELOID_DIED, N_ENGAGED, \
    N_EXHAUSTED, N_EGRESS_DIVISIONS_LEFT, N_BYSTANDER = range(10)
N_COUNTS = 10


@jit
def make_keys(seed, step):
    """Stream keys of every rule of the agent pass for this step (a tuple)."""
    return (stream_key(seed, streams.TUMOUR_DEATH, step),
            stream_key(seed, streams.TUMOUR_DIVIDE, step),
            stream_key(seed, streams.TUMOUR_ANTIGEN, step),
            stream_key(seed, streams.TUMOUR_LYSIS, step),
            stream_key(seed, streams.CART_DEATH, step),
            stream_key(seed, streams.CART_EGRESS, step),
            stream_key(seed, streams.CART_KILL, step),
            stream_key(seed, streams.CART_ENGAGE, step),
            stream_key(seed, streams.CART_PHENOTYPE, step),
            stream_key(seed, streams.CART_DIVIDE, step),
            stream_key(seed, streams.MYELOID_DEATH, step),
            stream_key(seed, streams.TUMOUR_BYSTANDER, step))


#: Prefetch distance: while the ``i``-th CAR-T or myeloid cell of a tile (in
#: visiting order) is updated, the site data of the ``i + PF_DIST``-th is
#: requested from memory. Prefetches only hint the cache; they change no result.
PF_DIST = 6


@jit(inline="always")
def _hop(r, sub, kc, km, ids, kind, site, occ, neighbours, vessel):
    """Move cell ``r`` (chosen to attempt a hop in pass ``sub``) to a uniformly chosen free neighbour."""
    key = kc if kind[r] == CART else km
    s = site[r]
    t = pick_free(s, neighbours, occ, vessel, True, uniform(key, ids[r], 2 * sub + 1))
    if t >= 0:
        occ[s] = FREE
        occ[t] = r
        site[r] = t


@jit
def append_births(parents, n0, next_id, cells, occ, birth_site, birth_value):
    """Append one daughter per parent row in ``parents`` (already in id order).

    Daughters take rows ``n0, n0 + 1, ...`` and ids ``next_id, next_id + 1, ...``.
    A tumour daughter is alive with antigen ``birth_value[parent]``; a CAR-T
    daughter copies the parent's phenotype, activation, engagement count,
    divisions left and signalling state and starts without a target. The parents' ``birth_site``
    is reset to -1 (the scratch is clean for the next step). Returns the new
    row count. ``cells``: :class:`abm.kernels.bundles.CellColumns`.
    """
    ids = cells.ids
    kind = cells.kind
    site = cells.site
    phenotype = cells.phenotype
    activation = cells.activation
    antigen = cells.antigen
    engagements = cells.engagements
    divisions_left = cells.divisions_left
    target = cells.target
    timer = cells.timer
    store = cells.store
    glycolytic = cells.glycolytic
    oxidative = cells.oxidative
    m = n0
    for i in range(parents.shape[0]):
        p = parents[i]
        s = birth_site[p]
        birth_site[p] = -1
        r = m
        k = kind[p]
        ids[r] = next_id + i
        kind[r] = k
        site[r] = s
        occ[s] = r
        target[r] = -1
        timer[r] = 0.0
        store[r] = 0.0
        if k == TUMOUR:
            phenotype[r] = TUMOUR_ALIVE
            activation[r] = 0.0
            antigen[r] = birth_value[p]
            engagements[r] = 0
            divisions_left[r] = 0
            glycolytic[r] = 0.0
            oxidative[r] = 0.0
        else:
            phenotype[r] = phenotype[p]
            activation[r] = activation[p]
            antigen[r] = 0.0
            engagements[r] = engagements[p]
            divisions_left[r] = divisions_left[p]
            glycolytic[r] = glycolytic[p]
            oxidative[r] = oxidative[p]
        m += 1
    return m


@jit
def tally(motile, events, divisions_left, kind, il6_out, growth_out, tcount, counts, sums):
    """Count event flags, sum IL-6 by source and CAR-T expected growth (serial, in the order of ``motile``).

    ``motile``: the CAR-T and myeloid rows updated this step, in row order
    (their ``events`` and ``il6_out`` were set by the pass); tumour lysis,
    natural death and bystander kills come from the per-tile counters ``tcount``
    (:mod:`abm.kernels.cells_tumour`).
    ``counts`` (int64, :data:`N_COUNTS`), ``sums[S_IL6_CART]``,
    ``sums[S_IL6_MYELOID]`` (IL-6 in pg) and ``sums[S_CART_GROWTH]`` (the CAR-T
    cells' expected births minus deaths, ``growth_out``) are overwritten. ``counts[N_EGRESS_DIVISIONS_LEFT]`` sums the
    division potential the egressing CAR-T cells take back to the patient.
    """
    for i in range(counts.shape[0]):
        counts[i] = 0
    for t in range(tcount.shape[0]):
        counts[N_LYSED] += tcount[t, TC_LYSED]
        counts[N_TUMOUR_DIED] += tcount[t, TC_DIED]
        counts[N_BYSTANDER] += tcount[t, TC_BYSTANDER]
    il6_cart = 0.0
    il6_mye = 0.0
    growth = 0.0
    for i in range(motile.shape[0]):
        r = motile[i]
        ev = events[r]
        if ev != 0:
            if ev & EV_KILL:
                counts[N_KILLS] += 1
            if ev & EV_CART_DIED:
                counts[N_CART_DIED] += 1
            if ev & EV_EGRESS:
                counts[N_EGRESS] += 1
                counts[N_EGRESS_DIVISIONS_LEFT] += divisions_left[r]
            if ev & EV_MYELOID_DIED:
                counts[N_MYELOID_DIED] += 1
            if ev & EV_ENGAGED:
                counts[N_ENGAGED] += 1
            if ev & EV_EXHAUSTED:
                counts[N_EXHAUSTED] += 1
        x = il6_out[r]
        if x != 0.0:
            if kind[r] == CART:
                il6_cart += x
            elif kind[r] == MYELOID:
                il6_mye += x
        # CAR-T rows, also those that died or left this step (kind DEAD by now)
        if kind[r] == CART or (ev & (EV_CART_DIED | EV_EGRESS)) != 0:
            growth += growth_out[r]
    sums[S_IL6_CART] = il6_cart
    sums[S_IL6_MYELOID] = il6_mye
    sums[S_CART_GROWTH] = growth


@jit(inline="always")
def _hop_mask(r, kind, target, events, ids, key, n_move, p):
    """The movement passes (bit ``sub``) in which the cell in row ``r`` attempts a hop.

    Called right after the cell's update. A live CAR-T cell without a target
    and not arrested on antigen contact, or a live myeloid cell, attempts a
    hop in pass ``sub`` when the uniform ``(key, id, 2 sub)`` is below ``p``
    (``key``/``p``: ``CART_MOVE``/``p_cart`` or ``MYELOID_MOVE``/``p_mye``).
    None of these inputs changes during the movement passes, so all passes
    are decided here (``n_move <= 62``).
    """
    k = kind[r]
    m = np.int64(0)
    if p > 0.0 and (k == MYELOID or (k == CART and target[r] < 0
                                     and (events[r] & EV_ARRESTED) == 0)):
        cid = ids[r]
        for sub in range(n_move):
            m |= np.int64(uniform(key, cid, 2 * sub) < p) << sub
    return m


@jit
def hopper_classes(motile, masks, sub, site, key, start, rows, cand):
    """Classes of the cells that attempt a hop in movement pass ``sub``; returns their number.

    The rows ``r`` of ``motile`` whose bit ``sub`` is set in ``masks[r]``
    (:func:`_hop_mask`) are listed in ``cand`` (in order) and grouped by the
    key of their current site (stable counting sort, as
    :func:`abm.kernels.cells_common.dynamic_classes`) into ``start`` / ``rows``.
    """
    start[:] = 0
    m = 0
    for i in range(motile.shape[0]):
        r = motile[i]
        if (masks[r] >> sub) & 1:
            cand[m] = r
            m += 1
    for i in range(m):
        if i + 16 < m:  # a cache hint for the site key of a row further on
            prefetch(key, site[cand[i + 16]])
        start[key[site[cand[i]]] + 1] += 1
    cursor = write_cursors(start)
    for i in range(m):
        r = cand[i]
        c = key[site[r]]
        rows[cursor[c]] = r
        cursor[c] += 1
    return m


@jit
def birth_parents(n, birth_site, out):
    """Write the rows ``< n`` with a reserved daughter site to ``out`` in row order; return their number."""
    m = 0
    for r in range(n):
        if birth_site[r] >= 0:
            out[m] = r
            m += 1
    return m


@jit(inline="always")
def _sift_down(rows, ids, i, n):
    """Restore the max-heap (by ``ids``) below position ``i`` of ``rows[:n]``."""
    r = rows[i]
    key = ids[r]
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and ids[rows[c + 1]] > ids[rows[c]]:
            c += 1
        if ids[rows[c]] <= key:
            break
        rows[i] = rows[c]
        i = c
    rows[i] = r


@jit
def sort_by_id(rows, ids):
    """Sort ``rows`` in place by ``ids[rows]`` (ids are unique, so the order is unique).

    A heap sort: no scratch, and compiled in a fraction of the time of
    ``np.argsort`` (which brings in Numba's generic quicksort).
    """
    n = rows.shape[0]
    for i in range(n // 2 - 1, -1, -1):
        _sift_down(rows, ids, i, n)
    for end in range(n - 1, 0, -1):
        r = rows[0]
        rows[0] = rows[end]
        rows[end] = r
        _sift_down(rows, ids, 0, end)


#: Default minimum number of cells for parallel loops; smaller steps run
#: serially (same result, no thread start-up cost: a parallel region costs
#: ~10-50 us to start, far more when the cores are shared).
PAR_MIN = 30_000

#: Endothelial rows per work item of a parallel loop.
CHUNK = 1024

# float tally slots
S_IL6_CART, S_IL6_MYELOID, S_VWF, S_ANG2, S_CART_GROWTH = range(5)
N_SUMS = 5


# The tile helpers below hold the serial loops with the rule bodies inlined.
# They are compiled without reference counting (``_nrt=False``): every array
# they touch is owned by the caller for the whole call and they allocate
# nothing, while taking arrays out of the bundles in the inlined rule bodies
# would otherwise cost an atomic incref/decref pair per array and cell
# (measured: ~35% slower agent pass). They contain no ``prange``: only
# :func:`agent_step` runs them in parallel.


@jit(inline="always")
def _prefetch_motile(r, cells, sites, fld, events, il6_out):
    """Request the data the update of CAR-T or myeloid row ``r`` will touch (a hint only).

    The cell's own columns; for CAR-T cells also their neighbour-table row,
    the occupancy lines of their neighbourhood (sites ``s + occ_rows[i]``:
    the lattice rows above and below, and the planes in 3D) and the fields,
    sources and uptake they use; for myeloid cells the fields, sources and
    uptake they use.
    """
    s = cells.site[r]
    prefetch(cells.ids, r)
    prefetch(cells.activation, r)
    prefetch(cells.timer, r)
    prefetch(events, r)
    prefetch(il6_out, r)
    if cells.kind[r] == CART:
        prefetch(cells.phenotype, r)
        prefetch(cells.engagements, r)
        prefetch(cells.divisions_left, r)
        prefetch(cells.target, r)
        prefetch2(sites.neighbours, s, 0)
        cart_prefetch(s, fld.fields, fld.sources, fld.uptake)
        occ = sites.occ
        n_sites = occ.shape[0]
        for o in sites.occ_rows:
            q = s + o
            if q >= 0 and q < n_sites:
                prefetch(occ, q)
    else:
        myeloid_prefetch(s, fld.fields, fld.sources, fld.uptake)


@jit(_nrt=False)
def _tile_update(t, nc, keys, kc, km, cells, sites, fld, params, tgroups, scratch, tallies):
    """Agent update of the cells of tile position ``t``, site colour by site colour.

    ``keys``: the rule stream keys of the step (:func:`make_keys`); ``kc``,
    ``km``: the CAR-T and myeloid movement keys. Bundles:
    :class:`~abm.kernels.bundles.CellColumns`, :class:`~abm.kernels.bundles.SiteArrays`,
    :class:`~abm.kernels.bundles.FieldArrays`, :class:`~abm.kernels.bundles.RuleParams`,
    :class:`~abm.kernels.bundles.TumourGroups`, :class:`~abm.kernels.bundles.Scratch`,
    :class:`~abm.kernels.bundles.Tallies`.

    Inside a colour class the tumour cells run first (the static ones from
    ``sstart`` / ``srows``, skipping those that died since they were grouped,
    then those in the per-step classes), then the CAR-T and the myeloid cells
    (per-step classes ``start`` / ``rows``).
    The CAR-T and myeloid rows of the tile are first listed in visiting order
    (in ``visit``, at the tile's own positions of ``rows``, so tiles running in
    parallel never share it); while the ``i``-th of them is updated, the site
    data of the ``i + PF_DIST``-th is requested from memory, with the tumour
    cells in between giving it time to arrive.
    """
    kind = cells.kind
    ids = cells.ids
    target = cells.target
    sstart = tgroups.sstart
    srows = tgroups.srows
    class_order = scratch.class_order
    start = scratch.start
    rows = scratch.rows
    visit = scratch.kbuf
    hopmask = scratch.hopmask
    birth_site = scratch.birth_site
    birth_value = scratch.birth_value
    events = tallies.events
    il6_out = tallies.il6_out
    growth_out = tallies.growth_out
    tp = params.tp
    cp = params.cp
    mp = params.mp
    env = params.env
    n_move = params.n_move
    p_cart = params.p_cart
    p_mye = params.p_mye
    base = t * nc
    tc = tallies.tcount[t]
    # motile rows of the tile in visiting order
    v0 = start[N_UPDATED_KINDS * base]
    v1 = v0
    for ci in range(nc):
        c = N_UPDATED_KINDS * (base + class_order[ci])
        for j in range(start[c + 1], start[c + 3]):
            visit[v1] = rows[j]
            v1 += 1
    for i in range(v0, min(v1, v0 + PF_DIST)):
        _prefetch_motile(visit[i], cells, sites, fld, events, il6_out)
    i = v0
    for ci in range(nc):
        cs = base + class_order[ci]
        c = N_UPDATED_KINDS * cs
        # the tumour rows: the static ones still alive, then those of the per-step class (one
        # loop, so the tumour rule is inlined once)
        s0 = sstart[cs]
        ns = sstart[cs + 1] - s0
        d0 = start[c] - ns
        for q in range(ns + start[c + 1] - start[c]):
            if q < ns:
                r = srows[s0 + q]
                if kind[r] != TUMOUR:
                    continue
            else:
                r = rows[d0 + q]
            tumour_update(r, keys, cells, sites, fld, tp, birth_site, birth_value, tc)
        m0 = start[c + 1]          # first CAR-T row of the class
        m1 = start[c + 2]          # first myeloid row
        for j in range(m0, start[c + 3]):      # the CAR-T rows, then the myeloid rows
            if i + PF_DIST < v1:
                _prefetch_motile(visit[i + PF_DIST], cells, sites, fld, events, il6_out)
            i += 1
            r = rows[j]
            if j < m1:
                cart_update(r, keys, cells, sites, fld, cp, env, birth_site, events, il6_out,
                            growth_out)
                key = kc
                p = p_cart
            else:
                myeloid_update(r, keys, ids, kind, cells.site, cells.activation,
                               cells.timer, sites.occ, fld.fields, fld.sources, fld.uptake, mp,
                               env, events, il6_out)
                key = km
                p = p_mye
            hopmask[r] = _hop_mask(r, kind, target, events, ids, key, n_move, p)


@jit(_nrt=False)
def _tile_move(t, nc, class_order, start, rows, sub, kc, km, ids, kind, site, occ, neighbours,
               vessel, occ_rows):
    """Hops of movement pass ``sub`` by the chosen cells of tile position ``t``.

    The neighbour-table rows and neighbourhood occupancy of all the tile's
    hopping cells are requested first (cache hints).
    """
    base = t * nc
    n_sites = occ.shape[0]
    for j in range(start[base], start[base + nc]):
        s = site[rows[j]]
        prefetch2(neighbours, s, 0)
        for o in occ_rows:
            q = s + o
            if q >= 0 and q < n_sites:
                prefetch(occ, q)
    for ci in range(nc):
        c = base + class_order[ci]
        for j in range(start[c], start[c + 1]):
            _hop(rows[j], sub, kc, km, ids, kind, site, occ, neighbours, vessel)


@jit(_nrt=False)
def _endothelial_range(lo, hi, erows, key, cells, fld, ep, env, vwf_out, ang2_out):
    """Endothelial update of ``erows[lo:hi]`` (cells are independent).

    ``cells``, ``fld``: :class:`abm.kernels.bundles.CellColumns`,
    :class:`~abm.kernels.bundles.FieldArrays`.
    """
    ids = cells.ids
    site = cells.site
    activation = cells.activation
    store = cells.store
    fields = fld.fields
    sources = fld.sources
    uptake = fld.uptake
    perm = fld.perm
    for j in range(lo, hi):
        if j + PF_DIST < hi:
            endothelial_prefetch(site[erows[j + PF_DIST]], fields, sources, uptake, perm)
        endothelial_update(erows[j], key, ids, site, activation, store, fields, sources, uptake,
                           perm, ep, env, vwf_out, ang2_out)


#: Whether the agent step may run its ``prange`` loops on threads: a compile-time
#: constant, True in :func:`agent_step` and False in :func:`agent_step_serial`
#: (the same source compiled without Numba's parallel pipeline).
_THREADED = True


def _agent_step(seed, step, n, next_id, erows, rebuild, par_min, cells, sites, fld, params,
               tgroups, scratch, tallies):
    """The whole agent phase of one step; returns the new number of rows.

    Order: (1) endothelial cells (rows ``erows``; independent);
    (2) the agent pass over tumour, CAR-T and myeloid cells, tile colour by
    tile colour (tiles of one colour in parallel), site colour by site colour
    inside a tile; (3) ``n_move`` movement passes (free CAR-T hop with
    probability ``p_cart``, myeloid cells with ``p_mye``), each with fresh
    classes and orders; (4) daughters appended after row ``n`` in parent-id
    order with ids from ``next_id`` (the caller guarantees capacity for ``n``
    more rows); (5) tallies: ``counts`` (int64, :data:`N_COUNTS`) and ``sums``
    (float64, :data:`N_SUMS`: IL-6 pg from CAR-T, from myeloid cells, VWF pg,
    ANG-2 pg, the CAR-T cells' expected births minus deaths), summed serially
    in row order.

    Args:
        erows: rows of the endothelial cells.
        rebuild: regroup the static tumour rows first (the caller sets it
            whenever the table's rows have moved since the last grouping).
        par_min: with fewer cells than this the step runs serially (same result).
        cells: :class:`abm.kernels.bundles.CellColumns`.
        sites: :class:`abm.kernels.bundles.SiteArrays` (``site_key``,
            ``tile_start`` from :func:`abm.kernels.cells_common.tile_layout`).
        fld: :class:`abm.kernels.bundles.FieldArrays` (``fields`` read only;
            ``sources`` and ``uptake`` are added to; ``perm`` is set at vessel sites).
        params: :class:`abm.kernels.bundles.RuleParams`.
        tgroups: :class:`abm.kernels.bundles.TumourGroups`, the static
            grouping of tumour rows (:func:`abm.kernels.cells_common.static_classes`),
            kept by the caller between steps.
        scratch: :class:`abm.kernels.bundles.Scratch`.
        tallies: :class:`abm.kernels.bundles.Tallies` (``tcount``: ``(n_tiles,
            TC_N)`` per-tile tumour counters).

    Scratch and tallies are overwritten; nothing in them carries over between
    steps. ``birth_site`` must be -1 in every row on entry and is left so
    (only parents' rows are set, and :func:`append_births` resets them).

    :func:`agent_step_serial` is the same kernel without threads (same
    result); :func:`agent_step_kernel` picks one for the current thread count.
    """
    ids = cells.ids
    kind = cells.kind
    site = cells.site
    occ = sites.occ
    neighbours = sites.neighbours
    vessel = sites.vessel
    site_key = sites.site_key
    tile_start = sites.tile_start
    occ_rows = sites.occ_rows
    ep = params.ep
    env = params.env
    n_move = params.n_move
    sstart = tgroups.sstart
    srows = tgroups.srows
    smotile = tgroups.smotile
    static_info = tgroups.info
    start = scratch.start
    rows = scratch.rows
    kbuf = scratch.kbuf
    motile = scratch.motile
    hopmask = scratch.hopmask
    class_order = scratch.class_order
    tile_order = scratch.tile_order
    birth_site = scratch.birth_site
    birth_value = scratch.birth_value
    events = tallies.events
    il6_out = tallies.il6_out
    vwf_out = tallies.vwf_out
    ang2_out = tallies.ang2_out
    tcount = tallies.tcount
    counts = tallies.counts
    sums = tallies.sums
    nc = class_order.shape[0]
    ntc = tile_order.shape[0]
    parallel = n >= par_min
    for t in range(tcount.shape[0]):
        for q in range(tcount.shape[1]):
            tcount[t, q] = 0
    # (1) endothelium
    ekey = stream_key(seed, streams.ENDOTHELIAL, step)
    ne = erows.shape[0]
    if _THREADED and parallel and ne > CHUNK:
        for q in prange((ne + CHUNK - 1) // CHUNK):
            _endothelial_range(q * CHUNK, min(ne, (q + 1) * CHUNK), erows, ekey, cells, fld, ep,
                               env, vwf_out, ang2_out)
    else:
        _endothelial_range(0, ne, erows, ekey, cells, fld, ep, env, vwf_out, ang2_out)
    # (2) agent pass
    if rebuild:
        static_info[1] = static_classes(n, kind, site, site_key, sstart, srows, smotile)
        static_info[0] = n
    n_motile = dynamic_classes(smotile[:static_info[1]], static_info[0], n, kind, site, site_key,
                               start, rows, kbuf, motile)
    colour_order(seed, step, 0, tile_order)
    colour_order(seed, step, 1, class_order)
    keys = make_keys(seed, step)
    kc = stream_key(seed, streams.CART_MOVE, step)
    km = stream_key(seed, streams.MYELOID_MOVE, step)
    for ti in range(ntc):
        k = tile_order[ti]
        t0 = tile_start[k]
        t1 = tile_start[k + 1]
        if _THREADED and parallel and t1 - t0 > 1:
            for t in prange(t0, t1):
                _tile_update(t, nc, keys, kc, km, cells, sites, fld, params, tgroups, scratch,
                             tallies)
        else:
            for t in range(t0, t1):
                _tile_update(t, nc, keys, kc, km, cells, sites, fld, params, tgroups, scratch,
                             tallies)
    # (3) movement: the hop decisions of every pass were made in the agent
    # pass (hopmask); each pass regroups the cells that attempt a hop
    mstart = start[: (start.shape[0] - 1) // N_UPDATED_KINDS + 1]
    moving = motile[:n_motile]
    for sub in range(n_move):
        hopper_classes(moving, hopmask, sub, site, site_key, mstart, rows, kbuf)
        colour_order(seed, step, 2 + 2 * sub, tile_order)
        colour_order(seed, step, 3 + 2 * sub, class_order)
        for ti in range(ntc):
            k = tile_order[ti]
            t0 = tile_start[k]
            t1 = tile_start[k + 1]
            if _THREADED and parallel and t1 - t0 > 1:
                for t in prange(t0, t1):
                    _tile_move(t, nc, class_order, mstart, rows, sub, kc, km, ids, kind, site,
                               occ, neighbours, vessel, occ_rows)
            else:
                for t in range(t0, t1):
                    _tile_move(t, nc, class_order, mstart, rows, sub, kc, km, ids, kind, site,
                               occ, neighbours, vessel, occ_rows)
    # (5) tallies (before appending: daughters have no events)
    tally(moving, events, cells.divisions_left, kind, il6_out, tallies.growth_out, tcount, counts,
          sums)
    vwf = 0.0
    ang2 = 0.0
    for j in range(ne):
        vwf += vwf_out[erows[j]]
        ang2 += ang2_out[erows[j]]
    sums[S_VWF] = vwf
    sums[S_ANG2] = ang2
    # (4) births in parent-id order
    parents = rows[:birth_parents(n, birth_site, rows)]
    sort_by_id(parents, ids)
    return append_births(parents, n, next_id, cells, occ, birth_site, birth_value)


def _serial_variant(fn, name: str):
    """A copy of ``fn`` named ``name`` that sees ``_THREADED = False`` (its threaded branches pruned)."""
    g = dict(fn.__globals__, _THREADED=False)
    f = types.FunctionType(fn.__code__, g, name, fn.__defaults__, fn.__closure__)
    f.__qualname__ = name   # its own entry in the on-disk cache
    f.__doc__ = fn.__doc__
    return f


# One source, two kernels: with one thread the parallel version's loops would
# run serially anyway, but compiling it costs Numba's parallel pipeline (each
# prange body becomes a gufunc with two wrappers, each optimised and compiled
# with the whole tile update inlined), about a third of the first run's compile.
agent_step = pjit(_agent_step)
agent_step_serial = jit(_serial_variant(_agent_step, "agent_step_serial"))


def tile_update_signature(args) -> tuple:
    """The signature of :func:`_tile_update` as :func:`agent_step` (either variant) calls it
    when called with ``args``."""
    from numba import typeof
    from numba.core import types as nt

    cells, sites, fld, params, tgroups, scratch, tallies = args[7:14]
    return (nt.int64, nt.int64, nt.UniTuple(nt.uint64, len(KEY_STREAMS)), nt.uint64, nt.uint64,
            typeof(cells), typeof(sites), typeof(fld), typeof(params), typeof(tgroups),
            typeof(scratch), typeof(tallies))


def compile_tile_update(args) -> None:
    """Compile (or load) :func:`_tile_update` for the agent-step arguments ``args``, not the step.

    The tile update holds most of the agent step's code: a warm-up helper
    process (:mod:`abm.io.warmup`) compiles it while the main process
    compiles the rest of the agent step, which then loads it from the shared
    cache.
    """
    if not JIT_DISABLED:
        _tile_update.compile(tile_update_signature(args))


def agent_step_kernel(threads: int | None = None):
    """:func:`agent_step` for more than one Numba thread, else :func:`agent_step_serial`.

    ``threads``: the thread count (default: Numba's current one). Both give
    the same result; the serial one is compiled only if used.
    """
    if threads is None:
        threads = 1 if JIT_DISABLED else numba.get_num_threads()
    return agent_step if threads > 1 else agent_step_serial


__all__ = ["agent_step", "agent_step_serial", "agent_step_kernel", "tile_update_signature",
           "compile_tile_update", "append_births", "sort_by_id",
           "tally", "make_keys", "birth_parents", "KEY_STREAMS", "N_COUNTS", "N_SUMS", "PAR_MIN", "CHUNK"]
