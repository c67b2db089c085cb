"""The well-mixed blood compartment of the patient: plasma, the systemic myeloid pool, lab markers.

Coupling to the tumour
----------------------
The whole tumour's exchange with plasma comes from the tissue patches. With
``coupling.mode = "multiscale"`` (:mod:`abm.model.coupling`) the field phase
moves ``X_s = exchange_<s>_pg`` (pg) between the patches and plasma; the tumour
bed is ``S_v = B / (K n_T0)`` times the patches' volume, and the cytokines
secreted by CAR-T and myeloid cells (IFN-gamma, GM-CSF, IL-6, IL-1) are
re-weighted to the patient's CAR-T density by ``rho``
(``cart_density_ratio``, :mod:`abm.model.kinetics`)::

    plasma gains  S_v rho X_s / V_p   (inflammatory species)   or   S_v X_s / V_p   (others)

With ``coupling.mode = "direct"`` the patches are the whole tumour and plasma
gains ``S X_s / V_p`` (``S = B / (K n_T0) <= 2``). Tumour-lysis metabolites
come from the cells the whole tumour lost to killing this step
(``tumour_lysed_patient_step``). CAR-T cells are counted in
:mod:`abm.model.kinetics`; the blood count reported here is
``(C_b + phi M) / V_blood``.

Volumes scale with body weight ``W``: ``V_blood = blood_volume_ml_per_kg W``,
``V_p = plasma_volume_ml_per_kg W``, ``V_ecf = ecf_volume_l_per_kg W``; so do
the systemic myeloid pool and the host lymphocytes (``x W / 70 kg``).

Blood ODEs (phase ``tissue_to_blood``; each advanced exactly over ``dt`` with
its rates frozen at the start of the step, see :mod:`abm.model.odes`)
-----------------------------------------------------------------------------
Plasma cytokine ``C_s`` (pg/mL, plasma volume ``V_p`` ~ 3 L)::

    dC_s/dt = k_s C_s0 + P_s,myeloid / V_p - k_s C_s          (+ S X_s / V_p per step)
    k_s = ln 2 / t1/2,s;   IL-6: k = k_6 (1 - f_R occ)

with half-lives IFN-g 30 min (Kurzrock 1985), GM-CSF 40 min (t1/2 alpha 20,
beta 68 min), IL-6 20 min (Hosseini 2020), IL-1 10 min [R], ANG-2 12 h (not
found; assumed); ``C_s0`` the healthy baseline (IL-6 5.2 pg/mL, Said 2021);
``f_R`` the share of IL-6 clearance that goes through IL-6R, blocked by
tocilizumab occupancy ``occ`` (so IL-6 rises after tocilizumab).

Systemic myeloid pool (spleen, liver, marrow macrophages; ``M`` cells),
activation ``a`` in [0, 1]::

    x = (IFNg - IFNg_0)+/EC_g + (GMCSF - GMCSF_0)+/EC_gm + (IL1 (1 - il1r_blockade) - IL1_0)+/EC_1
    da/dt = k_on h(x) (1 - a) - k_off a,        h(x) = x^n / (1 + x^n)
    P_IL6 = M a r_6 (1 - Imax_m E_steroid),     P_IL1 = M a r_1 (1 - Imax_m E_steroid)

with ``r_6`` 0.31 fg/cell/h (nlisim macrophage IL-6) and ``M`` ~ 1e10
(1e10 fully active macrophages give ~490 pg/mL IL-6, docs/model.md 12.1).

Host lymphocytes ``N`` (cells, body total) with lymphodepletion (Flu/Cy, days
-5..-3 by default) and recovery::

    dN/dt = r N (1 - N/N0) - k_LD(t) N,   k_LD = -ln(1 - depth)/duration in the window

(a run that starts after the regimen began starts from N, monocytes and the
IL-7/IL-15 quasi-steady state the regimen has produced by then)

IL-7/IL-15 (one homeostatic species) with a cellular sink::

    dC/dt = p - (k + q N + q_T C_out) C      =>  steady state C = p / (k + q N)

parameterised by the baseline ``C0``, the baseline half-life and the share
``f = q N0 / (k + q N0)`` of clearance by lymphocytes, so that an LD depth
``d`` raises the steady state ``1 / (1 - f d)``-fold (default f = 0.8, d = 0.8:
2.78-fold, "nearly triple"). CAR-T cells outside the tumour (``C_out``) consume
``q_T = ratio * q`` each; patch CAR-T consume the patch field and reach plasma through the exchange.

Tumour-lysis metabolites (extracellular fluid ~15 L, renal clearance)::

    dX/dt = -k_X (X - X0)   (+ lysed * release_X / V_ecf per step, lysed by the whole tumour)
    Ca = Ca0 - c_CaP max(0, PO4 - PO4_0)            (calcium-phosphate precipitation)

ANG-2 (plasma, pg/mL) is also released by the systemic endothelium
``dA2/dt = k (A2_0 (1 + g_A E_sys)) - k A2`` with ``E_sys`` the systemic
endothelial activation of :mod:`abm.model.physiology`; ANG-1 is a per-patient
baseline; VWF (IU/dL) follows the same form as ANG-2 plus the patch release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abm.schema import Section, param
from abm.model.coupling import bed_scale
from abm.model.effects import patient_effects
from abm.model.fields import PLASMA_SPECIES, SPECIES_DEFS
from abm.model.odes import phi1, relax

LN2 = math.log(2.0)

#: Plasma species with a dedicated rule here; any other plasma species (see
#: ``PLASMA_SPECIES``, from the species registry; the damage signal stays local)
#: starts at 0 and is cleared first-order at its declared plasma half-life.
DEDICATED_PLASMA_SPECIES = ("ifng", "gmcsf", "il6", "il1", "il7_15", "ang2")


#: VWF antigen: 1 IU (the amount in 1 mL of normal plasma) is about 10 ug.
VWF_IU_PER_PG = 1e-7


#: Body weight at which the per-kg volumes and the pool sizes give their reference values.
REFERENCE_WEIGHT_KG = 70.0

#: Cytokines secreted by CAR-T and myeloid cells: their tumour output is re-weighted
#: to the patient's CAR-T density.
INFLAMMATORY_SPECIES = ("ifng", "gmcsf", "il6", "il1")

#: CAR-T pools outside the tumour (:mod:`abm.model.kinetics`), consumers of IL-7/IL-15.
OUTSIDE_TUMOUR_CART = ("blood_cart_cells", "lymphoid_cart_cells", "body_cart_cells", "memory_cart_cells")


@dataclass(frozen=True)
class BloodParams(Section):
    """Plasma cytokines, the systemic myeloid pool and lab markers."""

    plasma_volume_ml_per_kg: float = param(42.9, unit="mL/kg", gt=0, le=200,
                                           doc="plasma volume V_p per kg body weight (3 L at 70 kg)")
    blood_volume_ml_per_kg: float = param(71.4, unit="mL/kg", gt=0, le=200,
                                          doc="blood volume per kg body weight (5 L at 70 kg; children "
                                              "75-80 mL/kg)")
    # plasma clearance half-lives
    ifng_half_life_min: float = param(30.0, unit="min", gt=0, doc="plasma IFN-gamma half-life (25-35 min)")
    gmcsf_half_life_min: float = param(40.0, unit="min", gt=0, doc="plasma GM-CSF half-life (20-68 min)")
    il6_half_life_min: float = param(20.0, unit="min", gt=0, doc="plasma IL-6 half-life without tocilizumab")
    il1_half_life_min: float = param(10.0, unit="min", gt=0, doc="plasma IL-1 half-life (5-20 min)")
    ang2_half_life_min: float = param(720.0, unit="min", gt=0, doc="plasma ANG-2 half-life (not found; assumed)")
    il6_receptor_clearance_fraction: float = param(
        0.6, unit="1", ge=0, le=1, doc="share of IL-6 clearance through IL-6R (blocked by tocilizumab)")
    # healthy baselines
    ifng_baseline_pg_ml: float = param(5.0, unit="pg/mL", ge=0, doc="baseline plasma IFN-gamma")
    gmcsf_baseline_pg_ml: float = param(3.0, unit="pg/mL", ge=0, doc="baseline plasma GM-CSF")
    il6_baseline_pg_ml: float = param(5.2, unit="pg/mL", ge=0, doc="baseline plasma IL-6 (Said 2021)")
    il6_baseline_sd: float = param(0.5, unit="1", ge=0, le=3, doc="log-scale SD of baseline IL-6")
    il1_baseline_pg_ml: float = param(1.0, unit="pg/mL", ge=0, doc="baseline plasma IL-1")
    ang2_baseline_pg_ml: float = param(2000.0, unit="pg/mL", ge=0, doc="baseline plasma ANG-2 (1-3 ng/mL)")
    ang2_baseline_sd: float = param(0.3, unit="1", ge=0, le=3, doc="log-scale SD of baseline ANG-2")
    ang2_activation_gain: float = param(4.0, unit="1", ge=0,
                                        doc="extra ANG-2 release (x baseline) at full systemic endothelial activation")
    ang1_baseline_pg_ml: float = param(20000.0, unit="pg/mL", gt=0, doc="plasma ANG-1 (10-40 ng/mL)")
    ang1_baseline_sd: float = param(0.3, unit="1", ge=0, le=3, doc="log-scale SD of ANG-1")
    vwf_baseline_iu_dl: float = param(100.0, unit="IU/dL", gt=0, doc="baseline VWF antigen (50-150)")
    vwf_baseline_sd: float = param(0.25, unit="1", ge=0, le=3, doc="log-scale SD of baseline VWF")
    vwf_half_life_h: float = param(12.0, unit="h", gt=0, doc="VWF plasma half-life")
    vwf_activation_gain: float = param(2.0, unit="1", ge=0,
                                       doc="extra VWF release (x baseline) at full systemic endothelial activation")
    vwf_iu_per_store: float = param(1e-9, unit="IU/cell", ge=0,
                                    doc="VWF released by one patient endothelial cell emptying its store")
    # systemic myeloid pool
    myeloid_pool_cells: float = param(2.5e9, unit="cells", ge=0,
                                      doc="macrophages of spleen, liver and marrow that can be activated "
                                          "(calibrated, docs/calibration.md 7.14)")
    myeloid_pool_sd: float = param(0.4, unit="1", ge=0, le=3, doc="log-scale SD of the pool size")
    myeloid_il6_fg_per_h: float = param(0.31, unit="fg/cell/h", ge=0,
                                        doc="IL-6 secretion of a fully activated macrophage (nlisim)")
    myeloid_il1_fg_per_h: float = param(0.01, unit="fg/cell/h", ge=0,
                                        doc="IL-1 secretion into plasma of a fully activated macrophage")
    myeloid_ifng_ec50_pg_ml: float = param(500.0, unit="pg/mL", gt=0, doc="IFN-gamma potency for pool activation")
    myeloid_gmcsf_ec50_pg_ml: float = param(100.0, unit="pg/mL", gt=0, doc="GM-CSF potency for pool activation")
    myeloid_il1_ec50_pg_ml: float = param(50.0, unit="pg/mL", gt=0, doc="IL-1 potency for pool activation")
    myeloid_hill: float = param(2.0, unit="1", gt=0, le=10, doc="Hill coefficient of pool activation")
    myeloid_sensitivity_sd: float = param(0.3, unit="1", ge=0, le=3,
                                          doc="log-scale SD of the pool's sensitivity (divides the EC50s)")
    myeloid_activation_per_h: float = param(0.5, unit="1/h", ge=0, doc="pool activation rate k_on")
    myeloid_deactivation_per_h: float = param(0.1, unit="1/h", ge=0, doc="pool deactivation rate k_off")
    myeloid_steroid_imax: float = param(0.9, unit="1", ge=0, le=1,
                                        doc="maximal steroid suppression of pool cytokine secretion")
    # CAR-T counts
    infusion_day: float = param(0.0, unit="day", doc="day the product is infused into blood")
    cart_peak_after_days: float = param(1.0, unit="day", ge=0,
                                        doc="the CAR-T peak endpoint ignores this long after infusion")
    # tumour lysis
    ecf_volume_l_per_kg: float = param(0.214, unit="L/kg", gt=0, le=2,
                                       doc="extracellular fluid volume per kg (15 L at 70 kg)")
    potassium_baseline_mmol_l: float = param(4.2, unit="mmol/L", gt=0, doc="baseline serum potassium")
    phosphate_baseline_mg_dl: float = param(3.5, unit="mg/dL", gt=0, doc="baseline serum phosphate")
    uric_acid_baseline_mg_dl: float = param(5.0, unit="mg/dL", gt=0, doc="baseline serum uric acid")
    calcium_baseline_mg_dl: float = param(9.4, unit="mg/dL", gt=0, doc="baseline serum calcium")
    potassium_release_fmol: float = param(100.0, unit="fmol/cell", ge=0,
                                          doc="potassium released per lysed cell (~140 mM x 0.7 pL)")
    phosphate_release_pg: float = param(2.0, unit="pg P/cell", ge=0, doc="phosphate (as P) per lysed cell")
    uric_acid_release_pg: float = param(5.0, unit="pg/cell", ge=0,
                                        doc="uric acid from the purines of one lysed cell")
    potassium_half_life_h: float = param(6.0, unit="h", gt=0, doc="renal clearance of excess potassium")
    phosphate_half_life_h: float = param(8.0, unit="h", gt=0, doc="renal clearance of excess phosphate")
    uric_acid_half_life_h: float = param(12.0, unit="h", gt=0, doc="renal clearance of excess uric acid")
    calcium_phosphate_coupling: float = param(0.5, unit="1", ge=0,
                                              doc="calcium fall (mg/dL) per mg/dL phosphate rise")


@dataclass(frozen=True)
class LymphodepletionParams(Section):
    """Host lymphocytes, Flu/Cy lymphodepletion and the IL-7/IL-15 sink."""

    enabled: bool = param(True, unit="-", doc="give lymphodepleting chemotherapy")
    start_day: float = param(-5.0, unit="day", doc="first day of lymphodepletion (Flu/Cy days -5..-3)")
    duration_days: float = param(3.0, unit="day", gt=0, le=14, doc="length of the regimen")
    depth: float = param(0.8, unit="1", ge=0, lt=1, doc="fraction of host lymphocytes removed by the regimen")
    lymphocyte_recovery_per_day: float = param(0.1, unit="1/day", ge=0,
                                               doc="logistic recovery rate of host lymphocytes (weeks)")
    lymphocytes_baseline_cells: float = param(3e11, unit="cells", gt=0,
                                              doc="host lymphocytes N0 (body total)")
    lymphocytes_baseline_sd: float = param(0.3, unit="1", ge=0, le=3, doc="log-scale SD of N0")
    lymphocyte_blood_fraction: float = param(0.02, unit="1", gt=0, le=1,
                                             doc="share of lymphocytes in blood (ALC = N f / 5 L)")
    monocytes_baseline_per_ul: float = param(500.0, unit="cells/uL", ge=0, doc="blood monocytes")
    monocyte_depth: float = param(0.5, unit="1", ge=0, lt=1, doc="fraction of monocytes removed by the regimen")
    monocyte_recovery_per_day: float = param(0.3, unit="1/day", ge=0, doc="logistic monocyte recovery rate")
    il7_15_baseline_pg_ml: float = param(5.0, unit="pg/mL", gt=0, doc="baseline plasma IL-7/IL-15 C0")
    il7_15_production_sd: float = param(0.3, unit="1", ge=0, le=3, doc="log-scale SD of production p")
    il7_15_half_life_min: float = param(60.0, unit="min", gt=0,
                                        doc="baseline half-life of IL-7/IL-15 (rhIL-15 0.9-1.1 h)")
    il7_15_consumption_fraction: float = param(
        0.8, unit="1", ge=0, lt=1, doc="share f = qN0/(k + qN0) of baseline clearance by lymphocytes")
    cart_consumption_ratio: float = param(3.0, unit="1", ge=0,
                                          doc="IL-7/IL-15 consumption of one CAR-T cell relative to a lymphocyte")

    def steady_state_ratio(self, depth: float | None = None) -> float:
        """Steady-state IL-7/IL-15 after removing ``depth`` of N, relative to baseline."""
        d = self.depth if depth is None else depth
        return 1.0 / (1.0 - self.il7_15_consumption_fraction * d)


def logistic_kill(n: float, r: float, k_kill: float, n_max: float, dt: float) -> float:
    """Exact step of ``dN/dt = r N (1 - N/n_max) - k_kill N`` (stays positive)."""
    a = r - k_kill
    b = r / n_max
    x = a * dt
    growth = math.exp(x)
    integral = math.expm1(x) / a if x != 0.0 else dt
    return n * growth / (1.0 + b * n * integral)


#: Recorded scalars: name -> (unit, long name).
RECORDED = {
    **{f"plasma_{s}": ("pg/mL", f"plasma {s}") for s in PLASMA_SPECIES},
    "blood_cart_per_ul": ("cells/uL", "CAR-T cells in blood"),
    "sys_myeloid_activation": ("1", "activation of the systemic myeloid pool"),
    "il6_myeloid_fraction": ("1", "share of IL-6 produced by myeloid cells (cumulative)"),
    "lymphocytes_cells": ("cells", "host lymphocytes (body total)"),
    "alc_per_ul": ("cells/uL", "absolute lymphocyte count (host)"),
    "blood_monocytes_per_ul": ("cells/uL", "blood monocytes"),
    "potassium_mmol_l": ("mmol/L", "serum potassium"),
    "phosphate_mg_dl": ("mg/dL", "serum phosphate"),
    "uric_acid_mg_dl": ("mg/dL", "serum uric acid"),
    "calcium_mg_dl": ("mg/dL", "serum calcium"),
    "ang1_pg_ml": ("pg/mL", "plasma angiopoietin 1"),
    "ang2_ang1_ratio": ("1", "ANG-2 / ANG-1"),
    "patient_scale": ("1", "tumour-bed volume per patch volume, S_v = B / (K n_T0)"),
    "vwf_iu_dl": ("IU/dL", "von Willebrand factor antigen"),
}


class Blood:
    """The blood compartment (phase ``tissue_to_blood``); see the module docstring.

    Reads (0 when absent): ``exchange_<s>_pg``, ``cart_density_ratio``,
    ``tumour_lysed_patient_step``, the CAR-T pools of :mod:`abm.model.kinetics`,
    ``vwf_released_step`` (stores) and ``vwf_released_step_pg`` (pg),
    ``il6_secreted_cart_pg``, ``il6_secreted_myeloid_pg``, ``steroid_effect``,
    ``il6r_occupancy``, ``il1r_blockade``, ``endothelial_activation_systemic``.
    Writes: ``plasma_<s>``, ``blood_cart_per_ul``, ``lymphocytes_cells``,
    ``alc_per_ul``, ``blood_monocytes_per_ul``, metabolites, ``ang1_pg_ml``,
    ``ang2_ang1_ratio``, ``vwf_iu_dl``, ``sys_myeloid_activation``,
    cumulative masses (``il6_secreted_systemic_pg``, ...).
    """

    phase = "tissue_to_blood"
    meta = RECORDED

    def __init__(self, sim):
        cfg = sim.config
        b = self.p = cfg.blood
        ld = self.ld = cfg.lymphodepletion
        z = patient_effects(sim.seed, cfg.patient.random_effects)
        self.S = bed_scale(cfg)
        self.direct = cfg.coupling.mode == "direct"
        self.dt_s = cfg.run.dt_s
        self.dt_day = cfg.run.dt_min / 1440.0
        self.sim_start_day = cfg.run.start_day
        w = cfg.patient.weight_kg
        size = w / REFERENCE_WEIGHT_KG
        self.vp = b.plasma_volume_ml_per_kg * w
        self.v_blood_ul = b.blood_volume_ml_per_kg * w * 1000.0
        self.memory_blood = cfg.kinetics.memory_blood_fraction
        # plasma clearance (1/s) and baseline production (pg/mL/s)
        half = {"ifng": b.ifng_half_life_min, "gmcsf": b.gmcsf_half_life_min,
                "il6": b.il6_half_life_min, "il1": b.il1_half_life_min,
                "ang2": b.ang2_half_life_min}
        self.k = {s: LN2 / (h * 60.0) for s, h in half.items()}
        base = {"ifng": b.ifng_baseline_pg_ml, "gmcsf": b.gmcsf_baseline_pg_ml,
                "il6": b.il6_baseline_pg_ml * math.exp(b.il6_baseline_sd * z["il6_baseline"]),
                "il1": b.il1_baseline_pg_ml,
                "ang2": b.ang2_baseline_pg_ml * math.exp(b.ang2_baseline_sd * z["ang2_baseline"])}
        self.baseline = base
        # registered plasma species without a dedicated rule: first-order clearance (1/s)
        self.k_other = {d.name: LN2 / (d.plasma_half_life_min * 60.0) for d in SPECIES_DEFS
                        if d.plasma and d.name not in DEDICATED_PLASMA_SPECIES}
        self.ang1 = b.ang1_baseline_pg_ml * math.exp(b.ang1_baseline_sd * z["ang1_baseline"])
        self.vwf0 = b.vwf_baseline_iu_dl * math.exp(b.vwf_baseline_sd * z["vwf_baseline"])
        self.k_vwf = LN2 / (b.vwf_half_life_h * 3600.0)
        # systemic myeloid pool
        self.pool = size * b.myeloid_pool_cells * math.exp(b.myeloid_pool_sd * z["myeloid_pool_size"])
        sens = math.exp(b.myeloid_sensitivity_sd * z["myeloid_sensitivity"])
        self.ec = (b.myeloid_ifng_ec50_pg_ml / sens, b.myeloid_gmcsf_ec50_pg_ml / sens,
                   b.myeloid_il1_ec50_pg_ml / sens)
        # fg/cell/h -> pg/mL/s per activated cell
        self.r6 = b.myeloid_il6_fg_per_h * 1e-3 / 3600.0 / self.vp
        self.r1 = b.myeloid_il1_fg_per_h * 1e-3 / 3600.0 / self.vp
        # lymphocytes and the IL-7/IL-15 sink (per s)
        self.n0_typical = size * ld.lymphocytes_baseline_cells
        self.n0 = size * ld.lymphocytes_baseline_cells * math.exp(ld.lymphocytes_baseline_sd * z["lymphocyte_baseline"])
        lam0 = LN2 / (ld.il7_15_half_life_min * 60.0)
        f = ld.il7_15_consumption_fraction
        self.k7 = (1.0 - f) * lam0
        self.q7 = f * lam0 / self.n0_typical
        self.c7_0 = ld.il7_15_baseline_pg_ml * math.exp(ld.il7_15_production_sd * z["il7_15_production"])
        self.p7 = self.c7_0 * lam0
        self.k_ld = -math.log(1.0 - ld.depth) / ld.duration_days if ld.enabled else 0.0
        self.k_ld_mono = -math.log(1.0 - ld.monocyte_depth) / ld.duration_days if ld.enabled else 0.0
        # metabolites: per-patient-cell increments of concentration
        ecf_l = b.ecf_volume_l_per_kg * w
        ecf_dl = ecf_l * 10.0
        self.dk_per_cell = b.potassium_release_fmol * 1e-12 / ecf_l            # mmol/L
        self.dp_per_cell = b.phosphate_release_pg * 1e-9 / ecf_dl             # mg/dL
        self.du_per_cell = b.uric_acid_release_pg * 1e-9 / ecf_dl             # mg/dL
        self.k_met = {"potassium_mmol_l": LN2 / (b.potassium_half_life_h * 3600.0),
                      "phosphate_mg_dl": LN2 / (b.phosphate_half_life_h * 3600.0),
                      "uric_acid_mg_dl": LN2 / (b.uric_acid_half_life_h * 3600.0)}
        self.met0 = {"potassium_mmol_l": b.potassium_baseline_mmol_l,
                     "phosphate_mg_dl": b.phosphate_baseline_mg_dl,
                     "uric_acid_mg_dl": b.uric_acid_baseline_mg_dl}
        self._step_constants()
        self._init_state(sim.state.scalars)

    def _step_constants(self) -> None:
        """Keys and factors every step uses, formed once (the same values, the same arithmetic)."""
        b, dt = self.p, self.dt_s
        #: per plasma species: its keys and whether the density ratio re-weights its exchange
        self._exchange = tuple((f"exchange_{sp}_pg", f"exchange_in_{sp}_pg", f"plasma_{sp}",
                                f"plasma_clamped_{sp}_pg", sp in INFLAMMATORY_SPECIES)
                               for sp in PLASMA_SPECIES)
        #: dedicated plasma cytokines: key, clearance (1/s), baseline production (pg/mL/s)
        self._cytokine = tuple((sp, f"plasma_{sp}", self.k[sp], self.k[sp] * self.baseline[sp])
                               for sp in ("ifng", "gmcsf", "il6", "il1", "ang2"))
        #: other plasma species: key, exp(-k dt) and (1 - exp(-k dt)) / k of the first-order clearance
        self._others = tuple((f"plasma_{sp}", math.exp(-k * dt), phi1(k, dt))
                             for sp, k in self.k_other.items())
        #: metabolites: key, baseline, exp(-k dt)
        self._metabolites = tuple((key, self.met0[key], math.exp(-k * dt)) for key, k in self.k_met.items())

    # -- initial state ------------------------------------------------------------
    def baseline_il7_15(self) -> float:
        """Steady state ``p / (k + q N0)`` before lymphodepletion (pg/mL)."""
        lam = self.k7 + self.q7 * self.n0
        return self.p7 / lam if lam > 0.0 else self.c7_0

    def _init_state(self, s: dict) -> None:
        if "blood_initialised" in s:
            return
        s["blood_initialised"] = 1.0
        for sp in PLASMA_SPECIES:
            c0 = self.baseline_il7_15() if sp == "il7_15" else self.baseline.get(sp, 0.0)
            s[f"plasma_{sp}"] = c0
            s[f"baseline_{sp}"] = c0               # the patient's healthy baseline (constant)
            s[f"exchange_in_{sp}_pg"] = 0.0      # cumulative S * X_s (patient pg)
            s[f"plasma_clamped_{sp}_pg"] = 0.0   # cumulative mass lost to clamping at 0
        s["sys_myeloid_activation"] = 0.0
        s["il6_secreted_systemic_pg"] = 0.0
        s["il1_secreted_systemic_pg"] = 0.0
        s["lymphocytes_cells"] = self.n0
        s["blood_monocytes_per_ul"] = self.ld.monocytes_baseline_per_ul
        # a run that starts after lymphodepletion began starts from its effect
        # (same updates and order as in step(), without the patch and CAR-T)
        t0 = self.sim_start_day
        t = min(self.ld.start_day, t0)
        while t < t0 - 1e-12:
            s["plasma_il7_15"] = relax(s["plasma_il7_15"], self.p7, self.k7 + self.q7 * s["lymphocytes_cells"],
                                       self.dt_s)
            self._lymphocytes(s, t)
            t += self.dt_day
        for key, x0 in self.met0.items():
            s[key] = x0
        s["calcium_mg_dl"] = self.p.calcium_baseline_mg_dl
        s["ang1_pg_ml"] = self.ang1
        s["vwf_iu_dl"] = self.vwf0
        s["patient_scale"] = self.S
        s["blood_cart_per_ul"] = 0.0
        s["blood_cart_peak_per_ul"] = 0.0
        s["blood_cart_peak_day"] = float("nan")
        s["plasma_ifng_peak"] = s["plasma_ifng"]
        s["plasma_il6_peak"] = s["plasma_il6"]
        self._derived(s)

    def _derived(self, s: dict, t: float = -math.inf) -> None:
        """Reported quantities and running peaks at time ``t`` (day)."""
        b = self.p
        cells = s.get("blood_cart_cells", 0.0) + self.memory_blood * s.get("memory_cart_cells", 0.0)
        s["blood_cart_per_ul"] = cells / self.v_blood_ul
        if t >= b.infusion_day + b.cart_peak_after_days and s["blood_cart_per_ul"] > s["blood_cart_peak_per_ul"]:
            s["blood_cart_peak_per_ul"] = s["blood_cart_per_ul"]
            s["blood_cart_peak_day"] = t
        s["plasma_ifng_peak"] = max(s["plasma_ifng_peak"], s["plasma_ifng"])
        s["plasma_il6_peak"] = max(s["plasma_il6_peak"], s["plasma_il6"])
        s["alc_per_ul"] = s["lymphocytes_cells"] * self.ld.lymphocyte_blood_fraction / self.v_blood_ul
        s["ang2_ang1_ratio"] = s["plasma_ang2"] / s["ang1_pg_ml"]
        s["calcium_mg_dl"] = b.calcium_baseline_mg_dl - b.calcium_phosphate_coupling * max(
            0.0, s["phosphate_mg_dl"] - b.phosphate_baseline_mg_dl)
        cart = s.get("il6_secreted_cart_pg", 0.0) * self.S
        mye = s.get("il6_secreted_myeloid_pg", 0.0) * self.S + s["il6_secreted_systemic_pg"]
        # (patch masses x S_v: the density re-weighting rho scales both sources alike)
        s["il6_myeloid_fraction"] = mye / (mye + cart) if mye + cart > 0.0 else float("nan")

    # -- one step ---------------------------------------------------------------------
    def step(self, state):
        s, S = state.scalars, self.S
        t0 = state.time_day
        self._coupling(s, t0)
        self._cytokines(s)
        self._lymphocytes(s, t0)
        self._markers(s)
        self._derived(s, t0 + self.dt_day)

    def _coupling(self, s: dict, t0: float) -> None:
        """The tumour's exchange with plasma this step (see the module docstring)."""
        rho = 1.0 if self.direct else s.get("cart_density_ratio", 1.0)
        for exchange, exchange_in, plasma, clamped, inflammatory in self._exchange:
            x = s.get(exchange, 0.0)
            if x == 0.0:
                continue
            x *= self.S * (rho if inflammatory else 1.0)
            s[exchange_in] += x
            c = s[plasma] + x / self.vp
            if c < 0.0:
                s[clamped] += -c * self.vp
                c = 0.0
            s[plasma] = c
        lysed = s.get("tumour_lysed_patient_step", 0.0)
        if lysed > 0.0:
            s["potassium_mmol_l"] += lysed * self.dk_per_cell
            s["phosphate_mg_dl"] += lysed * self.dp_per_cell
            s["uric_acid_mg_dl"] += lysed * self.du_per_cell
        vwf = self.S * (s.get("vwf_released_step", 0.0) * self.p.vwf_iu_per_store
                        + s.get("vwf_released_step_pg", 0.0) * VWF_IU_PER_PG)
        if vwf > 0.0:
            s["vwf_iu_dl"] += vwf / (self.vp / 100.0)

    def _cytokines(self, s: dict) -> None:
        b, dt = self.p, self.dt_s
        steroid = s.get("steroid_effect", 0.0)
        occ = s.get("il6r_occupancy", 0.0)
        il1_block = s.get("il1r_blockade", 0.0)
        a = s["sys_myeloid_activation"]
        secretion = self.pool * a * (1.0 - b.myeloid_steroid_imax * steroid)
        p6 = secretion * self.r6   # pg/mL/s
        p1 = secretion * self.r1
        s["il6_secreted_systemic_pg"] += p6 * dt * self.vp
        s["il1_secreted_systemic_pg"] += p1 * dt * self.vp
        # pool activation (with plasma values at the start of the step)
        base = self.baseline
        x = (max(0.0, s["plasma_ifng"] - base["ifng"]) / self.ec[0]
             + max(0.0, s["plasma_gmcsf"] - base["gmcsf"]) / self.ec[1]
             + max(0.0, s["plasma_il1"] * (1.0 - il1_block) - base["il1"]) / self.ec[2])
        h = x ** b.myeloid_hill / (1.0 + x ** b.myeloid_hill) if x > 0.0 else 0.0
        alpha = b.myeloid_activation_per_h / 3600.0 * h
        beta = b.myeloid_deactivation_per_h / 3600.0
        if alpha + beta > 0.0:
            eq = alpha / (alpha + beta)
            s["sys_myeloid_activation"] = eq + (a - eq) * math.exp(-(alpha + beta) * dt)
        # plasma cytokines
        e_sys = s.get("endothelial_activation_systemic", 0.0)
        for sp, key, k, prod in self._cytokine:
            if sp == "il6":
                k = k * (1.0 - b.il6_receptor_clearance_fraction * occ)
                prod += p6
            elif sp == "il1":
                prod += p1
            elif sp == "ang2":
                prod *= 1.0 + b.ang2_activation_gain * e_sys
            s[key] = relax(s[key], prod, k, dt)
        # IL-7/IL-15 with the cellular sink
        cart = sum(s.get(k, 0.0) for k in OUTSIDE_TUMOUR_CART)
        lam = self.k7 + self.q7 * (s["lymphocytes_cells"] + self.ld.cart_consumption_ratio * cart)
        s["plasma_il7_15"] = relax(s["plasma_il7_15"], self.p7, lam, dt)
        for key, decay, phi in self._others:   # relax(c, 0, k, dt), its factors formed once
            s[key] = s[key] * decay + 0.0 * phi
        # VWF: production rises with systemic endothelial activation
        s["vwf_iu_dl"] = relax(s["vwf_iu_dl"], self.k_vwf * self.vwf0 * (1.0 + b.vwf_activation_gain * e_sys),
                               self.k_vwf, dt)

    def _lymphocytes(self, s: dict, t0: float) -> None:
        ld, dt = self.ld, self.dt_day
        # fraction of this step inside the lymphodepletion window
        lo, hi = ld.start_day, ld.start_day + ld.duration_days
        overlap = max(0.0, min(hi, t0 + dt) - max(lo, t0)) / dt if ld.enabled else 0.0
        s["lymphocytes_cells"] = logistic_kill(s["lymphocytes_cells"], ld.lymphocyte_recovery_per_day,
                                               self.k_ld * overlap, self.n0, dt)
        s["blood_monocytes_per_ul"] = logistic_kill(s["blood_monocytes_per_ul"], ld.monocyte_recovery_per_day,
                                                    self.k_ld_mono * overlap, ld.monocytes_baseline_per_ul, dt) \
            if ld.monocytes_baseline_per_ul > 0 else 0.0

    def _markers(self, s: dict) -> None:
        for key, x0, decay in self._metabolites:
            s[key] = x0 + (s[key] - x0) * decay

    def record(self, state, row):
        s = state.scalars
        for key in RECORDED:
            row[key] = s[key]

    def endpoints(self, state, out):
        s = state.scalars
        for key in ("blood_cart_peak_per_ul", "blood_cart_peak_day", "il6_myeloid_fraction"):
            out[key] = s[key]
        for sp in ("ifng", "il6"):
            out[f"plasma_{sp}_peak_pg_ml"] = s[f"plasma_{sp}_peak"]
