"""Re-lifting the patches: the sampled regions stay a sample of the whole tumour.

The patches are regions sampled from the tumour bed, ``1 / S_v`` of it, so
their alive tumour cells ``n`` should be a Poisson count around the whole
tumour's density, ``n* = T / S_v``. The whole tumour ``T`` follows the
patches' per-capita rates (:mod:`abm.model.coupling`) at the patient's CAR-T
density, while the patches kill at their own, sampled CAR-T density, so the
two drift apart. Left alone, a patch whose CAR-T clear it early stops
measuring anything: with no tumour cells left the moving averages of kills
and of tumour cell-time decay together, their ratio (the kill hazard) stays
frozen at its last, high value, and the whole tumour is driven to zero
although most of it was never in a patch; one patch with a few antigen-low
survivors freezes it near zero instead. Either way the response depends on
how many patches there are.

Each step, before the agents (phase ``blood_to_tissue``), the patches' count
``n`` is tested against ``Poisson(n*)``: when it lies outside the two-sided
interval of level ``coupling.relift_alpha`` (0.003, about 3 SD), the
patches are re-lifted to ``n*``: ``n* - n`` cells (rounded stochastically)
are added or removed. This is the lift of heterogeneous-multiscale "patch
dynamics": the coarse state re-initialises the micro state when they no
longer agree. Inside the interval nothing changes, so the patches keep their
own spatial structure and noise.

* **Added cells** are copies of patch cells placed beside them, as a
  division would place a daughter: a cell is antigen-negative with the whole
  tumour's share ``T- / T``, copies an alive patch cell of its class (negative
  or positive) chosen uniformly, takes its antigen density (so antigen-low
  selection carries over) and a free non-vessel neighbour of its site. The
  survivors of a patch sit where the CAR-T did not reach them (far from
  vessels, behind dying cells); a copy beside them keeps that structure,
  where cells strewn over the bed would sit among the CAR-T and die at once.
  A cell without a donor (none of its class left) or without a free
  neighbour takes a random free site of the initial tumour bed
  (:func:`abm.model.initial.tumour_sites`), else elsewhere, and a positive
  one without a donor draws from the initial antigen distribution.
* **Removed cells** are alive tumour cells chosen uniformly at random. They
  leave the region without lysis: this is re-sampling, not death.

The CAR-T cells are re-lifted the same way. With ``coupling.cart_lift =
"total"`` (the default, which the calibrated defaults were fitted with) the
patches together are lifted to ``C_T / S_v``, as the tumour cells are; with
``"per_patch"`` each of the K patches is lifted to its share of the whole
tumour's CAR-T, ``C_T / (K S_v)``, as follows. Their
early noise is large: the first few entrants and their first divisions decide
whether a patch holds about the patient's density or three times it for the
rest of the run (8 seeds of the default patient at day 7: 0.82 to 3.0 times),
and a patch with too many CAR-T kills its tumour too fast. Lifted as a total,
the CAR-T gathered in the patches their first entrants had cleared while a
patch none had reached kept its tumour to the end (docs/multiscale.md 2): the
whole tumour's CAR-T are one well-mixed pool, so every sample of the tumour
holds its share. An added CAR-T cell is a copy of a CAR-T of its patch chosen
uniformly (phenotype, activation, engagements, division potential, signalling
state; not engaged) beside it, or a naive-like cell with the blood pool's
potential on a random free site of the patch's bed when the patch holds none;
a removed one is chosen uniformly among the patch's. With one patch this is
the lift of the total (draws keyed by the patch number, 0). The density ratio ``rho`` of
:mod:`abm.model.coupling` still corrects what is left inside the interval.

**Test cells** (``per_patch`` only). A large tumour's CAR-T can give each patch less than one cell
(a 1e12-cell tumour with 1e7 CAR-T: 0.05 per 4464-cell patch). A Poisson
sample of that holds none most of the time, and a patch without CAR-T
measures no per-capita rate: the whole tumour's CAR-T then follow a stale
rate or the prior (death) and never expand, however much antigen the patient
carries. So while the whole tumour holds at least one CAR-T cell and the
share per patch is under one, each patch holds at least one (a copy of
another patch's CAR-T, or naive-like as above when none has any) and more
than Poisson(1) allows are trimmed back to one. The cell measures the
per-capita rates of a CAR-T cell in that tumour; ``rho``, then the share
itself, weighs its kills and cytokines by the fraction of a cell it stands
for.

The moving averages' base counts (``patch_prev_tumour``, ``..._pos``,
``patch_prev_cart``) move with the lift, so lifted cells never count as
growth, kills or entries. Random draws come from stream ``TUMOUR_RELIFT``
keyed by the step (number rounding: draw 0 tumour, 5 CAR-T with the patch
number as id), by site (random sites: 1) and by the new or removed cells' ids
(which cells go: 4, 6; negative or not: 2; donor: 3 tumour, 7 CAR-T; which
free neighbour: 8, 9).
Direct coupling (``coupling.mode = "direct"``), where the patches are the
whole tumour, never re-lifts.
"""

