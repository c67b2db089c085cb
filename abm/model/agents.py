"""Processes that run the cell rules: blood -> tissue entry and the agent phase.

* :class:`Extravasation` (phase ``blood_to_tissue``): recomputes vessel
  permeability from the endothelium and the local ANG-2, then lets blood
  CAR-T cells and monocytes enter free vessel sites.
* :class:`CellRules` (phase ``agents``): endothelium, tumour, CAR-T and
  myeloid rules, movement, births, tallies -- one compiled call per step
  (:func:`abm.kernels.cells_step.agent_step`).

Inputs read from ``state.scalars`` (0 when absent): ``blood_cart_cells``
(CAR-T cells in the patient's blood), ``steroid_effect`` (0..1),
``il6r_occupancy`` (0..1), and optionally ``blood_monocytes_per_ul``.

Outputs written to ``state.scalars`` each step, in patch units (the whole
patient's model turns them into per-capita rates, :mod:`abm.model.coupling`):

* ``cart_entered_step`` / ``cart_entered_total``: CAR-T cells that entered;
* ``cart_egressed_step`` / ``cart_egressed_total``: CAR-T cells that left;
* ``monocytes_recruited_step`` / ``monocytes_recruited_total``;
* ``tumour_lysed_step`` / ``tumour_lysed_total``: killed tumour cells lysed
  (tumour-lysis metabolites);
* ``cart_kills_step`` / ``cart_kills_total`` / ``cart_kills_interval`` (since
  the last record boundary);
* ``tumour_bystander_kills_step`` / ``tumour_bystander_kills_total``: tumour
  cells killed antigen-independently near activated CAR-T
  (:mod:`abm.kernels.cells_tumour`; not in the CAR-T kills);
* ``il6_secreted_cart_pg`` / ``il6_secreted_myeloid_pg``: cumulative IL-6
  mass secreted in the patch by source;
* ``vwf_released_pg`` / ``ang2_released_pg`` (cumulative) and
  ``vwf_released_step_pg`` / ``ang2_released_step_pg``;
* ``cart_died_total``, ``tumour_died_total``, ``myeloid_died_total``.

Every dynamic quantity lives on the State (cell columns, ``perm``,
``sources``, ``uptake``, ``scalars``); the processes hold constants,
compiled kernels and scratch buffers whose contents never outlive a step, so
a run resumed from a checkpoint continues bit for bit. Housekeeping (dropping
dead rows and sorting the table in tile-major site order) happens on steps
that are multiples of :data:`SORT_EVERY_STEPS`; daughters' ids are assigned in parent-id order,
so the row order never changes which random numbers a cell draws.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
from numba.core.errors import NumbaPerformanceWarning

from abm import cells as C
from abm.kernels import cells_cart as KC
from abm.kernels import cells_common as KM
from abm.kernels import cells_step as KS
from abm.kernels import cells_tumour as KT
from abm.kernels import tallies as KY
from abm.kernels.bundles import (CellColumns, FieldArrays, RuleParams, Scratch, SiteArrays,
                                 Tallies, TumourGroups)
from abm.kernels import rng, streams
from abm.kernels.cells_endothelial import update_permeability, vessel_entry
from abm.kernels.jit import resolved
from abm.model import cart, endothelium, myeloid, tumour
from abm.model.coupling import bed_scale
from abm.model.cart_rules import RegisteredCartRules
from abm.errors import ConfigError
from abm.process import Process

#: Housekeeping period: dead rows are dropped and rows sorted by site on steps
#: ``step % SORT_EVERY_STEPS == 0``.
SORT_EVERY_STEPS = 10

#: Largest hop probability per movement pass; more passes are used above it.
MAX_HOP_PROB = 0.75

#: Most movement passes per step (the kernel decides them as bits of one int64).
MAX_MOVE_PASSES = 62

def environment(state) -> np.ndarray:
    """The environment vector of the kernels: steroid effect and IL-6R occupancy, clipped to [0, 1]."""
    env = np.zeros(KC.ENV_N, dtype=np.float64)
    env[KC.ENV_STEROID] = min(1.0, max(0.0, float(state.scalars.get("steroid_effect", 0.0))))
    env[KC.ENV_IL6R] = min(1.0, max(0.0, float(state.scalars.get("il6r_occupancy", 0.0))))
    return env


class EndothelialRows:
    """Rows of the endothelial cells, found again only when the table's rows move.

    Endothelial cells are made with the lattice and never die, move or
    divide, so their rows change only with :attr:`abm.cells.CellTable.layout`.
    """

    def __init__(self):
        self._layout = None
        self._rows = np.zeros(0, dtype=np.int64)

    def __call__(self, cells) -> np.ndarray:
        if self._layout != cells.layout:
            self._rows = np.flatnonzero(cells.kind[: cells.n] == C.ENDOTHELIAL)
            self._layout = cells.layout
        return self._rows


def endothelial_params(config, dt_s: float, voxel_ml: float) -> np.ndarray:
    return endothelium.kernel_params(config.endothelium,
                                     config.patient.baseline_endothelial_activation,
                                     dt_s, voxel_ml)


def movement_plan(config, lattice) -> tuple[int, float, float]:
    """Movement passes per step and hop probability per pass (CAR-T, myeloid).

    A free cell at speed v makes ``lambda = v dt / mean hop`` hops per step on
    average. With ``n = ceil(max lambda / MAX_HOP_PROB)`` passes, the hop
    probability per pass is ``lambda / n``, so the expected number of hop
    attempts per step equals ``lambda`` (blocked attempts, no free neighbour,
    leave the cell in place).
    """
    dt = config.run.dt_s
    lc = cart.hops_per_step(config.product.speed_um_per_min, dt, lattice.offsets, lattice.h_um)
    lm = cart.hops_per_step(config.myeloid.speed_um_per_min, dt, lattice.offsets, lattice.h_um)
    top = max(lc, lm)
    if top <= 0.0:
        return 0, 0.0, 0.0
    n = int(math.ceil(top / MAX_HOP_PROB - 1e-12))
    if n > MAX_MOVE_PASSES:
        raise ConfigError(
            f"run.dt_min = {config.run.dt_min} min: cells would make {top:.3g} hops per step ({n} movement passes; at most "
            f"{MAX_MOVE_PASSES} are supported): lower run.dt_min or the cell speed "
            f"(product.speed_um_per_min, myeloid.speed_um_per_min)", key="run.dt_min")
    return n, lc / n, lm / n


def sort_by_site(cells, rank=None) -> None:
    """Drop dead rows and order the rest by (kind block, ``rank[site]``); rebuild occupancy.

    Blocks: endothelial, tumour, CAR-T, myeloid
    (:func:`abm.kernels.cells_common.site_sort_permutation`).

    ``rank`` is a permutation of the sites (default: the site index; the
    processes use the tile-major order of :func:`abm.kernels.cells_common.tile_layout`).
    """
    n = cells.n
    if rank is None:
        rank = np.arange(cells.occ.shape[0], dtype=np.int64)
    perm = KM.site_sort_permutation(n, cells.kind[:n], cells.site[:n], rank)
    m = len(perm)
    for name, (dtype, fill, _, _) in C.COLUMNS.items():
        KM.permute_column(getattr(cells, name), perm, n, fill)
    cells.n = m
    cells.rebuild_occupancy()


@contextlib.contextmanager
def _quiet_compile(dispatcher):
    """Silence Numba's 'parallel=True but no transformation' warning while compiling.

    Only the first call of a dispatcher (no compiled or cached signature yet)
    is wrapped. (The tile helpers of :mod:`abm.kernels.cells_step` no longer
    use parallel=True, so the agent step itself no longer warns; kept for
    parallel kernels with nothing to parallelise. ``dispatcher.signatures``
    costs ~20 us, so callers ask only until the first call has run.)
    """
    if getattr(dispatcher, "signatures", True):
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=NumbaPerformanceWarning)
        yield


def _add(scalars: dict, key: str, value) -> None:
    scalars[key] = scalars.get(key, 0) + value


#: Units and long names of the scalars these processes record (file writer).
META: dict[str, tuple[str, str]] = {
    "cart_entered_total": ("cells", "CAR-T cells entered the patch from blood (cumulative)"),
    "monocytes_recruited_total": ("cells", "monocytes recruited into the patch (cumulative)"),
    "blood_cart_cells_seen": ("cells", "blood CAR-T count used by the entry rule"),
    "n_cart_naive": ("cells", "naive-like CAR-T cells in the patch"),
    "n_cart_effector": ("cells", "effector CAR-T cells in the patch"),
    "n_cart_memory": ("cells", "memory CAR-T cells in the patch"),
    "n_cart_exhausted": ("cells", "exhausted CAR-T cells in the patch"),
    "n_cart_engaged": ("cells", "CAR-T cells engaged with a target"),
    "cart_mean_activation": ("1", "mean CAR-T activation"),
    "cart_mean_glycolytic": ("1", "mean CAR-T glycolytic drive (costimulation signalling state)"),
    "cart_mean_oxidative": ("1", "mean CAR-T oxidative capacity (costimulation signalling state)"),
    "n_tumour_dying": ("cells", "killed tumour cells not yet lysed"),
    "n_myeloid_resident": ("cells", "resident macrophages"),
    "n_myeloid_recruited": ("cells", "recruited monocytes / macrophages"),
    "n_myeloid_activated": ("cells", "myeloid cells with activation > 0.5"),
    "myeloid_mean_activation": ("1", "mean myeloid activation"),
    "endothelial_mean_activation": ("1", "mean endothelial activation"),
    "endothelial_mean_store": ("1", "mean Weibel-Palade store (1 = full)"),
    "vessel_mean_permeability": ("1", "mean vessel-site permeability (1 = resting)"),
    "cart_kills_interval": ("cells", "tumour cells killed by CAR-T since the previous record"),
    "cart_kills_total": ("cells", "tumour cells killed by CAR-T (cumulative)"),
    "tumour_bystander_kills_total": ("cells", "tumour cells killed antigen-independently near activated "
                                              "CAR-T (bystander, cumulative)"),
    "tumour_lysed_total": ("cells", "killed tumour cells lysed (cumulative)"),
    "cart_egressed_total": ("cells", "CAR-T cells returned to blood (cumulative)"),
    "cart_died_total": ("cells", "CAR-T cells died in the patch (cumulative)"),
    "tumour_died_total": ("cells", "tumour cells died naturally (cumulative)"),
    "myeloid_died_total": ("cells", "myeloid cells died (cumulative)"),
    "cart_exhausted_total": ("cells", "CAR-T exhaustion events (cumulative)"),
    "il6_secreted_cart_pg": ("pg", "IL-6 secreted by CAR-T cells in the patch (cumulative)"),
    "il6_secreted_myeloid_pg": ("pg", "IL-6 secreted by myeloid cells in the patch (cumulative)"),
    "vwf_released_pg": ("pg", "VWF released by patch endothelium (cumulative)"),
    "ang2_released_pg": ("pg", "ANG-2 released by patch endothelium (cumulative)"),
}


class Extravasation(Process):
    """CAR-T homing and monocyte recruitment at vessel sites (phase ``blood_to_tissue``).

    Per free vessel site v and step: a CAR-T enters with probability
    ``1 - exp(-lambda_T perm_v dt)``, ``lambda_T = h_T(T) N_blood / (S_v n_v)`` (h_T =
    :func:`abm.model.tumour.homing_rate_per_day` of the current tumour
    ``T = scalars["tumour_cells"]``; ``N_blood = scalars["blood_cart_cells"]``;
    ``n_v`` vessel sites; ``S_v`` the tumour bed per patch volume,
    :func:`abm.model.coupling.bed_scale`), so that the patches receive by
    density the share ``1 / S_v`` of the whole tumour's CAR-T inflow through
    resting vessels (a lift: the blood pool is debited by the whole inflow in
    :mod:`abm.model.kinetics`, not cell by cell). The mean over vessel sites of
    ``perm_v`` at free sites, ``tumour_homing_factor``, scales the whole
    tumour's homing there, so the patches and the patient agree in expectation
    when inflamed vessels let more cells through; otherwise a monocyte enters with
    probability ``1 - exp(-k_r (M / 400) (b + e_v) dt)``. Entering CAR-T cells
    are naive-like and carry the blood pool's mean remaining division potential
    (:meth:`_entry_potential`); monocytes are labelled recruited.
    """

    phase = "blood_to_tissue"
    meta = {k: META[k] for k in ("cart_entered_total", "monocytes_recruited_total",
                                 "blood_cart_cells_seen")}

    def __init__(self, sim):
        super().__init__(sim)
        cfg, lat = sim.config, sim.state.lattice
        self.dt = cfg.run.dt_s
        self.ep = endothelial_params(cfg, self.dt, lat.voxel_ml)
        self.vsites = lat.vessel_sites
        self.cfg = cfg
        self.S = bed_scale(cfg)
        self.n_v = max(1, len(self.vsites))
        self.k_mono = cfg.myeloid.recruit_per_vessel_per_day / 86400.0
        self.mono_basal = cfg.myeloid.recruit_basal_activation
        self.mono_default = cfg.myeloid.blood_monocytes_per_ul
        self.max_div = cart.patient_division_potential(cfg, sim.seed)
        self._out = np.zeros(len(self.vsites), dtype=np.int8)
        self._erows = EndothelialRows()
        self._e_at = np.zeros(lat.n_sites, dtype=np.float64)
        self._free_perm = np.zeros(len(self.vsites), dtype=np.float64)

    def step(self, state):
        c, sc = state.cells, state.scalars
        erows = self._erows(c)
        fields = state.fields.reshape(state.fields.shape[0], -1)
        update_permeability(erows, c.site, c.activation, fields, state.perm, self.ep)
        nc = nm = 0
        if len(self.vsites):
            KY.scatter_rows(self._e_at, erows, c.site, c.activation)
            n_blood = max(0.0, float(sc.get("blood_cart_cells", 0.0)))
            mono = max(0.0, float(sc.get("blood_monocytes_per_ul", self.mono_default)))
            burden = float(sc.get("tumour_cells", self.cfg.patient.burden_cells))
            k_home = tumour.homing_rate_per_day(self.cfg, burden) / 86400.0 / (self.S * self.n_v)
            lam_c = k_home * n_blood
            sc["tumour_homing_factor"] = self._homing_factor(c, state.perm, lam_c)
            lam_m = self.k_mono * mono / myeloid.REFERENCE_MONOCYTES_PER_UL
            nc, nm = vessel_entry(state.seed, state.step, self.vsites, c.occ, state.perm,
                                  self._e_at, lam_c, lam_m, self.mono_basal, self.dt, self._out)
            nc, nm = int(nc), int(nm)
            if nc:
                sites = self.vsites[self._out == 1]
                c.add(C.CART, sites, phenotype=C.CART_NAIVE,
                      divisions_left=self._entry_potential(state, sites), target=-1)
            if nm:
                c.add(C.MYELOID, self.vsites[self._out == 2], phenotype=C.MYELOID_RECRUITED)
        sc["cart_entered_step"] = nc
        _add(sc, "cart_entered_total", nc)
        sc["monocytes_recruited_step"] = nm
        _add(sc, "monocytes_recruited_total", nm)

    def _homing_factor(self, cells, perm, lam_c: float) -> float:
        """The patches' expected CAR-T entries this step over ``lam_c dt n_v`` (1 at rest).

        Each free vessel site takes a cell with probability ``1 - exp(-lam_c
        perm_v dt)``; their sum is the expected entries. The patient model
        scales the whole tumour's homing by this factor, so the patches and
        the patient agree in expectation when inflamed vessels let more cells
        through, and when occupied or saturated sites let fewer.
        """
        m = KY.free_site_values(cells.occ, self.vsites, perm, KM.FREE, self._free_perm)
        p = self._free_perm[:m]
        x = lam_c * self.dt
        # (np.add.reduce is what ndarray.sum calls, without its Python layers)
        if x <= 0.0:
            return float(np.add.reduce(p)) / self.n_v
        return float(-np.add.reduce(np.expm1(-x * p))) / (x * self.n_v)

    def _entry_potential(self, state, sites) -> np.ndarray:
        """Division potential of the CAR-T cells entering at ``sites`` this step.

        Entrants come from the blood pool, whose mean remaining potential
        ``m = scalars["cart_pool_divisions_left"]`` (blood model; the product's
        ``max_divisions`` before any cell has divided) falls as the pool fills
        with cells that already expanded in the tumour and with homeostatic
        divisions. Each entrant gets ``floor(m)`` or ``floor(m) + 1`` with
        probability ``m - floor(m)`` (stream ``CART_ENTRY``, draw 1 at the
        vessel site), so the mean is ``m``.
        """
        m = min(float(self.max_div), max(0.0, float(state.scalars.get("cart_pool_divisions_left",
                                                                    self.max_div))))
        base = math.floor(m)
        frac = m - base
        out = np.full(len(sites), base, dtype=np.int32)
        if frac > 0.0:
            for i, v in enumerate(sites):
                if rng.uniform(state.seed, streams.CART_ENTRY, state.step, int(v), 1) < frac:
                    out[i] += 1
        return out

    def record(self, state, row):
        sc = state.scalars
        row["cart_entered_total"] = int(sc.get("cart_entered_total", 0))
        row["monocytes_recruited_total"] = int(sc.get("monocytes_recruited_total", 0))
        row["blood_cart_cells_seen"] = float(sc.get("blood_cart_cells", 0.0))


class CellRules(Process):
    """Endothelial, tumour, CAR-T and myeloid rules (phase ``agents``)."""

    phase = "agents"
    meta = {k: v for k, v in META.items()
            if k not in ("cart_entered_total", "monocytes_recruited_total", "blood_cart_cells_seen")}

    #: Class-level switch: run :meth:`abm.cells.CellTable.check_invariants`
    #: after every step (tests turn it on).
    check_invariants = False
    #: Steps with at least this many cells run their tile loops in parallel
    #: (results do not depend on it; tests set 1 to exercise the threads).
    #: With one active thread the parallel loops are kept: measured, the
    #: serial loops were no faster at 1e5 cells (they pay reference counting
    #: on every tile call that the parallel lowering avoids).
    par_min = KS.PAR_MIN
    #: Tile edge in sites (2D; 3D uses :attr:`tile_3d`). Tiles set the update
    #: order (tile colours, then site colours inside a tile), so changing it
    #: changes the realisation, not the distribution.
    tile_2d = 32
    tile_3d = 12

    def __init__(self, sim):
        super().__init__(sim)
        cfg, lat = sim.config, sim.state.lattice
        dt, vml = cfg.run.dt_s, lat.voxel_ml
        self.tp = tumour.kernel_params(cfg.tumour, dt, vml)
        self.cp = cart.kernel_params(cfg.product, dt, vml)
        self.mp = myeloid.kernel_params(cfg.myeloid, dt, vml)
        self.ep = endothelial_params(cfg, dt, vml)
        self.n_move, self.p_cart, self.p_mye = movement_plan(cfg, lat)
        tile = self.tile_2d if lat.ndim == 2 else self.tile_3d
        site_key, self.tile_start, n_keys, rank = KM.tile_layout(lat.zyx_shape, tile)
        # int32 halves the memory traffic of neighbour scans (sites < 2**31)
        nb_type = np.int32 if lat.n_sites < 2**31 - 1 else np.int64
        # the per-site arrays the agent pass reads, packed (huge pages on large lattices)
        self.site_key, self.rank, self.vessel, self.neighbours = C.packed_arrays([
            (site_key.shape, np.int64, site_key), (rank.shape, np.int64, rank),
            (lat.vessel.shape, np.bool_, lat.vessel),
            (lat.neighbours.shape, nb_type, lat.neighbours)])
        nc = KM.n_colours(lat.zyx_shape)
        # site offsets of the lattice rows (and planes) around a site: the
        # occupancy lines the kernels prefetch for a cell's neighbourhood
        nz, ny, nx = lat.zyx_shape
        dzs = (-1, 0, 1) if nz > 1 else (0,)
        self.occ_rows = np.array([dz * ny * nx + dy * nx for dz in dzs for dy in (-1, 0, 1)],
                                 dtype=np.int64)
        self.record_every = max(1, cfg.run.every_steps(cfg.run.record_every_min))
        # scratch (contents never outlive one step)
        self._start = np.zeros(KM.N_UPDATED_KINDS * n_keys + 1, dtype=np.int64)
        self._class_order = np.zeros(nc, dtype=np.int64)
        self._tile_order = np.zeros(len(self.tile_start) - 1, dtype=np.int64)
        self._counts = np.zeros(KS.N_COUNTS, dtype=np.int64)
        self._tcount = np.zeros((int(self.tile_start[-1]), KT.TC_N), dtype=np.int64)
        self._sums = np.zeros(KS.N_SUMS, dtype=np.float64)
        self._cap = -1
        self._called = False
        self._erows = EndothelialRows()
        # static grouping of tumour rows (valid while the table layout is unchanged)
        self._sstart = np.zeros(n_keys + 1, dtype=np.int64)
        self._static_info = np.zeros(2, dtype=np.int64)
        self._static_layout = None
        # registered CAR-T rules: their own passes after the core pass
        self.extra_rules = RegisteredCartRules(dt)
        if self.extra_rules.meta:
            self.meta = {**self.meta, **self.extra_rules.meta}
        # kernel argument bundles, rebuilt only when one of their arrays is replaced
        self._env = np.zeros(KC.ENV_N, dtype=np.float64)
        self._params = RuleParams(self.tp, self.cp, self.mp, self.ep, self._env, self.n_move,
                                  self.p_cart, self.p_mye)
        self._cells = self._sites = self._fld = self._fld_of = None
        self._entry = self._entry_for = self._kernel = None
        # record tallies (abm.kernels.tallies.record_tallies)
        self._tally_counts = np.zeros(KY.N_TALLIES, dtype=np.int64)
        self._tally_means = np.zeros(KY.N_MEANS)
        self._tally_scratch = np.zeros((KY.N_MEANS, 0))

    def _bundles(self, state):
        """The cell-column, site and field bundles of ``state`` (rebuilt when an array is replaced)."""
        c = state.cells
        cb = self._cells
        cols = (c.id, c.kind, c.site, c.phenotype, c.activation, c.antigen, c.engagements,
                c.divisions_left, c.target, c.timer, c.store, c.glycolytic, c.oxidative)
        if cb is None or any(a is not b for a, b in zip(cb, cols)):
            self._cells = CellColumns(*cols)
        if self._sites is None or self._sites.occ is not c.occ:
            self._sites = SiteArrays(c.occ, self.neighbours, self.vessel, self.site_key,
                                     self.tile_start, self.occ_rows)
        src = self._fld_of
        if (src is None or src[0] is not state.fields or src[1] is not state.sources
                or src[2] is not state.uptake or src[3] is not state.perm):
            self._fld = FieldArrays(state.fields.reshape(state.fields.shape[0], -1), state.sources,
                                    state.uptake, state.perm)
            self._fld_of = (state.fields, state.sources, state.uptake, state.perm)
        return self._cells, self._sites, self._fld

    def _scratch(self, capacity: int) -> None:
        if capacity != self._cap:
            i8, i4, f8 = np.int64, np.int32, np.float64
            (self._rows, self._kbuf, self._motile, self._hopmask, self._birth_site,
             self._birth_value, self._events, self._il6, self._vwf, self._ang2, self._growth,
             self._srows, self._smotile) = C.packed_arrays([
                 ((capacity,), i8, 0), ((capacity,), i4, 0), ((capacity,), i8, 0),
                 ((capacity,), i8, 0), ((capacity,), i8, -1), ((capacity,), f8, 0.0),
                 ((capacity,), i4, 0), ((capacity,), f8, 0.0), ((capacity,), f8, 0.0),
                 ((capacity,), f8, 0.0), ((capacity,), f8, 0.0), ((capacity,), i8, 0),
                 ((capacity,), i8, 0)])
            self._static_layout = None
            self._cap = capacity
            self._tgroups = TumourGroups(self._sstart, self._srows, self._smotile,
                                         self._static_info)
            self._scratch_bundle = Scratch(self._start, self._rows, self._kbuf, self._motile,
                                           self._hopmask, self._class_order, self._tile_order,
                                           self._birth_site, self._birth_value)
            self._tallies = Tallies(self._events, self._il6, self._vwf, self._ang2, self._growth,
                                    self._tcount, self._counts, self._sums)

    def step(self, state):
        c, sc = state.cells, state.scalars
        if state.step % SORT_EVERY_STEPS == 0:
            sort_by_site(c, self.rank)
        if state.step % self.record_every == 0:
            sc["cart_kills_interval"] = 0
        c.ensure_capacity(c.n)  # room for one daughter per row
        self._scratch(c.capacity)
        n = c.n
        erows = self._erows(c)
        cells, sites, fld = self._bundles(state)
        self._env[:] = environment(state)
        rebuild = self._static_layout != c.layout
        self._static_layout = c.layout
        bundles = (cells, sites, fld, self._params, self._tgroups, self._scratch_bundle,
                   self._tallies)
        args = (state.seed, state.step, n, c.next_id, erows, rebuild, self.par_min, *bundles)
        kernel = KS.agent_step_kernel()   # serial with one thread (not compiled otherwise)
        if self._called and kernel is self._kernel:
            # the compiled entry for these argument types, found again whenever a bundle is rebuilt
            if self._entry_for is None or any(a is not b for a, b in zip(bundles, self._entry_for)):
                self._entry = resolved(kernel, args)
                self._entry_for = bundles
            new_n = self._entry(*args)
        else:
            with _quiet_compile(kernel):
                new_n = kernel(*args)
            self._kernel, self._entry_for = kernel, None
        self._called = True
        new_n = int(new_n)
        c.next_id += new_n - n
        c.n = new_n
        # (tolist: Python ints and floats, equal to int()/float() of each entry)
        k, s = self._counts.tolist(), self._sums.tolist()
        get = sc.get
        kills = k[KS.N_KILLS]
        sc["cart_kills_step"] = kills
        sc["cart_kills_total"] = get("cart_kills_total", 0) + kills
        sc["cart_kills_interval"] = get("cart_kills_interval", 0) + kills
        by = k[KS.N_BYSTANDER]
        sc["tumour_bystander_kills_step"] = by
        sc["tumour_bystander_kills_total"] = get("tumour_bystander_kills_total", 0) + by
        sc["cart_egressed_step"] = k[KS.N_EGRESS]
        sc["cart_expected_growth_step"] = s[KS.S_CART_GROWTH]
        sc["cart_egressed_divisions_left_step"] = k[KS.N_EGRESS_DIVISIONS_LEFT]
        sc["cart_egressed_total"] = get("cart_egressed_total", 0) + k[KS.N_EGRESS]
        sc["tumour_lysed_step"] = k[KS.N_LYSED]
        sc["tumour_lysed_total"] = get("tumour_lysed_total", 0) + k[KS.N_LYSED]
        sc["cart_died_total"] = get("cart_died_total", 0) + k[KS.N_CART_DIED]
        sc["tumour_died_total"] = get("tumour_died_total", 0) + k[KS.N_TUMOUR_DIED]
        sc["myeloid_died_total"] = get("myeloid_died_total", 0) + k[KS.N_MYELOID_DIED]
        sc["cart_engagements_total"] = get("cart_engagements_total", 0) + k[KS.N_ENGAGED]
        sc["cart_exhausted_total"] = get("cart_exhausted_total", 0) + k[KS.N_EXHAUSTED]
        sc["il6_secreted_cart_pg"] = get("il6_secreted_cart_pg", 0) + s[KS.S_IL6_CART]
        sc["il6_secreted_myeloid_pg"] = get("il6_secreted_myeloid_pg", 0) + s[KS.S_IL6_MYELOID]
        sc["vwf_released_step_pg"] = s[KS.S_VWF]
        sc["ang2_released_step_pg"] = s[KS.S_ANG2]
        sc["vwf_released_pg"] = get("vwf_released_pg", 0) + s[KS.S_VWF]
        sc["ang2_released_pg"] = get("ang2_released_pg", 0) + s[KS.S_ANG2]
        self.extra_rules.step(state, fld.fields)
        if self.check_invariants or C.CellTable.check_each_step:
            c.check_invariants(state.lattice)

    def record(self, state, row):
        c, sc = state.cells, state.scalars
        n = c.n
        if self._tally_scratch.shape[1] < n:
            self._tally_scratch = np.zeros((KY.N_MEANS, max(n, 2 * self._tally_scratch.shape[1])))
        k, m = self._tally_counts, self._tally_means
        KY.record_tallies(c.kind, c.phenotype, c.activation, c.target, c.glycolytic, c.oxidative,
                          c.store, n, k, m, self._tally_scratch)
        k, m = k.tolist(), m.tolist()
        row["n_cart_naive"] = k[KY.T_CART_NAIVE]
        row["n_cart_effector"] = k[KY.T_CART_EFFECTOR]
        row["n_cart_memory"] = k[KY.T_CART_MEMORY]
        row["n_cart_exhausted"] = k[KY.T_CART_EXHAUSTED]
        row["n_cart_engaged"] = k[KY.T_CART_ENGAGED]
        row["cart_mean_activation"] = m[KY.M_CART_ACTIVATION]
        row["cart_mean_glycolytic"] = m[KY.M_CART_GLYCOLYTIC]
        row["cart_mean_oxidative"] = m[KY.M_CART_OXIDATIVE]
        row["n_tumour_dying"] = k[KY.T_TUMOUR_DYING]
        row["n_myeloid_resident"] = k[KY.T_MYELOID_RESIDENT]
        row["n_myeloid_recruited"] = k[KY.T_MYELOID_RECRUITED]
        row["n_myeloid_activated"] = k[KY.T_MYELOID_ACTIVATED]
        row["myeloid_mean_activation"] = m[KY.M_MYELOID_ACTIVATION]
        row["endothelial_mean_activation"] = m[KY.M_ENDOTHELIAL_ACTIVATION]
        row["endothelial_mean_store"] = m[KY.M_ENDOTHELIAL_STORE]
        vs = state.lattice.vessel_sites
        row["vessel_mean_permeability"] = float(state.perm[vs].mean()) if len(vs) else 0.0
        for key in ("cart_kills_interval", "cart_kills_total", "tumour_bystander_kills_total",
                    "tumour_lysed_total",
                    "cart_egressed_total", "cart_died_total", "tumour_died_total",
                    "myeloid_died_total", "cart_exhausted_total"):
            row[key] = int(sc.get(key, 0))
        for key in ("il6_secreted_cart_pg", "il6_secreted_myeloid_pg", "vwf_released_pg",
                    "ang2_released_pg"):
            row[key] = float(sc.get(key, 0.0))
        self.extra_rules.record(state, row)


#: The processes of this module in step order.
AGENT_PROCESSES = (Extravasation, CellRules)

__all__ = ["Extravasation", "CellRules", "AGENT_PROCESSES", "META", "movement_plan",
           "sort_by_site", "environment", "SORT_EVERY_STEPS"]
