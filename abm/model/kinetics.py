"""The whole patient's cell populations: CAR-T cells by compartment, the tumour, normal B cells.

Declared state
--------------
The populations are continuous quantities of the patient, not patch counts
times a factor. Their slots (name, unit, meaning) are declared in
:data:`PATIENT_SLOTS`; they live in ``state.scalars`` (so checkpoints carry
them) and are all recorded.

CAR-T cells (five pools, cells)
-------------------------------
``C_b`` blood, ``C_l`` lymphoid organs and marrow, ``C_r`` the rest of the
body, ``C_T`` the whole tumour, ``M`` quiescent memory cells (recirculating;
a share ``phi = kinetics.memory_blood_fraction`` of them is in blood).
With rates frozen over a step, ``dx/dt = A x`` is advanced exactly
(``x(t + dt) = exp(A dt) x``, :func:`abm.kernels.matrix_exp.expm_small`; ``A`` is Metzler, so no pool goes negative)::

    dC_b/dt = -(k_bl + k_br + h_T + d_b - g_h) C_b + k_lb C_l + k_rb C_r + (1 - f_e) eps C_T
    dC_l/dt =  k_bl C_b - (k_lb + d_l + k_m (1 - a_L) - g_h - g_B) C_l + f_e eps C_T
    dC_r/dt =  k_br C_b - (k_rb + d_r - g_h) C_r
    dC_T/dt =  h_T C_b + (r_C - eps) C_T
    dM/dt   =  k_m (1 - a_L) C_l - d_M M

* ``h_T`` homing to the tumour, rising with the current tumour size ``T``
  (:func:`abm.model.tumour.homing_rate_per_day`) and with the permeability of
  the patches' free vessel sites (``tumour_homing_factor``, 1 at rest, from
  :class:`abm.model.agents.Extravasation`);
* ``g_h`` homeostatic (IL-7/IL-15-driven) proliferation, steroid-suppressed;
* antigen in lymphoid organs and marrow: normal CD19+ B cells ``B`` engage
  CAR-T cells there, ``H_B = B / (B + K_B)``; engaged cells divide at
  ``g_B = (24 / T_div) H_B (1 - sigma) min(1, m)``, the product's division
  rate at full activation (:func:`abm.model.cart.division_rate_per_day`),
  limited by the pool's mean remaining division potential ``m``;
* effector cells return to quiescent memory at ``k_m (1 - a_L)``, with the
  activated share ``a_L = r_e / (r_e + k_a)`` of cells engaging B cells at
  ``r_e = 24 k_engage H_B`` per day and losing activation at ``k_a`` (the
  product's ``engagement_rate_per_h`` and ``activation_half_life_h``):
  conversion waits until the antigen is gone. Memory dies at ``d_M``: the slow
  terminal phase. ``k_m`` and ``d_M`` are the resting cell's rates in its
  steady signalling state (:func:`abm.model.cart.effective_rates`), so the
  costimulation domain sets them as it does in the patches (4-1BB: more
  memory, longer persistence);
* in the tumour, ``r_C`` (net proliferation) and ``eps`` (egress) are the
  per-capita rates measured in the patches (:mod:`abm.model.coupling`);
  leaving cells return through efferent lymph (share ``f_e``) or directly.

Normal B cells (marrow and lymphoid organs)::

    dB/dt = d_B (B_0 - B) - k_LD(t) B - k_kB C_l H_B

B cells fall while the lymphoid effector CAR-T are many (``C_l`` near
``K_B d_B / k_kB`` or more); memory CAR-T do not kill them, so they recover
once the effectors contract, although blood CAR-T persist: lasting aplasia is
not reached (docs/validation.md, check 2's day-90 cohort).

The tumour
----------
Antigen-positive cells ``T+`` and antigen-negative cells ``T-`` (never
engaged; ``tumour.antigen_negative_fraction`` of the burden at start; their
daughters stay negative)::

    dT+/dt = (g_T - rho (kappa + kappa_by)) T+,    dT-/dt = (g_T - rho kappa_by) T-,
    T = T+ + T-

with the patches' tumour net growth ``g_T`` (kills added back), CAR-T kill
hazard per antigen-positive cell ``kappa`` and bystander (antigen-independent)
kill hazard per tumour cell ``kappa_by`` (:mod:`abm.model.coupling`),
re-weighted to the patient's CAR-T density by ``rho``
(:meth:`abm.model.coupling.PatchRates.density_ratio`); each population is
advanced exactly over a step with its rates frozen, and the killed cells of
both lyse (metabolites, :mod:`abm.model.blood`).

Direct coupling
---------------
With ``coupling.mode = "direct"`` the patches are the whole tumour
(``S = B / (K n_T0) <= 2``): ``T = S n_T``, ``C_T = S N_C``, each CAR-T entering
a patch is taken from blood and each leaving one returned, once each; CAR-T
and bystander kills alike are counted as killed cells (``S`` each).

Division potential
------------------
The pools outside the tumour keep the mean remaining division potential ``m``
(``cart_pool_divisions_left``): the product brings ``product.max_divisions``,
proliferation spends ``dm/dt = -2 g`` (the mean generation of a population
dividing at rate ``g`` rises at ``2 g``), and cells leaving the tumour bring
what they have left; cells homing to the patches carry ``m``.

Conservation: outside the tumour every transfer is a term of ``A`` and leaves
one pool as it enters another, exactly. Between the patches and the patient
nothing is moved cell by cell: the patches receive CAR-T by density (their
expected inflow is ``h_T C_b / S_v``), so cells are conserved in expectation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from abm.kernels.tallies import advance_pools
from abm.model import tumour as tumour_model
from abm.model.cart import effective_rates, patient_division_potential
from abm.model.coupling import PatchRates, bed_scale
from abm.schema import Section, param

DAY = 86400.0


@dataclass(frozen=True)
class Slot:
    """One declared quantity of the patient state."""

    name: str
    unit: str
    doc: str


#: The patient-scale populations (stored in ``state.scalars``, all recorded).
PATIENT_SLOTS: tuple[Slot, ...] = (
    Slot("blood_cart_cells", "cells", "CAR-T cells in blood (effector and activated)"),
    Slot("lymphoid_cart_cells", "cells", "CAR-T cells in lymphoid organs and marrow"),
    Slot("body_cart_cells", "cells", "CAR-T cells in the rest of the body"),
    Slot("tumour_cart_cells", "cells", "CAR-T cells in the whole tumour"),
    Slot("memory_cart_cells", "cells", "quiescent memory CAR-T cells (recirculating)"),
    Slot("tumour_cart_exhausted_cells", "cells", "exhausted CAR-T cells in the whole tumour"),
    Slot("tumour_cells", "cells", "tumour cells of the whole tumour"),
    Slot("tumour_antigen_negative_cells", "cells", "antigen-negative tumour cells of the whole tumour "
                                                   "(never engaged)"),
    Slot("b_cells", "cells", "normal CD19+ B cells (marrow and lymphoid organs)"),
    Slot("cart_pool_divisions_left", "1", "mean remaining division potential of CAR-T outside the tumour"),
    Slot("tumour_kill_hazard_per_day", "1/day", "per-cell CAR-T kill hazard of the whole tumour's "
                                                "antigen-positive cells"),
    Slot("tumour_bystander_hazard_per_day", "1/day", "per-cell bystander (antigen-independent) kill "
                                                     "hazard of the whole tumour"),
    Slot("cart_density_ratio", "1", "patient over patch CAR-T density in the tumour (rho)"),
    Slot("cart_total_cells", "cells", "CAR-T cells in the whole patient"),
)

#: Transfers each step (patient cells), read by the blood model.
STEP_SLOTS = ("tumour_lysed_patient_step",)


@dataclass(frozen=True)
class KineticsParams(Section):
    """CAR-T cellular kinetics outside the patches and normal B cells."""

    blood_to_lymphoid_per_day: float = param(5.0, unit="1/day", ge=0, le=1000,
                                             doc="CAR-T homing from blood to lymphoid organs and marrow "
                                                 "(lymphocytes leave blood within hours)")
    lymphoid_to_blood_per_day: float = param(0.1, unit="1/day", ge=0, le=100,
                                             doc="CAR-T return from lymphoid organs and marrow to blood "
                                                 "(with the rates above and below ~2 % of the cells "
                                                 "outside the tumour are in blood, as for lymphocytes)")
    blood_to_body_per_day: float = param(0.5, unit="1/day", ge=0, le=100,
                                         doc="CAR-T distribution from blood to the rest of the body")
    body_to_blood_per_day: float = param(0.5, unit="1/day", ge=0, le=100,
                                         doc="CAR-T return from the rest of the body")
    blood_death_per_day: float = param(0.1, unit="1/day", ge=0, le=10, doc="CAR-T death in blood")
    lymphoid_death_per_day: float = param(0.20, unit="1/day", ge=0, le=10,
                                          doc="CAR-T death in lymphoid organs and marrow (contraction; "
                                              "calibrated, docs/calibration.md 7.14)")
    body_death_per_day: float = param(0.2, unit="1/day", ge=0, le=10,
                                      doc="CAR-T death in the rest of the body")
    egress_via_lymph_fraction: float = param(1.0, unit="1", ge=0, le=1,
                                             doc="share of CAR-T leaving the tumour that returns through "
                                                 "efferent lymph to lymphoid organs (the rest to blood)")
    homeostatic_per_day: float = param(0.05, unit="1/day", ge=0, le=10,
                                       doc="maximal IL-7/IL-15-driven proliferation outside the tumour "
                                           "(fitted to the blood kinetics, docs/calibration.md)")
    homeostatic_ec50_pg_ml: float = param(20.0, unit="pg/mL", gt=0, le=1e4,
                                          doc="plasma IL-7/IL-15 of half-maximal homeostatic proliferation")
    memory_blood_fraction: float = param(0.02, unit="1", ge=0, le=1,
                                         doc="share of memory CAR-T in blood (as for lymphocytes)")
    b_cells_per_kg: float = param(4e8, unit="cells/kg", ge=0, le=1e11,
                                  doc="normal CD19+ B cells per kg body weight (~3e10 in an adult; "
                                      "5-15 % of ~3e11 lymphocytes)")
    b_cell_turnover_per_day: float = param(0.02, unit="1/day", ge=0, le=10,
                                           doc="B-cell production/turnover (marrow output replaces the pool "
                                               "in weeks)")
    b_cell_half_saturation_cells: float = param(1e10, unit="cells", gt=0, le=1e12,
                                                doc="B cells K_B at which half the lymphoid CAR-T are engaged")
    b_cell_kills_per_cart_per_day: float = param(1.0, unit="1/day", ge=0, le=100,
                                                 doc="B cells killed per engaged CAR-T per day (serial killing)")


#: The CAR-T pools, in the order of :func:`cart_rate_matrix`.
CART_POOLS = ("blood_cart_cells", "lymphoid_cart_cells", "body_cart_cells", "tumour_cart_cells",
              "memory_cart_cells")


def cart_rate_matrix(p: KineticsParams, *, h_t: float, g_h: float, g_b: float, k_m: float, d_mem: float,
                     r_c: float, eps: float) -> np.ndarray:
    """The matrix ``A`` (1/day) of ``dx/dt = A x`` over :data:`CART_POOLS` (module docstring).

    Args:
        h_t: homing to the tumour; g_h: homeostatic proliferation; g_b:
            antigen-driven proliferation in lymphoid organs; k_m: memory
            conversion; d_mem: memory death; r_c, eps: net proliferation and
            egress in the tumour (all 1/day).
    """
    f_e = p.egress_via_lymph_fraction
    a = np.zeros((5, 5))
    a[0, 0] = -(p.blood_to_lymphoid_per_day + p.blood_to_body_per_day + h_t + p.blood_death_per_day - g_h)
    a[0, 1] = p.lymphoid_to_blood_per_day
    a[0, 2] = p.body_to_blood_per_day
    a[0, 3] = (1.0 - f_e) * eps
    a[1, 0] = p.blood_to_lymphoid_per_day
    a[1, 1] = -(p.lymphoid_to_blood_per_day + p.lymphoid_death_per_day + k_m - g_h - g_b)
    a[1, 3] = f_e * eps
    a[2, 0] = p.blood_to_body_per_day
    a[2, 2] = -(p.body_to_blood_per_day + p.body_death_per_day - g_h)
    a[3, 0] = h_t
    a[3, 3] = r_c - eps
    a[4, 1] = k_m
    a[4, 4] = -d_mem
    return a


def division_rate_per_day(product) -> float:
    """Division rate of a fully activated CAR-T cell (1/day), in its steady signalling state.

    ``24 / T_div`` with the division time the costimulation domain implies
    (:func:`abm.model.cart.effective_rates`): the same rule as in the patches.
    """
    return 24.0 / effective_rates(product)["division_time_h"]


def _decay_step(n: float, growth: float, kill: float, dt: float) -> tuple[float, float]:
    """``dn/dt = (growth - kill) n`` over ``dt`` (exact): the new ``n`` and the cells killed,
    ``kill n (exp((growth - kill) dt) - 1) / (growth - kill)``."""
    lam = growth - kill
    x = lam * dt
    integral = math.expm1(x) / lam if x != 0.0 else dt
    return n * math.exp(x), kill * n * integral


class WholePatient:
    """CAR-T pools, the tumour and B cells of the patient (phase ``tissue_to_blood``, before the blood)."""

    phase = "tissue_to_blood"
    meta = {s.name: (s.unit, s.doc) for s in PATIENT_SLOTS}

    def __init__(self, sim):
        cfg = sim.config
        self.cfg = cfg
        self.p = cfg.kinetics
        self.direct = cfg.coupling.mode == "direct"
        self.scale = bed_scale(cfg)
        self.dt_s = cfg.run.dt_s
        self.dt_day = cfg.run.dt_min / 1440.0
        self.dose = cfg.product.dose_cells
        self.infusion_day = cfg.blood.infusion_day
        self.max_div = float(patient_division_potential(cfg, sim.seed))
        self.g_div = division_rate_per_day(cfg.product)
        rates = effective_rates(cfg.product)
        # engagement rate at saturating antigen and activation decay (1/day): the patch rule's
        self.engage_per_day = 24.0 * cfg.product.engagement_rate_per_h
        self.deactivate_per_day = math.log(2.0) * 24.0 / cfg.product.activation_half_life_h
        self.k_mem = rates["memory_conversion_per_day"]
        self.d_mem = rates["memory_death_per_day"]
        self.steroid_imax = cfg.product.steroid_max_suppression
        ld = cfg.lymphodepletion
        self.ld = ld
        self.k_ld = -math.log(1.0 - ld.depth) / ld.duration_days if ld.enabled else 0.0
        self.b0 = self.p.b_cells_per_kg * cfg.patient.weight_kg
        self.rates = PatchRates(cfg)
        # the rate matrix (entries that never change set once) and the pools, reused every step
        p = self.p
        self._a = cart_rate_matrix(p, h_t=0.0, g_h=0.0, g_b=0.0, k_m=0.0, d_mem=self.d_mem,
                                   r_c=0.0, eps=0.0)
        # left-to-right partial sums of the diagonal entries (the same additions, done once)
        self._blood_out = p.blood_to_lymphoid_per_day + p.blood_to_body_per_day
        self._lymphoid_out = p.lymphoid_to_blood_per_day + p.lymphoid_death_per_day
        self._body_out = p.body_to_blood_per_day + p.body_death_per_day
        self._x = np.zeros(len(CART_POOLS))
        self._x_new = np.zeros(len(CART_POOLS))
        self._init_state(sim.state)

    # -- state ------------------------------------------------------------------
    def _init_state(self, state) -> None:
        s = state.scalars
        self.rates.init_state(s, state.cells)
        if "tumour_cells" in s:
            for slot in PATIENT_SLOTS:      # a state saved before a slot was added
                s.setdefault(slot.name, 0.0)
            return
        for slot in PATIENT_SLOTS:
            s[slot.name] = 0.0
        s["tumour_cells"] = self.cfg.patient.burden_cells
        s["tumour_antigen_negative_cells"] = (self.cfg.patient.burden_cells
                                              * self.cfg.tumour.antigen_negative_fraction)
        s["cart_pool_divisions_left"] = self.max_div
        s["cart_density_ratio"] = 1.0
        s["cart_infused"] = 0.0
        s["tumour_lysed_patient_step"] = 0.0
        s["tumour_lysed_patient_cells"] = 0.0
        s["cart_blood_shortfall_cells"] = 0.0
        # B cells start at the patient's baseline, less the lymphodepletion given before the start
        b, t = self.b0, min(self.ld.start_day, self.cfg.run.start_day)
        while t < self.cfg.run.start_day - 1e-12:
            b = self._b_cells_step(b, 0.0, 0.0, t)
            t += self.dt_day
        s["b_cells"] = b
        if self._infusion_due(0):   # a run that starts at (or after) the infusion
            self._infuse(s)
            s["cart_total_cells"] = self.dose

    def _ld_overlap(self, t0: float) -> float:
        ld = self.ld
        if not ld.enabled:
            return 0.0
        lo, hi = ld.start_day, ld.start_day + ld.duration_days
        return max(0.0, min(hi, t0 + self.dt_day) - max(lo, t0)) / self.dt_day

    def _b_cells_step(self, b: float, lymphoid_cart: float, h_b: float, t0: float) -> float:
        """Exact step of ``dB/dt = d_B (B_0 - B) - k_LD B - k_kB C_l H_B`` with ``H_B`` frozen."""
        p = self.p
        lam = p.b_cell_turnover_per_day + self.k_ld * self._ld_overlap(t0)
        kill = p.b_cell_kills_per_cart_per_day * lymphoid_cart * h_b
        prod = p.b_cell_turnover_per_day * self.b0 - kill
        if lam > 0.0:
            eq = prod / lam
            b_new = eq + (b - eq) * math.exp(-lam * self.dt_day)
        else:
            b_new = b + prod * self.dt_day
        return max(0.0, b_new)

    # -- one step ---------------------------------------------------------------------
    def step(self, state) -> None:
        s, p = state.scalars, self.p
        t0 = state.time_day
        dt = self.dt_day
        if s["cart_infused"] == 0.0 and self._infusion_due(state.step):
            self._infuse(s)     # a state saved before the end-of-step infusion (below) was added
        counts = self.rates.update(s, state.cells)
        steroid = s.get("steroid_effect", 0.0)
        c7 = s.get("plasma_il7_15", 0.0)
        g_h = p.homeostatic_per_day * (1.0 - self.steroid_imax * steroid) * c7 / (p.homeostatic_ec50_pg_ml + c7)
        b = s["b_cells"]
        h_b = b / (b + p.b_cell_half_saturation_cells) if b > 0.0 else 0.0
        m = s["cart_pool_divisions_left"]
        g_b = self.g_div * h_b * (1.0 - self.steroid_imax * steroid) * min(1.0, max(0.0, m))
        if self.direct:
            self._direct_tumour(s, counts)
            r_c = eps = h_t = 0.0
        else:
            h_t = tumour_model.homing_rate_per_day(self.cfg, s["tumour_cells"]) * s.get("tumour_homing_factor", 1.0)
            r_c = self.rates.cart_net_proliferation(s) * DAY
            eps = self.rates.cart_egress(s) * DAY
            self._egress_potential(s, eps * s["tumour_cart_cells"] * dt)
        k_m = self.k_mem * (1.0 - self.lymphoid_activation(h_b))
        a = self._rate_matrix(h_t, g_h, g_b, k_m, r_c, eps)
        names = CART_POOLS
        x, x_new = self._x, self._x_new
        x[0], x[1], x[2], x[3], x[4] = (s[n] for n in names)
        advance_pools(a, dt, x, x_new)   # max(expm(a dt) x, 0), compiled (no BLAS call for 5 x 5)
        lymphoid_before = s["lymphoid_cart_cells"]
        for n, v in zip(names, x_new.tolist()):
            s[n] = v
        if self.direct:
            # the tumour pool is the patches' count times S, set by _direct_tumour
            s["tumour_cart_cells"] = float(x[3])
        # proliferation spends potential (homeostatic everywhere, antigen-driven in lymphoid organs)
        outside = s["blood_cart_cells"] + s["lymphoid_cart_cells"] + s["body_cart_cells"]
        spend = 2.0 * g_h * dt + (2.0 * g_b * dt * s["lymphoid_cart_cells"] / outside if outside > 0 else 0.0)
        s["cart_pool_divisions_left"] = max(0.0, m - spend)
        s["b_cells"] = self._b_cells_step(b, 0.5 * (lymphoid_before + s["lymphoid_cart_cells"]), h_b, t0)
        if not self.direct:
            self._tumour(s)
        s["tumour_cart_exhausted_cells"] = self.rates.exhausted_share(s) * s["tumour_cart_cells"]
        if s["cart_infused"] == 0.0 and self._infusion_due(state.step + 1):
            # the dose is in blood at the start of the infusion step, for the patches' entries
            # (phase blood_to_tissue, before this process) as for the pools' inflow
            self._infuse(s)
        s["cart_total_cells"] = sum(s[n] for n in names)

    def _infusion_due(self, step: int) -> bool:
        """Whether step ``step`` (starting at day ``start_day + step dt``) is the infusion step:
        the first whose start is at most half a step before ``blood.infusion_day``."""
        r = self.cfg.run
        return r.start_day + step * r.dt_min / 1440.0 + 0.5 * self.dt_day >= self.infusion_day

    def _infuse(self, s: dict) -> None:
        s["cart_infused"] = 1.0
        self._mix_potential(s, self.dose, self.dose * self.max_div)
        s["blood_cart_cells"] += self.dose

    def _rate_matrix(self, h_t: float, g_h: float, g_b: float, k_m: float, r_c: float,
                     eps: float) -> np.ndarray:
        """:func:`cart_rate_matrix` of this step, in place in one matrix (the same arithmetic)."""
        a, p, f_e = self._a, self.p, self.p.egress_via_lymph_fraction
        a[0, 0] = -(self._blood_out + h_t + p.blood_death_per_day - g_h)
        a[0, 3] = (1.0 - f_e) * eps
        a[1, 1] = -(self._lymphoid_out + k_m - g_h - g_b)
        a[1, 3] = f_e * eps
        a[2, 2] = -(self._body_out - g_h)
        a[3, 0] = h_t
        a[3, 3] = r_c - eps
        a[4, 1] = k_m
        return a

    def lymphoid_activation(self, h_b: float) -> float:
        """Activated share of lymphoid CAR-T: engaged at ``r_e = k_engage H_B``, decaying at ``k_a``.

        ``a_L = r_e / (r_e + k_a)`` with the product's engagement rate and
        activation half-life (the patch rule's), so memory conversion, which
        needs a resting cell, waits until the B cells are gone.
        """
        r_e = self.engage_per_day * h_b
        return r_e / (r_e + self.deactivate_per_day) if r_e > 0.0 else 0.0

    def _tumour(self, s: dict) -> None:
        """``dT+/dt = (g_T - rho (kappa + kappa_by)) T+``, ``dT-/dt = (g_T - rho kappa_by) T-``
        over one step (exactly, rates frozen), and the cells killed."""
        rho = self.rates.density_ratio(s, s["tumour_cart_cells"], self.scale)
        kappa = self.rates.kill_hazard(s) * rho
        kappa_by = self.rates.bystander_hazard(s) * rho
        growth = self.rates.tumour_growth(s)
        neg = s["tumour_antigen_negative_cells"]
        t = s["tumour_cells"] - neg
        t_new, killed = _decay_step(t, growth, kappa + kappa_by, self.dt_s)
        if kappa_by > 0.0:
            neg, killed_neg = _decay_step(neg, growth, kappa_by, self.dt_s)
            killed += killed_neg
        else:
            neg *= math.exp(growth * self.dt_s)
        s["tumour_antigen_negative_cells"] = neg
        s["tumour_cells"] = t_new + neg
        s["tumour_lysed_patient_step"] = killed
        s["tumour_lysed_patient_cells"] += killed
        s["cart_density_ratio"] = rho
        s["tumour_kill_hazard_per_day"] = kappa * DAY
        s["tumour_bystander_hazard_per_day"] = kappa_by * DAY

    def _direct_tumour(self, s: dict, counts) -> None:
        """Direct coupling: the patches hold the whole tumour; cells cross one by one."""
        S = self.scale
        tum, pos, cart, _ = counts   # the patches' counts after this step's agent phase
        entered = S * float(s.get("cart_entered_step", 0))
        egressed = S * float(s.get("cart_egressed_step", 0))
        if egressed > 0.0:
            self._mix_potential(s, egressed, S * float(s.get("cart_egressed_divisions_left_step", 0)))
        f_e = self.p.egress_via_lymph_fraction
        s["lymphoid_cart_cells"] += f_e * egressed
        blood = s["blood_cart_cells"] + (1.0 - f_e) * egressed - entered
        if blood < 0.0:
            s["cart_blood_shortfall_cells"] += -blood
            blood = 0.0
        s["blood_cart_cells"] = blood
        kills = S * float(s.get("cart_kills_step", 0))
        bystander = S * float(s.get("tumour_bystander_kills_step", 0))
        s["tumour_lysed_patient_step"] = kills + bystander
        s["tumour_lysed_patient_cells"] += kills + bystander
        s["tumour_cells"] = S * tum
        s["tumour_antigen_negative_cells"] = S * (tum - pos)
        s["tumour_cart_cells"] = S * cart
        s["cart_density_ratio"] = 1.0
        t_time = s["tumour_cells"] * self.dt_day
        s["tumour_kill_hazard_per_day"] = kills / t_time if t_time > 0 else 0.0
        s["tumour_bystander_hazard_per_day"] = bystander / t_time if t_time > 0 else 0.0

    def _egress_potential(self, s: dict, cells: float) -> None:
        if cells > 0.0:
            m_e = self.rates.egress_potential(s, s["cart_pool_divisions_left"])
            self._mix_potential(s, cells, cells * m_e)

    @staticmethod
    def _mix_potential(s: dict, cells: float, divisions_left: float) -> None:
        """Mix ``cells`` arriving with ``divisions_left`` (summed) into the pools' mean potential."""
        n = s["blood_cart_cells"] + s["lymphoid_cart_cells"] + s["body_cart_cells"]
        if n + cells > 0.0:
            s["cart_pool_divisions_left"] = (n * s["cart_pool_divisions_left"] + divisions_left) / (n + cells)

    def record(self, state, row) -> None:
        s = state.scalars
        for slot in PATIENT_SLOTS:
            row[slot.name] = s[slot.name]

    def endpoints(self, state, out) -> None:
        s = state.scalars
        out["tumour_lysed_patient_cells"] = s["tumour_lysed_patient_cells"]
        out["final_tumour_cells"] = s["tumour_cells"]
        out["final_b_cells"] = s["b_cells"]