from __future__ import annotations

import math

import numpy as np

from abm.cells import CART, CART_NAIVE, TUMOUR, TUMOUR_ALIVE
from abm.kernels import rng, streams
from abm.kernels.tallies import cart_per_patch
from abm.model.cart import patient_division_potential
from abm.model.coupling import bed_scale
from abm.model.initial import initial_antigen, tumour_sites
from abm.process import Process


def outside_poisson_interval(n: float, mean: float, alpha: float) -> bool:
    """Whether a count ``n`` lies outside the two-sided level-``alpha`` interval of ``Poisson(mean)``.

    Outside means ``P(N <= n) < alpha / 2`` or ``P(N >= n) < alpha / 2``.
    Counts within ``2 sqrt(mean) + 1`` of the mean are inside for any
    ``alpha <= 0.05`` and are answered without evaluating the distribution.
    """
    if alpha <= 0.0:
        return False
    if abs(n - mean) <= 2.0 * math.sqrt(mean) + 1.0 and alpha <= 0.05:
        return False
    # the Poisson tails from scipy.special (what scipy.stats.poisson evaluates; a third of its import)
    from scipy.special import pdtr, pdtrc
    k = math.floor(n)
    below = pdtr(k, mean) if k >= 0 else 0.0           # P(N <= n)
    above = pdtrc(k - 1, mean) if k >= 1 else 1.0      # P(N >= n)
    return bool(below < alpha / 2.0 or above < alpha / 2.0)


