"""Pointwise secretion, uptake, decay and exchange with blood of all cytokine fields.

Step 1 of the field phase (:mod:`abm.kernels.diffusion_common`): the
pointwise ODE per voxel and species, solved exactly (or backward Euler),
returning the masses exchanged with blood, taken up and decayed.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numba
import numpy as np

from abm.kernels.diffusion_common import as_species_vector, check_field, numba_threads
from abm.kernels.jit import jit, pjit

SOURCE_SINK_METHODS = ("exact", "backward_euler")

#: Rows of the mass array returned by the source-sink stepper (pg, per species).
MASS_EXCHANGED = 0  # net tissue -> blood (negative: blood -> tissue)
MASS_UPTAKE = 1     # taken up by cells
MASS_DECAYED = 2    # first-order decay, only when decay is given to the source-sink stepper

#: Sites per block of the source-sink kernel; masses are summed per block then serially.
SITE_BLOCK = 4096

#: The arrays updated per site: ``conc`` ``(F, n_sites)`` pg/mL (in place),
#: ``source`` pg/mL/s and ``uptake`` 1/s ``(F, n_sites)``, ``perm`` ``(n_sites,)``.
SiteTerms = namedtuple("SiteTerms", ["conc", "source", "uptake", "perm"])

#: Per-species rates ``(F,)``: exchange at permeability 1 (1/s), decay (1/s),
#: decay factor ``exp(-k dt)`` and integral ``(1 - exp(-k dt)) / k`` (s).
SpeciesRates = namedtuple("SpeciesRates", ["exchange", "decay", "decay_factor", "decay_integral"])


# --------------------------------------------------------------------------- #
# compiled kernels: sources and sinks
# --------------------------------------------------------------------------- #

@jit
def _ss_block(sites, rates, blood, dt, exact, blk, partial):
    """Pointwise update of the sites of block ``blk``, all species; masses into ``partial``.

    ``sites``: :class:`SiteTerms`; ``rates``: :class:`SpeciesRates`; ``blood``
    ``(F,)`` plasma concentrations, pg/mL; ``dt`` s.

    Per voxel and species, with ``lam = k_up + k_ex p + k_dec`` and
    ``R = S + k_ex p C_b``:

    * exact: ``C1 = C0 exp(-lam dt) + R (1 - exp(-lam dt)) / lam``; the mass
      removed by the first-order terms, ``L = C0 + R dt - C1``, is shared as
      uptake ``k_up/lam L``, decay ``k_dec/lam L`` and exchange
      ``k_ex p / lam L - k_ex p C_b dt`` (net tissue -> blood);
    * backward Euler: ``C1 = (C0 + R dt) / (1 + lam dt)``; uptake
      ``k_up dt C1``, decay ``k_dec dt C1``, exchange ``k_ex p dt (C1 - C_b)``.

    Either way ``C1 - C0 = S dt - uptake - decay - exchange`` per voxel.
    """
    c2 = sites.conc
    S2 = sites.source
    K2 = sites.uptake
    perm = sites.perm
    kex = rates.exchange
    kdec = rates.decay
    edec = rates.decay_factor
    phidec = rates.decay_integral
    F = c2.shape[0]
    n = c2.shape[1]
    lo = blk * SITE_BLOCK
    hi = min(lo + SITE_BLOCK, n)
    for f in range(F):
        c = c2[f]
        S = S2[f]
        K = K2[f]
        kx = kex[f]
        cb = blood[f]
        kd = kdec[f]
        ed = edec[f]
        pd = phidec[f]
        exch = 0.0
        upt = 0.0
        dec = 0.0
        if exact:
            for i in range(lo, hi):
                c0 = c[i]
                ku = K[i]
                kp = kx * perm[i]
                if ku == 0.0 and kp == 0.0:
                    if kd == 0.0:
                        c[i] = c0 + S[i] * dt
                    else:
                        tot = c0 + S[i] * dt
                        c1 = c0 * ed + S[i] * pd
                        c[i] = c1
                        dec += tot - c1
                else:
                    lam = ku + kp + kd
                    rin = S[i] + kp * cb
                    em1 = math.expm1(-lam * dt)  # exp(-lam dt) - 1, accurate for small lam dt
                    c1 = c0 * (1.0 + em1) + rin * (-em1 / lam)
                    c[i] = c1
                    loss = (c0 + rin * dt) - c1
                    upt += ku / lam * loss
                    dec += kd / lam * loss
                    exch += kp / lam * loss - kp * cb * dt
        else:
            for i in range(lo, hi):
                ku = K[i]
                kp = kx * perm[i]
                c1 = (c[i] + (S[i] + kp * cb) * dt) / (1.0 + (ku + kp + kd) * dt)
                c[i] = c1
                upt += ku * dt * c1
                dec += kd * dt * c1
                exch += kp * dt * (c1 - cb)
        partial[0, f, blk] = exch
        partial[1, f, blk] = upt
        partial[2, f, blk] = dec


@jit
def _ss_sum(partial, vol_ml, mass):
    for q in range(partial.shape[0]):
        for f in range(partial.shape[1]):
            tot = 0.0
            for b in range(partial.shape[2]):
                tot += partial[q, f, b]
            mass[q, f] = tot * vol_ml


@pjit
def _ss_par(sites, rates, blood, dt, exact, vol_ml, partial, mass):
    for blk in numba.prange(partial.shape[2]):
        _ss_block(sites, rates, blood, dt, exact, blk, partial)
    _ss_sum(partial, vol_ml, mass)


@jit
def _ss_ser(sites, rates, blood, dt, exact, vol_ml, partial, mass):
    for blk in range(partial.shape[2]):
        _ss_block(sites, rates, blood, dt, exact, blk, partial)
    _ss_sum(partial, vol_ml, mass)


@jit
def _ss_sparse_block(sites, rates, blood, dt, clear, blk, partial):
    """Block ``blk`` of the ``decay_after`` mode: visit only sites with a source, uptake or exchange.

    At such a site the update is that of :func:`_ss_block` (exact), divided
    by ``edec = exp(-k_dec dt)``: the diffusion step that follows multiplies
    every voxel by that factor, so the pair gives the same ``C1`` (to
    rounding) while the other sites, where only decay acts, are not touched
    here at all. Uptake and exchange are summed in site order as in
    :func:`_ss_block` (with ``1 / lam`` computed once, so they agree to
    rounding rather than bit for bit). The decayed-mass partial holds the visited
    sites' decay minus ``(1 - edec) C0`` of the visited sites: the caller adds
    ``(1 - edec) sum(C0)`` over all sites (a vectorised NumPy sum), which
    leaves the decay of the sites not visited. With ``clear`` the visited
    sources and uptakes are reset to 0, which leaves both arrays all zero.
    """
    c2 = sites.conc
    S2 = sites.source
    K2 = sites.uptake
    perm = sites.perm
    kex = rates.exchange
    kdec = rates.decay
    edec = rates.decay_factor
    phidec = rates.decay_integral
    F = c2.shape[0]
    n = c2.shape[1]
    lo = blk * SITE_BLOCK
    hi = min(lo + SITE_BLOCK, n)
    nb = hi - lo
    # OR of the bit patterns: nonzero where any species has S != 0 or K != 0, or perm != 0
    # (integer ORs vectorise; -0.0 counts as nonzero, which only costs a visit)
    bits = perm[lo:hi].view(np.uint64).copy()
    for f in range(F):
        Sb = S2[f, lo:hi].view(np.uint64)
        Kb = K2[f, lo:hi].view(np.uint64)
        for i in range(nb):
            bits[i] |= Sb[i] | Kb[i]
    idx = np.empty(nb, dtype=np.int64)
    m = 0
    for i in range(nb):
        idx[m] = lo + i
        m += bits[i] != 0
    for f in range(F):
        c = c2[f]
        S = S2[f]
        K = K2[f]
        kx = kex[f]
        cb = blood[f]
        kd = kdec[f]
        ed = edec[f]
        inv_ed = 1.0 / ed
        pd = phidec[f]
        visited = 0.0
        exch = 0.0
        upt = 0.0
        dec = 0.0
        for j in range(m):
            i = idx[j]
            ku = K[i]
            kp = kx * perm[i]
            si = S[i]
            if ku == 0.0 and kp == 0.0:
                if si == 0.0:
                    continue   # only decay acts here: left to the diffusion step
                c0 = c[i]
                visited += c0
                tot = c0 + si * dt
                c1 = c0 * ed + si * pd
                dec += tot - c1
            else:
                c0 = c[i]
                visited += c0
                lam = ku + kp + kd
                inv = 1.0 / lam   # one division instead of four (divisions dominate here)
                rin = si + kp * cb
                em1 = math.expm1(-lam * dt)
                c1 = c0 * (1.0 + em1) - rin * em1 * inv
                loss = (c0 + rin * dt) - c1
                upt += ku * inv * loss
                dec += kd * inv * loss
                exch += kp * inv * loss - kp * cb * dt
            c[i] = c1 * inv_ed
        partial[0, f, blk] = exch
        partial[1, f, blk] = upt
        partial[2, f, blk] = dec - (1.0 - ed) * visited   # the caller adds (1 - ed) sum(C0)
        if clear:
            for j in range(m):
                i = idx[j]
                S[i] = 0.0
                K[i] = 0.0


@pjit
def _ss_sparse_par(sites, rates, blood, dt, clear, vol_ml, partial, mass):
    for blk in numba.prange(partial.shape[2]):
        _ss_sparse_block(sites, rates, blood, dt, clear, blk, partial)
    _ss_sum(partial, vol_ml, mass)


@jit
def _ss_sparse_ser(sites, rates, blood, dt, clear, vol_ml, partial, mass):
    for blk in range(partial.shape[2]):
        _ss_sparse_block(sites, rates, blood, dt, clear, blk, partial)
    _ss_sum(partial, vol_ml, mass)


class SourceSinkStepper:
    """Pointwise secretion / uptake / blood exchange; see :func:`make_source_sink_stepper`.

    Attributes: ``shape``, ``n_species``, ``n_sites``, ``h_um``, ``dt_s``,
    ``voxel_volume_ml`` (``h^3 1e-12``), ``exchange_per_s``, ``decay_per_s``
    (zeros unless given), ``method``, ``parallel``, ``decay_after``. Owns the
    per-block partial sums: one call at a time.
    """

    def __init__(self, shape, h_um, dt_s, exchange_per_s, decay_per_s, parallel, method,
                 decay_after=False):
        if method not in SOURCE_SINK_METHODS:
            raise ValueError(f"method must be one of {SOURCE_SINK_METHODS}, got {method!r}")
        if decay_after and method != "exact":
            raise ValueError("decay_after=True needs method='exact'")
        self.method = method
        self.decay_after = bool(decay_after)
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f"shape must be (F, ny, nx) or (F, nz, ny, nx), got {shape}")
        if not (h_um > 0 and dt_s >= 0 and math.isfinite(dt_s)):
            raise ValueError(f"need h_um > 0 and dt_s >= 0, got {h_um}, {dt_s}")
        self.shape = shape
        self.n_species = shape[0]
        self.n_sites = int(np.prod(shape[1:]))
        self.h_um = float(h_um)
        self.dt_s = float(dt_s)
        self.voxel_volume_ml = self.h_um ** 3 * 1e-12
        self.exchange_per_s = as_species_vector(exchange_per_s, self.n_species, "exchange_per_s")
        dec = 0.0 if decay_per_s is None else decay_per_s
        self.decay_per_s = as_species_vector(dec, self.n_species, "decay_per_s")
        x = self.decay_per_s * self.dt_s
        self._edec = np.exp(-x)
        with np.errstate(divide="ignore", invalid="ignore"):
            self._phidec = np.where(self.decay_per_s > 0, -np.expm1(-x) / self.decay_per_s, self.dt_s)
        self._rates = SpeciesRates(self.exchange_per_s, self.decay_per_s, self._edec, self._phidec)
        self.parallel = bool(parallel)
        nblk = -(-self.n_sites // SITE_BLOCK)
        self._partial = np.zeros((3, self.n_species, nblk))

    def _site_array(self, arr, name, per_species):
        want = (self.n_species, self.n_sites) if per_species else (self.n_sites,)
        if (type(arr) is np.ndarray and arr.shape == want and arr.dtype == np.float64
                and arr.flags.c_contiguous):
            return arr   # the common case, checked cheaply
        a = np.asarray(arr)
        if a.dtype != np.float64 or a.size != int(np.prod(want)) or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous float64 array of {want} values, "
                             f"got {a.dtype} {a.shape}")
        return a.reshape(want)

    def __call__(self, conc, source, uptake, perm, blood, mass=None, clear=False, decayed=True):
        """Advance ``conc`` in place by the pointwise ODE over ``dt``; return the masses moved.

        Args:
            conc: ``(F, ny, nx)`` / ``(F, nz, ny, nx)`` pg/mL, updated in place.
            source: ``(F, nsites)`` (or the lattice shape) secretion, pg/mL/s, >= 0.
            uptake: ``(F, nsites)`` first-order uptake rate constants, 1/s, >= 0.
            perm: ``(nsites,)`` vessel permeability (0 away from vessels), >= 0.
            blood: ``(F,)`` plasma concentrations, pg/mL.
            mass: optional ``(3, F)`` float64 output.
            clear: set ``source`` and ``uptake`` to 0 once read (saves the
                caller two passes over them).
            decayed: with ``decay_after``, False skips the decayed mass (row
                :data:`MASS_DECAYED` is then NaN), which saves a pass over ``conc``.

        Returns:
            ``mass`` ``(3, F)`` in pg: row :data:`MASS_EXCHANGED` net tissue ->
            blood, :data:`MASS_UPTAKE` taken up by cells, :data:`MASS_DECAYED`
            lost to decay (zero unless decay was given to this stepper).
        """
        check_field(conc, self.shape)
        c2 = conc.reshape(self.n_species, self.n_sites)
        S2 = self._site_array(source, "source", True)
        K2 = self._site_array(uptake, "uptake", True)
        p1 = self._site_array(perm, "perm", False)
        cb = np.ascontiguousarray(blood, dtype=np.float64).reshape(-1)
        if cb.shape != (self.n_species,):
            raise ValueError(f"blood must have {self.n_species} values, got {cb.shape}")
        if mass is None:
            mass = np.empty((3, self.n_species))
        else:
            check_field(mass, (3, self.n_species), "mass")
        sites = SiteTerms(c2, S2, K2, p1)
        threads = self.parallel and numba_threads() > 1 and self._partial.shape[2] > 1
        if self.decay_after:
            total = c2.sum(axis=1) if decayed else None   # before the update; deterministic
            kernel = _ss_sparse_par if threads else _ss_sparse_ser
            kernel(sites, self._rates, cb, self.dt_s, bool(clear), self.voxel_volume_ml,
                   self._partial, mass)
            if decayed:
                mass[MASS_DECAYED] += (1.0 - self._edec) * total * self.voxel_volume_ml
            else:
                mass[MASS_DECAYED] = np.nan
            return mass
        kernel = _ss_par if threads else _ss_ser
        kernel(sites, self._rates, cb, self.dt_s, self.method == "exact", self.voxel_volume_ml,
               self._partial, mass)
        if clear:
            S2.fill(0.0)
            K2.fill(0.0)
        return mass


def make_source_sink_stepper(shape, h_um, dt_s, exchange_per_s, decay_per_s=None,
                             parallel=True, method="exact", decay_after=False) -> SourceSinkStepper:
    """Build the pointwise secretion / uptake / blood-exchange stepper (exact in time by default).

    Per voxel and species, over one ``dt`` with all rates frozen,

    .. math::

        \\frac{dC}{dt} = S - (k_{up} + k_{ex} p + k_{dec}) C + k_{ex} p C_b

    is solved exactly: ``C1 = C0 e^{-lam dt} + (S + k_ex p C_b)(1 - e^{-lam
    dt})/lam``, ``lam = k_up + k_ex p + k_dec`` (``C1 = C0 + S dt`` when
    ``lam = 0``). Every term is >= 0 for ``C0, S, C_b >= 0``, so no uptake,
    however large, can make a concentration negative. Masses (pg, volume
    ``h^3 * 1e-12`` mL per voxel) are the exact time integrals over the step:
    exchanged ``= V sum k_ex p (int C dt - C_b dt)`` (positive: tissue ->
    blood), taken up ``= V sum k_up int C dt``; they close the balance
    ``sum(C1 - C0) V = V sum S dt - exchanged - uptake - decayed`` to rounding.
    Sums are formed per block of :data:`SITE_BLOCK` sites, then serially, so
    they do not depend on the thread count.

    ``method="backward_euler"`` instead takes ``C1 = (C0 + (S + k_ex p C_b)
    dt) / (1 + lam dt)`` (also never negative, mass balance also closed,
    with ``int C dt ~ C1 dt``): first order in ``lam dt`` but branch-free and
    free of ``expm1``, several times faster where most sites take up
    (the exact path costs one ``expm1`` per voxel and species with uptake or
    exchange, ~10-15 ns).

    Decay normally belongs to the diffusion stepper (``decay_per_s=None``
    here). Passing it here instead (and ``decay_per_s=0`` to the diffusion
    stepper) removes the ``~k dt / 2`` splitting bias of steady states, e.g. a
    uniform source then settles exactly at ``S / k``.

    ``decay_after=True`` (exact method only) is the same scheme, computed
    sparsely for a caller whose next step applies the decay factor
    ``exp(-k_dec dt)`` to every voxel (the implicit stepper built with the
    same ``decay_per_s``): sites with a source, uptake or exchange get the
    exact ``C1`` divided by that factor, all other sites -- where only decay
    acts -- are left alone, so the cost scales with the number of such sites
    instead of the lattice. ``C1`` after the decay factor, and the uptake and
    exchange masses, agree with the default mode to rounding.

    Args:
        shape: ``(F, ny, nx)`` or ``(F, nz, ny, nx)``.
        h_um: lattice edge, um (2D lattices are slabs of thickness ``h``).
        dt_s: time step, s.
        exchange_per_s: ``(F,)`` exchange rate at permeability 1, 1/s.
        decay_per_s: optional ``(F,)`` decay, 1/s (see above).
        parallel: use Numba threads (one block of sites per work item).
        method: "exact" (default) or "backward_euler".
        decay_after: see above.

    Returns:
        A :class:`SourceSinkStepper`; call ``step(conc, source, uptake, perm,
        blood, mass=None) -> mass``.
    """
    return SourceSinkStepper(shape, h_um, dt_s, exchange_per_s, decay_per_s, parallel, method,
                             decay_after)


__all__ = ["SOURCE_SINK_METHODS", "MASS_EXCHANGED", "MASS_UPTAKE", "MASS_DECAYED", "SITE_BLOCK",
           "SourceSinkStepper", "make_source_sink_stepper", "SiteTerms", "SpeciesRates"]
