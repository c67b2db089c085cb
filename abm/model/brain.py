"""The brain barrier, neuro-inflammation and the ASTCT ICANS grade (phase ``patient``).

A well-mixed brain (docs/model.md section 7; ``docs/brain.md``): the brain
endothelium faces plasma, leaks water and cytokines into the brain
interstitium and CSF when activated, and the resulting neuro-inflammation
and vasogenic oedema drive what the ward sees -- the ICE score, the level of
consciousness, seizures, motor weakness and oedema on imaging -- from which
the ICANS grade is computed every step (:func:`abm.grading.icans_grade`).

Brain endothelial activation. The patient's pre-existing activation ``E_0 =
patient.baseline_endothelial_activation`` is a risk factor (Gust 2017), not a
disease: it is the patient's adapted resting state, with an intact barrier,
no oedema and no neuro-inflammation. It primes the endothelium -- it raises
the potency of the cytokine drive -- and the barrier opens with the
activation *above* that resting level, ``A`` (0..1, lag ``tau_E``)::

    x_E = sens_E (1 + g_0 E_0) [ (IL6 (1 - occ) - IL6_0)+/EC_6 + (IFNg - IFNg_0)+/EC_g
                                 + (IL1 (1 - blk) - IL1_0)+/EC_1 + w_A (R - R_rest)+/R_h ]
    A*  = h_n(x_E) (1 - Imax_E E_steroid);   dA/dt = (A* - A)/tau_E
    E   = E_0 + (1 - E_0) A                   (total activation, reported; floor E_0)

With no cytokines above the patient's baseline ``x_E = 0``, so ``A = 0`` and
the barrier is the resting one whatever ``E_0``; under the same exposure a
higher ``E_0`` gives a larger ``A`` (more leak, oedema, CSF entry and ICANS).
``R`` = ANG-2/ANG-1 in plasma, ``R_h`` its healthy baseline and ``R_rest = R_h (1 +
blood.ang2_activation_gain E_0)`` the patient's resting ratio (the blood model's steady state at the
resting systemic activation ``E_0``): like the cytokines, the signal above the
patient's rest over a fixed potency. The endothelium faces plasma, so IL-6
signalling is blocked by the plasma IL-6R occupancy of tocilizumab (``occ``;
brain endothelial cells signal through soluble IL-6R, which tocilizumab also
binds); what tocilizumab cannot reach is the CSF (mAb CSF/serum ~0.1-0.3 %),
so IL-6 that has crossed acts unopposed. With ``brain.endothelial_response =
false`` the cytokine drive is removed: ``A = 0``, ``E = E_0``, resting barrier.

Starling flux across the barrier (docs/model.md 12.5)::

    L_p   = L_p0 (1 + (m_L - 1) A)                 (x1 ... x m_L, m_L ~ 10)
    sigma = sigma_0 - (sigma_0 - sigma_min) A      (1 -> ~0.5)
    P_i   = ICP = P_i0 10^(W / PVI)                 (Marmarou pressure-volume index)
    J_v   = L_p A_c [ (P_c - P_i) - sigma (pi_c - pi_i) ]                   (mL/h; A_c capillary surface)
    dW/dt = J_v - J_v0 - k_W W                      (W >= 0: brain water excess, vasogenic oedema)

``J_v0`` is the flux of the patient's resting barrier (``A = 0``) at resting ICP,
drained by the resting interstitial outflow, so ``W = 0`` at rest; the
excess ``W`` is cleared slowly (``k_W``). Because ICP rises with ``W``, the
flux falls as oedema builds: ``W`` settles where the Starling forces balance
the clearance. Each step linearises ``J_v`` in ``W`` (``dJ_v/dW = -L_p A_c P_i
ln10 / PVI``) and advances the linear ODE exactly (stable at any ``dt``).

Solutes (CSF and brain interstitium as one volume ``V``, bulk outflow
``Q = Q_csf + J_v+``): albumin as the quotient ``q = C_csf / C_plasma``
(the Q_alb observable) and cytokines ``C_s`` (pg/mL), by solvent drag plus
diffusion (permeability-surface product ``PS = PS_0 (1 + (m_PS - 1) A)``)::

    V dq/dt   = (1 - sigma) J_v+ + PS_alb (1 - q) - Q q
    V dC_s/dt = [(1 - sigma) J_v+ + PS_c] C_plasma,s - (PS_c + Q + k_s V) C_s + V P_loc,s

Only IL-6 has a local source: ``P_loc = a EC_N6 k_6 N`` (activated microglia
and astrocytes; CSF IL-6 disproportionately high in severe ICANS, Santomasso
2018); the loop gain ``a < 2`` keeps the loop from sustaining itself.

Neuro-inflammation ``N`` (0..1) from CSF cytokines above the patient's resting
CSF level and from oedema, damped by steroids (dexamethasone crosses the BBB),
rising with ``tau_up`` and resolving with ``tau_down``::

    x_N = sens_N [ sum_s (C_s - C_s,rest)+ / EC_Ns + W / W_50 ];   N* = h_n(x_N) (1 - Imax_N E_steroid)

With ``neuro_sensitivity_scope = "cytokines"`` the patient's sensitivity
weighs the CSF cytokine terms only (the glia's response) and oedema acts
through pressure, the same in every patient:
``x_N = sens_N sum_s (C_s - C_s,rest)+ / EC_Ns + W / W_50``
(docs/calibration.md 7.13 and 7.14: it removes ICANS before CRS).

``C_s,rest`` is the steady CSF level that the resting barrier gives with the
patient's baseline plasma level (``baseline_<s>``), so a patient at rest has
``N = 0``, ICE 10, no seizure hazard and ICANS grade 0.

What the ward sees (``docs/brain.md`` 4):

* **ICE score**, assessed every ``ice_interval_h`` (every
  ``ice_close_interval_h`` once ICANS or CRS is present): ten sub-items
  (orientation to year, month, city, hospital; naming three objects;
  commands; writing; attention), each failed with probability
  ``h_6(N / N50_i)`` (stream ``ICE_SCORE``, cell = item); an unarousable
  patient scores 0.
* **Level of consciousness** at the same assessments:
  ``N + noise`` against increasing thresholds (alert, awakens spontaneously,
  to voice, to touch, unarousable).
* **Seizures** (stream ``SEIZURE``): hazard ``lambda_max h_n(N / N50_s)
  (1 - eff [prophylaxis or antiepileptic])``; a seizure is prolonged (> 5 min)
  with probability ``h_8(N / N50_p)``, repetitive when another came within
  ``repetitive_window_h``; it counts in the grade for ``seizure_hold_h``.
* **Deep focal motor weakness** while ``N >= motor_threshold``.
* **Oedema**: focal above ``focal_oedema_ml`` of water excess, diffuse
  above ``diffuse_oedema_ml`` or with ICP >= ``raised_icp_mmhg``.

:class:`ICANSGrade` (after the CRS grade) keeps episodes, onset, duration,
maximum and the ICANS events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abm import grading
from abm.schema import Section, param
from abm.kernels import rng, streams
from abm.model.effects import patient_effects
from abm.model.odes import hill, phi1, relax, relax_to
from abm.model.eventlog import log_event as _event

LN10 = math.log(10.0)
LN2 = math.log(2.0)
NAN = float("nan")

#: CSF species: plasma species that enter the CSF and drive neuro-inflammation.
CSF_SPECIES = ("il6", "il1", "ifng", "gmcsf")

#: The ten ICE sub-items, in ICE_SCORE cell order: (name, ICE domain).
ICE_SUBITEMS = (("year", "orientation"), ("month", "orientation"), ("city", "orientation"),
                ("hospital", "orientation"), ("object_1", "naming"), ("object_2", "naming"),
                ("object_3", "naming"), ("commands", "commands"), ("writing", "writing"),
                ("attention", "attention"))


@dataclass(frozen=True)
class BrainParams(Section):
    """Brain barrier (Starling), CSF, neuro-inflammation and the ward's neurological signs."""

    endothelial_response: bool = param(True, unit="-",
                                       doc="brain endothelium responds to cytokines (false: stays at baseline)")
    # brain endothelial activation
    il6_ec50_pg_ml: float = param(520.0, unit="pg/mL", gt=0,
                                  doc="IL-6 signalling above baseline (potency; calibrated, docs/calibration.md 7.14)")
    ifng_ec50_pg_ml: float = param(600.0, unit="pg/mL", gt=0,
                                   doc="IFN-gamma above baseline (potency; calibrated, docs/calibration.md 5)")
    il1_ec50_pg_ml: float = param(40.0, unit="pg/mL", gt=0, doc="IL-1 signalling above baseline (potency)")
    ang_weight: float = param(0.15, unit="1", ge=0,
                              doc="drive per rise of ANG-2/ANG-1 above the patient's resting ratio, in units of "
                                  "the healthy baseline ratio")
    activation_hill: float = param(2.0, unit="1", gt=0, le=10, doc="Hill coefficient of activation")
    activation_time_constant_h: float = param(24.0, unit="h", gt=0, doc="lag tau_E of brain endothelial activation")
    baseline_potency_gain: float = param(2.0, unit="1", ge=0,
                                         doc="g_0: pre-existing activation E_0 multiplies the cytokine drive by 1 + g_0 E_0 "
                                             "(priming; E_0 alone opens nothing)")
    steroid_imax: float = param(0.7, unit="1", ge=0, le=1, doc="maximal steroid suppression of activation")
    endothelial_sensitivity_sd: float = param(0.4, unit="1", ge=0, le=3,
                                              doc="log-scale SD of brain endothelial sensitivity")
    # Starling (docs/model.md 12.5)
    lp_cm_s_mmhg: float = param(4.0e-10, unit="cm/s/mmHg", gt=0,
                                doc="resting hydraulic conductivity L_p0 of brain capillaries")
    lp_max_factor: float = param(10.0, unit="1", ge=1, le=100, doc="L_p / L_p0 at full activation")
    capillary_area_cm2: float = param(1.5e5, unit="cm^2", gt=0, doc="capillary surface A (~120 cm2/g x 1.3 kg)")
    sigma_rest: float = param(1.0, unit="1", ge=0, le=1, doc="protein reflection coefficient at rest")
    sigma_min: float = param(0.5, unit="1", ge=0, le=1, doc="reflection coefficient at full activation")
    capillary_pressure_mmhg: float = param(32.0, unit="mmHg", gt=0, le=80, doc="P_c (human 25-35)")
    icp_rest_mmhg: float = param(7.0, unit="mmHg", gt=0, le=30, doc="P_i0: resting ICP / interstitial pressure")
    plasma_oncotic_mmhg: float = param(25.0, unit="mmHg", gt=0, le=50, doc="pi_c")
    interstitial_oncotic_mmhg: float = param(0.5, unit="mmHg", ge=0, le=10, doc="pi_i (CSF protein 0.2-0.45 g/L)")
    pressure_volume_index_ml: float = param(25.0, unit="mL", gt=0,
                                            doc="PVI: water excess that raises ICP tenfold (Marmarou)")
    water_clearance_half_life_h: float = param(48.0, unit="h", gt=0, doc="clearance of brain water excess")
    brain_water_ml: float = param(1100.0, unit="mL", gt=0, doc="brain water (78 % of 1.4 kg), for the fraction")
    # CSF / interstitium
    csf_volume_ml: float = param(400.0, unit="mL", gt=0, doc="CSF (150 mL) plus brain interstitium (250 mL)")
    csf_outflow_ml_h: float = param(21.0, unit="mL/h", gt=0, doc="bulk CSF outflow (~500 mL/day)")
    albumin_ps_ml_h: float = param(0.105, unit="mL/h", gt=0,
                                   doc="resting albumin PS (gives Q_alb ~5e-3 with the outflow)")
    ps_max_factor: float = param(5.0, unit="1", ge=1, le=100,
                                 doc="PS / PS_0 at full activation (Q_alb ~25e-3 at E = 1)")
    cytokine_ps_ratio: float = param(1.0, unit="1", gt=0,
                                     doc="cytokine PS / albumin PS (15-25 vs 66 kDa; restricted like albumin)")
    csf_cytokine_half_life_h: float = param(2.0, unit="h", gt=0, doc="local loss of cytokines in CSF/interstitium")
    local_il6_loop_gain: float = param(1.0, unit="1", ge=0, lt=2,
                                       doc="local IL-6 at N = 1, in units of the patient's CSF IL-6 potency "
                                           "EC_N6 / s (s the neuro sensitivity; < 2: no self-sustaining loop "
                                           "whatever s)")
    # neuro-inflammation
    neuro_il6_ec50_pg_ml: float = param(12.0, unit="pg/mL", gt=0, doc="CSF IL-6 potency on neuro-inflammation")
    neuro_il1_ec50_pg_ml: float = param(10.0, unit="pg/mL", gt=0, doc="CSF IL-1 potency")
    neuro_ifng_ec50_pg_ml: float = param(30.0, unit="pg/mL", gt=0, doc="CSF IFN-gamma potency")
    neuro_gmcsf_ec50_pg_ml: float = param(10.0, unit="pg/mL", gt=0, doc="CSF GM-CSF potency")
    neuro_oedema_ec50_ml: float = param(27.0, unit="mL", gt=0,
                                        doc="brain water excess potency W_50 (calibrated, docs/calibration.md 7.14)")
    neuro_hill: float = param(2.0, unit="1", gt=0, le=10, doc="Hill coefficient of neuro-inflammation")
    neuro_rise_time_constant_h: float = param(12.0, unit="h", gt=0, doc="tau_up of neuro-inflammation")
    neuro_fall_time_constant_h: float = param(36.0, unit="h", gt=0, doc="tau_down of neuro-inflammation")
    neuro_steroid_imax: float = param(0.8, unit="1", ge=0, le=1, doc="maximal steroid damping of N*")
    neuro_sensitivity_sd: float = param(0.49, unit="1", ge=0, le=3,
                                        doc="log-scale SD of neuro sensitivity (calibrated: docs/calibration.md "
                                            "7.14)")
    neuro_sensitivity_scope: str = param(
        "cytokines", unit="-", choices=("all", "cytokines"),
        doc="what the neuro sensitivity weighs: all (CSF cytokines and oedema) or cytokines (CSF "
            "cytokines only, oedema the same in every patient; the calibrated defaults, docs/calibration.md "
            "7.14-7.15)")
    # ward neurological assessment
    ice_interval_h: float = param(8.0, unit="h", gt=0, le=24, doc="ICE / consciousness assessment interval")
    ice_close_interval_h: float = param(4.0, unit="h", gt=0, le=24,
                                        doc="interval once ICANS or CRS is present")
    ice_item_n50: tuple[float, ...] = param((0.40, 0.50, 0.60, 0.55, 0.55, 0.62, 0.70, 0.75, 0.35, 0.30),
                                            unit="1", gt=0, length=10,
                                            doc="N failing each ICE sub-item half the time (year, month, city, "
                                                "hospital, object 1-3, commands, writing, attention)")
    ice_item_hill: float = param(6.0, unit="1", gt=0, le=20, doc="steepness of item failure in N")
    consciousness_thresholds: tuple[float, ...] = param((0.45, 0.60, 0.78, 0.92), unit="1", gt=0, length=4,
                                                        doc="N for drowsy, voice, touch, unarousable")
    consciousness_noise_sd: float = param(0.03, unit="1", ge=0, doc="assessment noise on N for consciousness")
    # seizures
    seizure_max_rate_per_h: float = param(0.03, unit="1/h", ge=0, doc="seizure hazard at full inflammation")
    seizure_n50: float = param(0.8, unit="1", gt=0, doc="N of half-maximal seizure hazard")
    seizure_hill: float = param(6.0, unit="1", gt=0, le=20, doc="steepness of the seizure hazard")
    seizure_prophylaxis_efficacy: float = param(0.5, unit="1", ge=0, le=1,
                                                doc="hazard reduction on levetiracetam (prophylaxis or treatment)")
    seizure_prolonged_n50: float = param(0.92, unit="1", gt=0, doc="N at which half the seizures are prolonged")
    seizure_repetitive_window_h: float = param(2.0, unit="h", gt=0,
                                               doc="a second seizure this soon is repetitive (no return to baseline)")
    seizure_hold_h: float = param(24.0, unit="h", gt=0, doc="time a seizure keeps counting in the grade")
    # motor and oedema signs
    motor_threshold: float = param(0.93, unit="1", gt=0, doc="N with deep focal motor weakness")
    focal_oedema_ml: float = param(9.0, unit="mL", gt=0, doc="water excess seen as focal oedema")
    diffuse_oedema_ml: float = param(10.8, unit="mL", gt=0, doc="water excess seen as diffuse oedema")
    raised_icp_mmhg: float = param(20.0, unit="mmHg", gt=0, doc="ICP with signs of raised intracranial pressure")
    # episodes
    resolution_hold_h: float = param(24.0, unit="h", ge=0, doc="grade 0 this long resolves an ICANS episode")

    def check(self, fail):
        if self.sigma_min > self.sigma_rest:
            fail("sigma_min", f"must not exceed brain.sigma_rest = {self.sigma_rest} (got {self.sigma_min})")
        if self.diffuse_oedema_ml < self.focal_oedema_ml:
            fail("diffuse_oedema_ml", f"must be >= brain.focal_oedema_ml = {self.focal_oedema_ml}")
        th = self.consciousness_thresholds
        if any(b < a for a, b in zip(th, th[1:])):
            fail("consciousness_thresholds", f"must be increasing (got {list(th)})")