class PatchRelift(Process):
    """Re-lift the patches' tumour and CAR-T cells to the whole tumour's densities (module docstring)."""

    phase = "blood_to_tissue"
    meta = {"tumour_relifted_in_total": ("cells", "tumour cells added to the patches to match the whole "
                                                  "tumour's density (cumulative)"),
            "tumour_relifted_out_total": ("cells", "tumour cells taken out of the patches to match the "
                                                   "whole tumour's density (cumulative)"),
            "cart_relifted_in_total": ("cells", "CAR-T cells added to the patches to match the whole "
                                                "tumour's CAR-T density (cumulative)"),
            "cart_relifted_out_total": ("cells", "CAR-T cells taken out of the patches to match the "
                                                 "whole tumour's CAR-T density (cumulative)")}

    def __init__(self, sim):
        super().__init__(sim)
        cfg, state = sim.config, sim.state
        self.alpha = cfg.coupling.relift_alpha
        self.on = cfg.coupling.mode == "multiscale" and self.alpha > 0.0
        self.scale = bed_scale(cfg)
        self.tumour = cfg.tumour
        lat = state.lattice
        # the initial tumour bed and the other free-able sites (only a lift places cells)
        self.bed = tumour_sites(lat, cfg.tumour.initial_cells, state.seed) if self.on else \
            np.empty(0, dtype=np.int64)
        in_bed = np.zeros(lat.n_sites, dtype=bool)
        in_bed[self.bed] = True
        self.elsewhere = np.flatnonzero(~in_bed & ~lat.vessel) if self.on else self.bed
        self.lift_per_patch = cfg.coupling.cart_lift == "per_patch"
        # with the total lift the K patches are one group (patch 0 of 1)
        self.n_patches = lat.n_patches if self.lift_per_patch else 1
        self.patch_of = lat.patch_of
        self.patch_sites = lat.patch_sites
        self.cart_counts = np.zeros(lat.n_patches, dtype=np.int64)
        self.max_div = patient_division_potential(cfg, state.seed)
        s = state.scalars
        for key in self.meta:
            s.setdefault(key, 0)

    def step(self, state) -> None:
        s = state.scalars
        if not self.on or "patch_prev_tumour" not in s:
            return
        m = self._excess(state, s["patch_prev_tumour"], max(0.0, s["tumour_cells"]) / self.scale, 0)
        if m > 0:
            added, positive = self._add(state, m)
            s["patch_prev_tumour"] += added
            s["patch_prev_tumour_pos"] += positive
            s["tumour_relifted_in_total"] += added
        elif m < 0:
            removed, positive = self._remove(state, -m)
            s["patch_prev_tumour"] -= removed
            s["patch_prev_tumour_pos"] -= positive
            s["tumour_relifted_out_total"] += removed
        # CAR-T patch by patch: each patch is a sample of the tumour, at its CAR-T density
        k_n = self.n_patches
        if k_n == 1:
            counts = [s["patch_prev_cart"]]
        else:
            c = state.cells
            cart_per_patch(c.kind, c.site, c.n, self.patch_sites, self.cart_counts)
            counts = self.cart_counts.tolist()
        share = max(0.0, s["tumour_cart_cells"]) / (k_n * self.scale)
        sparse = self.lift_per_patch and 1.0 <= s["tumour_cart_cells"] and share < 1.0
        # sparse: one test cell per patch measures the per-capita rates of a share under one cell
        # (rho in abm.model.coupling weighs what it does to the tumour and the plasma by the share)
        target = 1.0 if sparse else max(0.0, s["tumour_cart_cells"] / k_n) / self.scale
        for k, n in enumerate(counts):
            m = 1 if sparse and n == 0 else self._excess(state, n, target, 5, patch=k)
            if m > 0:
                added = self._add_cart(state, m, k)
                s["patch_prev_cart"] += added
                s["cart_relifted_in_total"] += added
            elif m < 0:
                removed = self._remove_cart(state, -m, k)
                s["patch_prev_cart"] -= removed
                s["cart_relifted_out_total"] += removed

    def _excess(self, state, n: float, target: float, draw: int, patch: int = 0) -> int:
        """Cells to add (> 0) or remove (< 0) so that the count ``n`` becomes ``target``; 0 when ``n``
        lies inside the Poisson interval around it."""
        if not outside_poisson_interval(n, target, self.alpha):
            return 0
        delta = target - n
        m = math.floor(abs(delta))
        m += int(rng.uniform(state.seed, streams.TUMOUR_RELIFT, state.step, patch, draw) < abs(delta) - m)
        return m if delta > 0 else -m

    def _in_patch(self, sites: np.ndarray, patch: int | None) -> np.ndarray:
        """Those of ``sites`` in patch ``patch`` (all for None or a single patch)."""
        if patch is None or self.n_patches == 1:
            return sites
        return sites[self.patch_of(sites) == patch]

    def _pick(self, state, candidates: np.ndarray, m: int, draw: int) -> np.ndarray:
        """``m`` of ``candidates`` (site or id numbers) chosen uniformly: the smallest keys."""
        if m >= len(candidates):
            return candidates
        keys = rng.uniform_array(state.seed, streams.TUMOUR_RELIFT, state.step, candidates, draw)
        return candidates[np.argsort(keys, kind="stable")[:m]]

    def _random_free(self, state, m: int, taken: set, patch: int | None = None) -> list:
        """``m`` free non-vessel sites not in ``taken``, at random: the tumour bed first, then elsewhere
        (of patch ``patch`` only, unless None)."""
        occ = state.cells.occ
        out = []
        for pool in (self.bed, self.elsewhere):
            pool = self._in_patch(pool, patch)
            free = pool[occ[pool] < 0]
            free = free[~np.isin(free, list(taken))] if taken else free
            out.extend(self._pick(state, free, m - len(out), 1).tolist())
            if len(out) >= m:
                break
        return out

    def _beside(self, state, donors: np.ndarray, u: np.ndarray, patch: int | None = None) -> np.ndarray:
        """A site for each new cell: a free neighbour of its donor's site (``-1``: no donor), chosen
        with ``u``; cells whose donor has no free neighbour get a random free site (:meth:`_random_free`).
        Sites are distinct; fewer than asked when the patches are full."""
        c, lat = state.cells, state.lattice
        nb, occ, vessel = lat.neighbours, c.occ, lat.vessel
        taken: set = set()
        sites = np.full(len(donors), -1, dtype=np.int64)
        for i, d in enumerate(donors):
            if d < 0:
                continue
            free = [q for q in nb[c.site[d]] if q >= 0 and occ[q] < 0 and not vessel[q] and q not in taken]
            if free:
                sites[i] = free[min(int(u[i] * len(free)), len(free) - 1)]
                taken.add(int(sites[i]))
        lost = np.flatnonzero(sites < 0)
        spare = self._random_free(state, len(lost), taken, patch)
        sites[lost[:len(spare)]] = spare
        return sites

    def _donors(self, state, candidates: np.ndarray, m: int, draw: int) -> np.ndarray:
        """For each of ``m`` new cells a donor row of ``candidates`` chosen uniformly (-1 if none)."""
        if len(candidates) == 0:
            return np.full(m, -1, dtype=np.int64)
        ids = state.cells.next_id + np.arange(m, dtype=np.int64)   # the ids the new cells will get
        pick = (rng.uniform_array(state.seed, streams.TUMOUR_RELIFT, state.step, ids, draw)
                * len(candidates)).astype(np.int64)
        return candidates[np.minimum(pick, len(candidates) - 1)]

    def _add(self, state, m: int) -> tuple[int, int]:
        """Add ``m`` tumour cells; returns (cells added, antigen-positive among them)."""
        c, s = state.cells, state.scalars
        ids = c.next_id + np.arange(m, dtype=np.int64)
        t = max(s["tumour_cells"], 1e-300)
        neg_share = min(1.0, max(0.0, s.get("tumour_antigen_negative_cells", 0.0) / t))
        negative = rng.uniform_array(state.seed, streams.TUMOUR_RELIFT, state.step, ids, 2) < neg_share
        alive = c.rows_of(TUMOUR)
        alive = alive[c.phenotype[alive] == TUMOUR_ALIVE]
        pos = c.antigen[alive] > 0.0
        donors = np.where(negative, self._donors(state, alive[~pos], m, 3),
                          self._donors(state, alive[pos], m, 3))
        u = rng.uniform_array(state.seed, streams.TUMOUR_RELIFT, state.step, ids, 8)
        sites = self._beside(state, donors, u)
        keep = sites >= 0
        sites, donors, negative, ids = sites[keep], donors[keep], negative[keep], ids[keep]
        if len(sites) == 0:
            return 0, 0
        fresh = initial_antigen(self.tumour, state.seed, ids)
        fresh = np.where(fresh > 0.0, fresh, self.tumour.antigen_median_molecules)
        antigen = np.where(donors >= 0, c.antigen[np.maximum(donors, 0)], fresh)
        rows = c.add(TUMOUR, sites, phenotype=TUMOUR_ALIVE)
        c.antigen[rows] = np.where(negative, 0.0, antigen)
        return len(rows), int(np.count_nonzero(~negative))

    def _remove(self, state, m: int) -> tuple[int, int]:
        """Remove ``m`` alive tumour cells; returns (cells removed, antigen-positive among them)."""
        c = state.cells
        alive = c.rows_of(TUMOUR)
        alive = alive[c.phenotype[alive] == TUMOUR_ALIVE]
        ids = self._pick(state, c.id[alive], m, 4)
        rows = alive[np.isin(c.id[alive], ids)]
        positive = int(np.count_nonzero(c.antigen[rows] > 0.0))
        c.remove(rows)
        return len(rows), positive

    def _cart_rows(self, state, patch: int) -> np.ndarray:
        """Rows of the CAR-T cells in patch ``patch``."""
        c = state.cells
        rows = c.rows_of(CART)
        return rows if self.n_patches == 1 else rows[self.patch_of(c.site[rows]) == patch]

    def _add_cart(self, state, m: int, patch: int = 0) -> int:
        """Add ``m`` CAR-T cells to patch ``patch``, copies of its CAR-T cells beside them; returns
        the cells added."""
        c, s = state.cells, state.scalars
        own = self._cart_rows(state, patch)
        # a patch without CAR-T copies those of the others (the whole tumour's CAR-T are one pool)
        # on free sites of its own
        donors = self._donors(state, own if len(own) else c.rows_of(CART), m, 7)
        ids = c.next_id + np.arange(m, dtype=np.int64)
        sites = self._beside(state, donors if len(own) else np.full(m, -1, dtype=np.int64),
                             rng.uniform_array(state.seed, streams.TUMOUR_RELIFT, state.step, ids, 9),
                             patch)
        keep = sites >= 0
        sites, donors = sites[keep], donors[keep]
        if len(sites) == 0:
            return 0
        rows = c.add(CART, sites, phenotype=CART_NAIVE, target=-1)
        copied = donors >= 0
        for name in ("phenotype", "activation", "engagements", "divisions_left", "timer",
                     "glycolytic", "oxidative"):
            col = getattr(c, name)
            col[rows[copied]] = col[donors[copied]]
        if not copied.all():
            pool = s.get("cart_pool_divisions_left", self.max_div)
            c.divisions_left[rows[~copied]] = int(round(min(self.max_div, max(0.0, pool))))
        return len(rows)

    def _remove_cart(self, state, m: int, patch: int = 0) -> int:
        """Remove ``m`` CAR-T cells of patch ``patch`` chosen uniformly; returns the cells removed."""
        c = state.cells
        rows = self._cart_rows(state, patch)
        ids = self._pick(state, c.id[rows], m, 6)
        rows = rows[np.isin(c.id[rows], ids)]
        c.remove(rows)
        return len(rows)

    def record(self, state, row) -> None:
        s = state.scalars
        for key in self.meta:
            row[key] = int(s[key])


__all__ = ["PatchRelift", "outside_poisson_interval"]