# -- the Starling model alone (pure functions) ------------------------------------------------

def starling_flux(lp_cm_s_mmhg: float, area_cm2: float, p_c: float, p_i: float, sigma: float,
                  pi_c: float, pi_i: float) -> float:
    """``J_v = L_p A [(P_c - P_i) - sigma (pi_c - pi_i)]`` in mL/h (pressures in mmHg)."""
    return lp_cm_s_mmhg * area_cm2 * 3600.0 * ((p_c - p_i) - sigma * (pi_c - pi_i))


def barrier(p: BrainParams, e: float) -> tuple[float, float, float]:
    """``(L_p / L_p0, sigma, PS / PS_0)`` at barrier activation ``e`` (activation above the resting level)."""
    return (1.0 + (p.lp_max_factor - 1.0) * e, p.sigma_rest - (p.sigma_rest - p.sigma_min) * e,
            1.0 + (p.ps_max_factor - 1.0) * e)


def icp_mmhg(p: BrainParams, water_ml: float) -> float:
    """ICP from the brain water excess: ``P_i0 10^(W / PVI)``."""
    return p.icp_rest_mmhg * 10.0 ** (water_ml / p.pressure_volume_index_ml)


def flux_ml_h(p: BrainParams, lp_factor: float, sigma: float, water_ml: float) -> float:
    """Transcapillary flux at the given barrier state and water excess (ICP from ``water_ml``)."""
    return starling_flux(p.lp_cm_s_mmhg * lp_factor, p.capillary_area_cm2, p.capillary_pressure_mmhg,
                         icp_mmhg(p, water_ml), sigma, p.plasma_oncotic_mmhg, p.interstitial_oncotic_mmhg)


def resting_flux_ml_h(p: BrainParams) -> float:
    """``J_v0``: the flux of the resting barrier (``A = 0``, any ``E_0``) at resting ICP (drained by
    the resting outflow)."""
    lp, sigma, _ = barrier(p, 0.0)
    return flux_ml_h(p, lp, sigma, 0.0)


def water_step(p: BrainParams, water_ml: float, lp_factor: float, sigma: float, dt_h: float) -> tuple[float, float]:
    """Advance the brain water excess over ``dt_h``; returns ``(W_new, J_v at the start)``.

    ``dW/dt = J_v(W) - J_v0 - k_W W`` with ``J_v`` linearised about the current ``W``
    (``J_v ~ J + b (W0 - W)``, ``b = L_p A P_i ln10 / PVI``) and stepped exactly.
    """
    jv = flux_ml_h(p, lp_factor, sigma, water_ml)
    b = (p.lp_cm_s_mmhg * lp_factor * p.capillary_area_cm2 * 3600.0 * icp_mmhg(p, water_ml) * LN10
         / p.pressure_volume_index_ml)
    k_w = LN2 / p.water_clearance_half_life_h
    production = jv + b * water_ml - resting_flux_ml_h(p)
    lam = b + k_w
    w = water_ml * math.exp(-lam * dt_h) + production * (-math.expm1(-lam * dt_h)) / lam
    return max(0.0, w), jv


def steady_water_ml(p: BrainParams, lp_factor: float, sigma: float, hours: float = 2000.0, dt_h: float = 0.1) -> float:
    """Water excess reached after ``hours`` at a fixed barrier state (used by tests and docs)."""
    w = 0.0
    for _ in range(int(hours / dt_h)):
        w, _ = water_step(p, w, lp_factor, sigma, dt_h)
    return w


# -- the brain model -------------------------------------------------------------------------

#: Recorded scalars: name -> (unit, long name).
RECORDED = {
    "brain_endothelial_activation": ("1", "brain endothelial activation E = E_0 + (1 - E_0) A (total, floor E_0)"),
    "brain_barrier_activation": ("1", "brain endothelial activation above the patient's resting level A "
                                      "(opens the barrier)"),
    "brain_lp_factor": ("1", "brain capillary hydraulic conductivity L_p / L_p0"),
    "brain_sigma": ("1", "brain capillary protein reflection coefficient"),
    "brain_jv_ml_h": ("mL/h", "transcapillary fluid flux J_v into the brain"),
    "brain_water_excess_ml": ("mL", "brain water excess (vasogenic oedema)"),
    "brain_water_excess_pct": ("%", "brain water excess, percent of brain water"),
    "icp_mmhg": ("mmHg", "intracranial (interstitial) pressure"),
    "q_alb": ("1", "CSF/serum albumin quotient Q_alb"),
    **{f"csf_{s}": ("pg/mL", f"CSF / brain interstitial {s.upper()}") for s in CSF_SPECIES},
    "neuroinflammation": ("1", "neuro-inflammation N"),
    "ice_score": ("1", "last assessed ICE score (0-10)"),
    "consciousness_level": ("1", "level of consciousness (0 alert, 1 awakens spontaneously, 2 to voice, "
                                 "3 only to touch, 4 unarousable)"),
    "seizures": ("1", "seizures so far"),
    "seizures_prolonged": ("1", "prolonged (> 5 min) or repetitive seizures so far"),
    "seizure_level": ("1", "ASTCT seizure level counted now (0 none, 1 brief, 2 prolonged/repetitive)"),
    "motor_weakness": ("1", "deep focal motor weakness"),
    "oedema_level": ("1", "cerebral oedema (0 none, 1 focal, 2 diffuse / raised ICP)"),
    "oedema_focal": ("1", "focal cerebral oedema"),
    "oedema_diffuse": ("1", "diffuse cerebral oedema or raised ICP"),
    "icans_grade": ("1", "ASTCT 2019 ICANS grade"),
}

#: Endpoints of the brain model: name -> (unit, long name).
ENDPOINTS = {
    "ice_min": ("1", "lowest ICE score"),
    "consciousness_max": ("1", "deepest level of consciousness"),
    "seizures": ("1", "seizures"),
    "seizures_prolonged": ("1", "prolonged or repetitive seizures"),
    "motor_weakness_any": ("1", "deep focal motor weakness at any time"),
    "oedema_focal_any": ("1", "focal cerebral oedema at any time"),
    "oedema_diffuse_any": ("1", "diffuse cerebral oedema or raised ICP at any time"),
    "brain_water_excess_max_ml": ("mL", "peak brain water excess"),
    "icp_max_mmhg": ("mmHg", "peak ICP"),
    "q_alb_max": ("1", "peak Q_alb"),
    "csf_il6_peak": ("pg/mL", "peak CSF IL-6"),
    "brain_endothelial_activation_max": ("1", "peak brain endothelial activation"),
    "brain_barrier_activation_max": ("1", "peak brain barrier activation A (above the resting level)"),
    "brain_jv_max_ml_h": ("mL/h", "peak transcapillary flux J_v"),
    "neuroinflammation_max": ("1", "peak neuro-inflammation"),
}


class Brain:
    """Brain barrier, CSF, neuro-inflammation, ward neuro signs and the ICANS grade.

    Phase ``patient``, after physiology and before the clinician (which reads
    ``icans_grade``). Reads ``plasma_<s>``, ``baseline_<s>``, ``il6r_occupancy``,
    ``il1r_blockade``, ``steroid_effect``, ``ang2_ang1_ratio``, ``baseline_ang2``, ``ang1_pg_ml``,
    ``seizure_prophylaxis``, ``crs_grade``, ``antiepileptic``. Writes :data:`RECORDED`
    and ``brain_*`` bookkeeping; appends ``seizure`` events.
    """

    phase = "patient"
    meta = {**RECORDED, **ENDPOINTS}

    def __init__(self, sim):
        cfg = sim.config
        p = self.p = cfg.brain
        z = patient_effects(sim.seed, cfg.patient.random_effects)
        self.seed = sim.seed
        self.e0 = cfg.patient.baseline_endothelial_activation
        # the patient's resting ANG-2 relative to the healthy baseline: the blood model's steady state at
        # systemic activation E_0 (ANG-2 release x (1 + gain E_sys)); high ANG-2 is how E_0 shows (Hay 2017)
        self.ang_rest_factor = 1.0 + cfg.blood.ang2_activation_gain * self.e0
        self.endo_sens = math.exp(p.endothelial_sensitivity_sd * z["brain_endothelial_sensitivity"])
        self.neuro_sens = math.exp(p.neuro_sensitivity_sd * z["neuro_sensitivity"])
        self.sens_on_cytokines_only = p.neuro_sensitivity_scope == "cytokines"
        self.dt_h = cfg.run.dt_min / 60.0
        self.dt_day = cfg.run.dt_min / 1440.0
        self.k_csf = LN2 / p.csf_cytokine_half_life_h
        self.neuro_ec50 = {"il6": p.neuro_il6_ec50_pg_ml, "il1": p.neuro_il1_ec50_pg_ml,
                           "ifng": p.neuro_ifng_ec50_pg_ml, "gmcsf": p.neuro_gmcsf_ec50_pg_ml}
        s = sim.state.scalars
        # the resting barrier (A = 0, whatever E_0): its flux and the CSF gain of plasma solutes
        lp0, sigma0, ps0 = barrier(p, 0.0)
        jv0 = max(0.0, resting_flux_ml_h(p))
        ps_c0 = p.albumin_ps_ml_h * ps0 * p.cytokine_ps_ratio
        #: C_s,rest / C_plasma,s: steady CSF level per unit plasma level through the resting barrier
        self.csf_rest_gain = ((1.0 - sigma0) * jv0 + ps_c0) / (
            ps_c0 + p.csf_outflow_ml_h + jv0 + self.k_csf * p.csf_volume_ml)
        #: entry (mL/h) and loss rate (1/h) of the CSF through the resting barrier: the
        #: reference level ``csf_rest_<s>`` follows the current plasma level through them
        self.rest_entry_ml_h = (1.0 - sigma0) * jv0 + ps_c0
        self.rest_loss_per_h = (ps_c0 + p.csf_outflow_ml_h + jv0) / p.csf_volume_ml + self.k_csf
        # formed once for every step: relax(c, prod, rest_loss_per_h, dt_h) = c decay + prod phi
        self._rest_decay = math.exp(-self.rest_loss_per_h * self.dt_h)
        self._rest_phi = phi1(self.rest_loss_per_h, self.dt_h)
        #: per CSF species: name, plasma, CSF, resting-CSF and baseline keys, EC50 of the neuro drive
        self._csf = tuple((sp, f"plasma_{sp}", f"csf_{sp}", f"csf_rest_{sp}", f"baseline_{sp}",
                           self.neuro_ec50[sp]) for sp in CSF_SPECIES)
        if "brain_initialised" not in s:
            s["brain_initialised"] = 1.0
            s["brain_endothelial_activation"] = self.e0       # the patient's adapted resting state
            s["brain_barrier_activation"] = 0.0
            s["brain_lp_factor"], s["brain_sigma"] = lp0, sigma0
            w0 = 0.0                                         # no water excess at rest, whatever E_0
            s["brain_water_excess_ml"] = w0
            s["brain_jv_ml_h"] = flux_ml_h(p, lp0, sigma0, w0)
            q_out = p.csf_outflow_ml_h + jv0
            ps_a = p.albumin_ps_ml_h * ps0
            s["q_alb"] = ((1.0 - sigma0) * jv0 + ps_a) / (ps_a + q_out)
            for sp in CSF_SPECIES:
                s[f"csf_{sp}"] = 0.0
                s[f"csf_rest_{sp}"] = 0.0      # the resting-barrier reference starts where the CSF does
            for key in ("neuroinflammation", "consciousness_level", "seizures", "seizures_prolonged",
                        "seizure_level", "motor_weakness", "oedema_level", "oedema_focal", "oedema_diffuse",
                        "icans_grade", "consciousness_max", "motor_weakness_any",
                        "oedema_focal_any", "oedema_diffuse_any", "csf_il6_peak", "neuroinflammation_max"):
                s[key] = 0.0
            s["ice_score"] = float(grading.ICE_MAX)
            s["ice_min"] = float(grading.ICE_MAX)
            s["brain_water_excess_pct"] = 100.0 * w0 / p.brain_water_ml
            s["icp_mmhg"] = icp_mmhg(p, w0)
            s["icp_max_mmhg"] = s["icp_mmhg"]
            s["brain_water_excess_max_ml"] = w0
            s["q_alb_max"] = s["q_alb"]
            s["brain_endothelial_activation_max"] = self.e0
            s["brain_barrier_activation_max"] = 0.0
            s["brain_jv_max_ml_h"] = s["brain_jv_ml_h"]
            s["brain_next_assessment_day"] = cfg.run.start_day
            s["brain_last_seizure_day"] = -math.inf
            s["brain_seizure_hold_until_day"] = -math.inf
            s["brain_seizure_hold_level"] = 0.0

    # -- pieces ------------------------------------------------------------------------------
    @staticmethod
    def _excess(s: dict, species: str, factor: float = 1.0) -> float:
        return max(0.0, s.get(f"plasma_{species}", 0.0) * factor - s.get(f"baseline_{species}", 0.0))

    def activation_target(self, s: dict) -> float:
        """``A*``, the barrier activation above the resting level, from the plasma drive above the
        patient's baseline (0 at rest and when the endothelial response is off). ``E_0`` primes:
        it multiplies the drive by ``1 + g_0 E_0``."""
        p = self.p
        if not p.endothelial_response:
            return 0.0
        r_h = self.ang_ratio_healthy(s)
        rel = max(0.0, s.get("ang2_ang1_ratio", 0.0) - r_h * self.ang_rest_factor) / r_h if r_h > 0 else 0.0
        get = s.get   # (the excess of each cytokine over its baseline, as _excess)
        x = self.endo_sens * (1.0 + p.baseline_potency_gain * self.e0) * (
            max(0.0, get("plasma_il6", 0.0) * (1.0 - get("il6r_occupancy", 0.0))
                - get("baseline_il6", 0.0)) / p.il6_ec50_pg_ml
            + max(0.0, get("plasma_ifng", 0.0) * 1.0 - get("baseline_ifng", 0.0)) / p.ifng_ec50_pg_ml
            + max(0.0, get("plasma_il1", 0.0) * (1.0 - get("il1r_blockade", 0.0))
                  - get("baseline_il1", 0.0)) / p.il1_ec50_pg_ml
            + p.ang_weight * rel)
        return hill(x, 1.0, p.activation_hill) * (1.0 - p.steroid_imax * s.get("steroid_effect", 0.0))

    @staticmethod
    def ang_ratio_healthy(s: dict) -> float:
        """``R_h``: healthy baseline ANG-2 over ANG-1 (falls back on the ratio at the start). The patient's
        resting ratio is ``R_h (1 + gain E_0)``."""
        ang1 = s.get("ang1_pg_ml", 0.0)
        if ang1 > 0.0 and s.get("baseline_ang2", 0.0) > 0.0:
            return s["baseline_ang2"] / ang1
        return s.get("ang2_ang1_ratio_baseline", 0.0)

    def csf_rest(self, s: dict, species: str) -> float:
        """``C_s,rest``: the CSF level the resting barrier would hold at the plasma levels so far.

        The same CSF balance as ``csf_<s>`` but through the resting barrier
        (``A = 0``) and without local production, driven by the actual plasma
        level (scalar ``csf_rest_<s>``; before the first step the steady level at
        the patient's baseline plasma level). Neuro-inflammation reads the CSF
        *above* it: cytokines that reach the brain because the barrier opened.
        With the endothelial response switched off the two are equal and the
        brain sees no cytokine drive (docs/model.md 10.6), however high plasma levels
        or the patient's neuro sensitivity are.
        """
        return self._csf_rest(s, f"csf_rest_{species}", f"baseline_{species}")

    def _csf_rest(self, s: dict, rest_key: str, baseline_key: str) -> float:
        v = s.get(rest_key)
        return self.csf_rest_gain * s.get(baseline_key, 0.0) if v is None else v

    def neuro_target(self, s: dict) -> float:
        """``N*`` from CSF cytokines above the resting CSF level and from the water excess."""
        p = self.p
        rest = self._csf_rest
        x = sum(max(0.0, s[csf] - rest(s, csf_rest, baseline)) / ec50
                for _, _, csf, csf_rest, baseline, ec50 in self._csf)
        oedema = s["brain_water_excess_ml"] / p.neuro_oedema_ec50_ml
        damp = 1.0 - p.neuro_steroid_imax * s.get("steroid_effect", 0.0)
        if self.sens_on_cytokines_only:
            # oedema acts through pressure, not through the glia's cytokine response
            return hill(self.neuro_sens * x + oedema, 1.0, p.neuro_hill) * damp
        return hill(self.neuro_sens * (x + oedema), 1.0, p.neuro_hill) * damp

    def _barrier_and_csf(self, s: dict) -> None:
        p, dt = self.p, self.dt_h
        a = relax_to(s["brain_barrier_activation"], self.activation_target(s),
                     1.0 / p.activation_time_constant_h, dt)
        s["brain_barrier_activation"] = a
        s["brain_endothelial_activation"] = self.e0 + (1.0 - self.e0) * a
        lp, sigma, ps = barrier(p, a)
        s["brain_lp_factor"], s["brain_sigma"] = lp, sigma
        w, jv = water_step(p, s["brain_water_excess_ml"], lp, sigma, dt)
        s["brain_jv_ml_h"] = jv
        s["brain_water_excess_ml"] = w
        s["brain_water_excess_pct"] = 100.0 * w / p.brain_water_ml
        s["icp_mmhg"] = icp_mmhg(p, w)
        jv_in = max(0.0, jv)
        drag = (1.0 - sigma) * jv_in
        q_out = p.csf_outflow_ml_h + jv_in
        v = p.csf_volume_ml
        ps_a = p.albumin_ps_ml_h * ps
        s["q_alb"] = relax(s["q_alb"], (drag + ps_a) / v, (ps_a + q_out) / v, dt)
        ps_c = ps_a * p.cytokine_ps_ratio
        lam = (ps_c + q_out) / v + self.k_csf
        n = s["neuroinflammation"]
        for sp, plasma, csf, csf_rest, baseline, _ in self._csf:
            c_p = s.get(plasma, 0.0)
            prod = (drag + ps_c) * c_p / v
            if sp == "il6":
                # in units of this patient's potency EC_N6 / s: the loop's strength in N* is then
                # the gain for every s, and a gain < 2 cannot hold N up by itself
                prod += p.local_il6_loop_gain * p.neuro_il6_ec50_pg_ml / self.neuro_sens * self.k_csf * n
            s[csf] = relax(s[csf], prod, lam, dt)
            # relax(rest, entry, rest_loss_per_h, dt) with its factors formed once
            s[csf_rest] = (self._csf_rest(s, csf_rest, baseline) * self._rest_decay
                           + self.rest_entry_ml_h * c_p / v * self._rest_phi)
        target = self.neuro_target(s)
        tau = p.neuro_rise_time_constant_h if target > n else p.neuro_fall_time_constant_h
        s["neuroinflammation"] = relax_to(n, target, 1.0 / tau, dt)

    def _assess(self, state, s: dict, t: float) -> None:
        """Ward neurological assessment: consciousness, then the ICE score item by item."""
        p, n, step = self.p, s["neuroinflammation"], state.step
        seen = n + p.consciousness_noise_sd * rng.normal(self.seed, streams.ICE_SCORE, step, len(ICE_SUBITEMS), 0)
        level = sum(1 for th in p.consciousness_thresholds if seen >= th)
        s["consciousness_level"] = float(level)
        if level == grading.CONSCIOUS_UNAROUSABLE:
            ice = 0                                  # cannot do the assessment
        else:
            ice = 0
            for i, n50 in enumerate(p.ice_item_n50):
                fail = hill(n, n50, p.ice_item_hill)
                if rng.uniform(self.seed, streams.ICE_SCORE, step, i, 0) >= fail:
                    ice += 1
        s["ice_score"] = float(ice)

    def _seizures(self, state, s: dict, t: float) -> None:
        p, n = self.p, s["neuroinflammation"]
        on_aed = s.get("seizure_prophylaxis", 0.0) > 0 or s.get("antiepileptic", 0.0) > 0
        rate = p.seizure_max_rate_per_h * hill(n, p.seizure_n50, p.seizure_hill) * (
            1.0 - p.seizure_prophylaxis_efficacy * (1.0 if on_aed else 0.0))
        if rate > 0.0 and rng.uniform(self.seed, streams.SEIZURE, state.step, 0, 0) < -math.expm1(-rate * self.dt_h):
            p_long = hill(n, p.seizure_prolonged_n50, 8.0)
            prolonged = rng.uniform(self.seed, streams.SEIZURE, state.step, 1, 0) < p_long
            repetitive = t - s["brain_last_seizure_day"] <= p.seizure_repetitive_window_h / 24.0 + 1e-9
            u = rng.uniform(self.seed, streams.SEIZURE, state.step, 2, 0)
            minutes = 5.0 + 25.0 * u if prolonged else 0.5 + 2.5 * u
            level = grading.seizure_level(minutes, repetitive)
            s["seizures"] += 1.0
            if level == grading.SEIZURE_PROLONGED:
                s["seizures_prolonged"] += 1.0
            s["brain_last_seizure_day"] = t
            hold = t + p.seizure_hold_h / 24.0
            if t >= s["brain_seizure_hold_until_day"] - 1e-9:
                s["brain_seizure_hold_level"] = float(level)
            else:
                s["brain_seizure_hold_level"] = max(s["brain_seizure_hold_level"], float(level))
            s["brain_seizure_hold_until_day"] = hold
            what = "prolonged" if minutes > grading.SEIZURE_PROLONGED_MIN else "brief"
            _event(state, t, "seizure", 4 if level == grading.SEIZURE_PROLONGED else 3,
                   f"{what} {minutes:.1f} min{', repetitive' if repetitive else ''}; "
                   f"N {n:.2f}; {'on' if on_aed else 'no'} levetiracetam")
        s["seizure_level"] = (s["brain_seizure_hold_level"] if t < s["brain_seizure_hold_until_day"] - 1e-9 else 0.0)

    def step(self, state):
        p, s = self.p, state.scalars
        t = state.time_day + self.dt_day
        self._barrier_and_csf(s)
        n, w = s["neuroinflammation"], s["brain_water_excess_ml"]
        if t >= s["brain_next_assessment_day"] - 1e-9:
            self._assess(state, s, t)
            close = s["icans_grade"] >= 1 or s.get("crs_grade", 0.0) >= 1
            s["brain_next_assessment_day"] = t + (p.ice_close_interval_h if close else p.ice_interval_h) / 24.0
        self._seizures(state, s, t)
        s["motor_weakness"] = 1.0 if n >= p.motor_threshold else 0.0
        diffuse = w >= p.diffuse_oedema_ml or s["icp_mmhg"] >= p.raised_icp_mmhg
        level = grading.OEDEMA_DIFFUSE if diffuse else (grading.OEDEMA_FOCAL if w >= p.focal_oedema_ml
                                                        else grading.OEDEMA_NONE)
        s["oedema_level"] = float(level)
        s["oedema_focal"] = 1.0 if level == grading.OEDEMA_FOCAL else 0.0
        s["oedema_diffuse"] = 1.0 if level == grading.OEDEMA_DIFFUSE else 0.0
        s["icans_grade"] = float(grading.icans_grade(
            int(s["ice_score"]), int(s["consciousness_level"]), int(s["seizure_level"]),
            s["motor_weakness"] > 0, level))
        # running extremes
        s["ice_min"] = min(s["ice_min"], s["ice_score"])
        s["consciousness_max"] = max(s["consciousness_max"], s["consciousness_level"])
        s["motor_weakness_any"] = max(s["motor_weakness_any"], s["motor_weakness"])
        s["oedema_focal_any"] = max(s["oedema_focal_any"], 1.0 if level >= grading.OEDEMA_FOCAL else 0.0)
        s["oedema_diffuse_any"] = max(s["oedema_diffuse_any"], s["oedema_diffuse"])
        s["brain_water_excess_max_ml"] = max(s["brain_water_excess_max_ml"], w)
        s["icp_max_mmhg"] = max(s["icp_max_mmhg"], s["icp_mmhg"])
        s["q_alb_max"] = max(s["q_alb_max"], s["q_alb"])
        s["csf_il6_peak"] = max(s["csf_il6_peak"], s["csf_il6"])
        s["brain_endothelial_activation_max"] = max(s["brain_endothelial_activation_max"],
                                                    s["brain_endothelial_activation"])
        s["brain_barrier_activation_max"] = max(s["brain_barrier_activation_max"], s["brain_barrier_activation"])
        s["brain_jv_max_ml_h"] = max(s["brain_jv_max_ml_h"], s["brain_jv_ml_h"])
        s["neuroinflammation_max"] = max(s["neuroinflammation_max"], n)

    def record(self, state, row):
        s = state.scalars
        for key in RECORDED:
            row[key] = s[key]

    def endpoints(self, state, out):
        s = state.scalars
        for key in ENDPOINTS:
            out[key] = s[key]


# -- ICANS episodes ------------------------------------------------------------------------------

ICANS_RECORDED = {
    "icans_max_grade": ("1", "maximal ICANS grade so far"),
    "icans_active": ("1", "inside an ICANS episode"),
    "icans_onset_day": ("day", "first ICANS onset (NaN before)"),
    "icans_resolved_day": ("day", "last ICANS resolution (NaN before)"),
    "icans_duration_days": ("day", "time inside ICANS episodes"),
}
ICANS_ENDPOINTS = {
    "icans_episodes": ("1", "ICANS episodes"),
    "icans_resolved": ("1", "ICANS occurred and resolved by the end"),
    "icans_after_crs_days": ("day", "ICANS onset minus CRS onset (NaN unless both)"),
}


class ICANSGrade:
    """ICANS episodes, onset, duration, maximum and events (phase ``patient``, after CRS).

    An episode starts at the first ``icans_grade >= 1`` and resolves after
    ``brain.resolution_hold_h`` at grade 0 (resolution time = start of that
    stretch), as for CRS. Events: ``icans_onset`` (detail: timing relative to
    infusion and CRS, the features), ``icans_grade`` (new episode maximum),
    ``icans_resolved``.
    """

    phase = "patient"
    meta = {**ICANS_RECORDED, **ICANS_ENDPOINTS}

    def __init__(self, sim):
        self.hold_day = sim.config.brain.resolution_hold_h / 24.0
        self.infusion_day = sim.config.blood.infusion_day
        self.dt_day = sim.config.run.dt_min / 1440.0
        s = sim.state.scalars
        if "icans_initialised" not in s:
            s["icans_initialised"] = 1.0
            for key in ("icans_max_grade", "icans_active", "icans_episodes", "icans_episode_max_grade",
                        "icans_duration_completed_days", "icans_duration_days"):
                s[key] = 0.0
            for key in ("icans_onset_day", "icans_resolved_day", "icans_episode_onset_day", "icans_zero_since_day"):
                s[key] = NAN

    @staticmethod
    def features(s: dict) -> str:
        """The features driving the current grade, in words."""
        parts = [f"ICE {int(s.get('ice_score', 10))}",
                 grading.CONSCIOUSNESS_LABELS[int(s.get("consciousness_level", 0))]]
        if s.get("seizure_level", 0) > 0:
            parts.append("seizure" if s["seizure_level"] == grading.SEIZURE_BRIEF else "prolonged/repetitive seizure")
        if s.get("motor_weakness", 0) > 0:
            parts.append("deep focal motor weakness")
        if s.get("oedema_level", 0) > 0:
            parts.append("focal oedema" if s["oedema_level"] == grading.OEDEMA_FOCAL else "diffuse oedema / raised ICP")
        return ", ".join(parts)

    def step(self, state):
        s = state.scalars
        t = state.time_day + self.dt_day
        g = int(s.get("icans_grade", 0.0))
        if g >= 1:
            s["icans_zero_since_day"] = NAN
            if s["icans_active"] == 0.0:
                s["icans_active"] = 1.0
                s["icans_episodes"] += 1.0
                s["icans_episode_onset_day"] = t
                s["icans_episode_max_grade"] = float(g)
                if s["icans_onset_day"] != s["icans_onset_day"]:
                    s["icans_onset_day"] = t
                crs = s.get("crs_onset_day", NAN)
                rel = (f"{t - crs:+.2f} days from CRS onset" if crs == crs else "no CRS before")
                _event(state, t, "icans_onset", g,
                       f"episode {int(s['icans_episodes'])}; day {t - self.infusion_day:+.2f} after infusion, "
                       f"{rel}; CRS grade {int(s.get('crs_grade', 0))} now; {self.features(s)}")
            elif g > s["icans_episode_max_grade"]:
                s["icans_episode_max_grade"] = float(g)
                _event(state, t, "icans_grade", g, f"episode {int(s['icans_episodes'])} reaches grade {g}: "
                                                   f"{self.features(s)}")
            s["icans_max_grade"] = max(s["icans_max_grade"], float(g))
        elif s["icans_active"] == 1.0:
            if s["icans_zero_since_day"] != s["icans_zero_since_day"]:
                s["icans_zero_since_day"] = t
            if t - s["icans_zero_since_day"] >= self.hold_day - 1e-9:
                end = s["icans_zero_since_day"]
                s["icans_active"] = 0.0
                s["icans_resolved_day"] = end
                s["icans_duration_completed_days"] += end - s["icans_episode_onset_day"]
                _event(state, t, "icans_resolved", int(s["icans_episode_max_grade"]),
                       f"episode {int(s['icans_episodes'])}: grade 0 since day {end:.3f}, "
                       f"lasted {end - s['icans_episode_onset_day']:.2f} days")
        running = 0.0
        if s["icans_active"] == 1.0:
            z = s["icans_zero_since_day"]
            running = (z if z == z else t) - s["icans_episode_onset_day"]
        s["icans_duration_days"] = s["icans_duration_completed_days"] + running

    def record(self, state, row):
        s = state.scalars
        for key in ICANS_RECORDED:
            row[key] = s[key]

    def endpoints(self, state, out):
        s = state.scalars
        for key in ("icans_max_grade", "icans_onset_day", "icans_resolved_day", "icans_duration_days",
                    "icans_episodes"):
            out[key] = s[key]
        out["icans_resolved"] = 1.0 if (s["icans_max_grade"] > 0 and s["icans_active"] == 0.0) else 0.0
        crs, ic = s.get("crs_onset_day", NAN), s["icans_onset_day"]
        out["icans_after_crs_days"] = ic - crs if (crs == crs and ic == ic) else NAN
