"""Drug pharmacokinetics and pharmacodynamics (tocilizumab, steroids, anakinra).

The clinician gives doses with :func:`give` (amounts added to the body at
once: i.v. infusions of <= 1 h are treated as boluses); :class:`Drugs`
advances every drug over each step (phase ``tissue_to_blood``, before the
blood ODEs) and publishes the effects read by cells and blood.

Tocilizumab (Frey et al. 2010, J Clin Pharmacol 50:754; two compartments with
parallel linear and Michaelis-Menten elimination from the central one)::

    dA1/dt = -(CL/V1) A1 - Vmax C1/(Km + C1) - (Q/V1) A1 + (Q/V2) A2
    dA2/dt =  (Q/V1) A1 - (Q/V2) A2,          C1 = A1/V1 (mg/L = ug/mL)

    CL 0.3 L/day, V1 3.5 L, Q 0.2 L/day, V2 2.9 L, Vmax 7.5 mg/day, Km 2.7 ug/mL;
    inter-individual variability CV 39/37/66/54 % on CL/V1/V2/Vmax with the
    published correlations. Each step is exact for the linear system with the
    Michaelis-Menten term frozen as a first-order rate ``Vmax/(V1 (Km + C1))``.

IL-6 receptor occupancy (membrane and soluble IL-6R; K_d ~ 1 nM, Rafique 2013)::

    occ = C_nM / (C_nM + Kd),   C_nM = C1 [ug/mL] * 1000 / MW [kDa]

Occupancy blocks IL-6 signalling *and* IL-6R-mediated IL-6 clearance, so
plasma IL-6 rises after tocilizumab (Nishimoto 2008); the blood model applies
``1 - occ`` to the receptor share of IL-6 clearance.

Steroids: dexamethasone (1 compartment, t1/2 3 h, V 60 L: Tsuei; CL ~ 245
mL/min) and methylprednisolone (1 compartment, t1/2 2.5 h, V 85 L) combine as
dexamethasone-equivalent concentration ``C_eq = C_dex + r C_mp`` (r = molar
potency of methylprednisolone relative to dexamethasone, 4 mg MP ~ 0.75 mg
dex). Effect (published as ``steroid_effect`` in [0, 1], through an effect
compartment because suppression needs new protein synthesis)::

    E_target = C_eq^h / (IC50^h + C_eq^h);   dE/dt = ke0 (E_target - E)

Consumers apply their own maximal suppression: ``rate * (1 - Imax * E)``
(systemic myeloid pool: ``blood.myeloid_steroid_imax``; CAR-T:
``product.steroid_max_suppression``).

Anakinra: 1 compartment (t1/2 4 h, V 25 L); IL-1 receptor blockade
``C/(C + IC50)`` published as ``il1r_blockade``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from abm.schema import Section, param
from abm.model.effects import patient_effects
from abm.model.odes import hill, linear2, relax_to

LN2 = math.log(2.0)

#: Drugs tracked by :func:`give` (name -> long name).
DRUGS = {
    "tocilizumab": "tocilizumab (anti-IL-6R)",
    "dexamethasone": "dexamethasone",
    "methylprednisolone": "methylprednisolone",
    "anakinra": "anakinra (IL-1 receptor antagonist)",
}

# Frey 2010 Table II correlations of the random effects (CL, V1, V2, Vmax).
_TCZ_CORR = np.array([[1.0, 0.6, -0.1, -0.5],
                      [0.6, 1.0, 0.5, 0.2],
                      [-0.1, 0.5, 1.0, 0.2],
                      [-0.5, 0.2, 0.2, 1.0]])


@dataclass(frozen=True)
class DrugParams(Section):
    """PK and PD of the drugs the clinician can give."""

    # tocilizumab (Frey 2010 typical values)
    tcz_cl_l_per_day: float = param(0.3, unit="L/day", gt=0, doc="tocilizumab linear clearance")
    tcz_v1_l: float = param(3.5, unit="L", gt=0, doc="tocilizumab central volume")
    tcz_q_l_per_day: float = param(0.2, unit="L/day", ge=0, doc="tocilizumab inter-compartmental clearance")
    tcz_v2_l: float = param(2.9, unit="L", gt=0, doc="tocilizumab peripheral volume")
    tcz_vmax_mg_per_day: float = param(7.5, unit="mg/day", ge=0,
                                       doc="tocilizumab Michaelis-Menten maximal elimination")
    tcz_km_ug_ml: float = param(2.7, unit="ug/mL", gt=0, doc="tocilizumab Michaelis-Menten constant")
    tcz_omega: tuple[float, ...] = param((0.376, 0.358, 0.601, 0.506), unit="1", ge=0, le=3, length=4,
                                         doc="log-scale SDs of CL, V1, V2, Vmax (Frey 2010 CV 39/37/66/54 %)")
    tcz_mw_kda: float = param(148.0, unit="kDa", gt=0, doc="tocilizumab molecular weight")
    tcz_kd_nm: float = param(1.0, unit="nM", gt=0, doc="IL-6R dissociation constant of tocilizumab")
    # steroids
    dex_half_life_h: float = param(3.0, unit="h", gt=0, doc="dexamethasone elimination half-life (2.4-3.4 h)")
    dex_volume_l: float = param(60.0, unit="L", gt=0, doc="dexamethasone volume of distribution")
    dex_cl_sd: float = param(0.3, unit="1", ge=0, le=3, doc="log-scale SD of dexamethasone clearance")
    dex_mw: float = param(392.5, unit="g/mol", gt=0, doc="dexamethasone molar mass")
    mp_half_life_h: float = param(2.5, unit="h", gt=0, doc="methylprednisolone elimination half-life")
    mp_volume_l: float = param(85.0, unit="L", gt=0, doc="methylprednisolone volume of distribution")
    mp_mw: float = param(374.5, unit="g/mol", gt=0, doc="methylprednisolone molar mass")
    mp_dex_potency: float = param(0.179, unit="1", ge=0,
                                  doc="molar anti-inflammatory potency of methylprednisolone vs dexamethasone")
    steroid_ic50_nm: float = param(5.0, unit="nM", gt=0,
                                   doc="dexamethasone-equivalent concentration of half-maximal effect")
    steroid_hill: float = param(1.0, unit="1", gt=0, le=10, doc="Hill coefficient of the steroid effect")
    steroid_onset_half_life_h: float = param(2.0, unit="h", gt=0,
                                             doc="half-life of the effect compartment (onset and offset)")
    # anakinra
    anakinra_half_life_h: float = param(4.0, unit="h", gt=0, doc="anakinra elimination half-life")
    anakinra_volume_l: float = param(25.0, unit="L", gt=0, doc="anakinra volume of distribution")
    anakinra_ic50_ng_ml: float = param(50.0, unit="ng/mL", gt=0,
                                       doc="anakinra concentration blocking half of IL-1 signalling")


def tcz_parameters(p: DrugParams, z: dict[str, float]) -> dict[str, float]:
    """Individual tocilizumab PK parameters from standard normal draws ``z``.

    ``eta = diag(omega) L z`` with ``L`` the Cholesky factor of the Frey 2010
    correlation matrix; CL, V1, V2 and Vmax are log-normal around the typical
    values; Q and Km have no variability.
    """
    zz = np.array([z["tcz_cl"], z["tcz_v1"], z["tcz_v2"], z["tcz_vmax"]])
    eta = np.array(p.tcz_omega) * (np.linalg.cholesky(_TCZ_CORR) @ zz)
    return {
        "cl": p.tcz_cl_l_per_day * math.exp(eta[0]),
        "v1": p.tcz_v1_l * math.exp(eta[1]),
        "v2": p.tcz_v2_l * math.exp(eta[2]),
        "vmax": p.tcz_vmax_mg_per_day * math.exp(eta[3]),
        "q": p.tcz_q_l_per_day,
        "km": p.tcz_km_ug_ml,
    }


def tcz_step(a1: float, a2: float, k: dict[str, float], dt_day: float) -> tuple[float, float]:
    """Advance tocilizumab amounts (mg) by ``dt_day`` (exact with MM rate frozen)."""
    c1 = a1 / k["v1"]
    k_mm = k["vmax"] / (k["v1"] * (k["km"] + c1))
    k10 = k["cl"] / k["v1"]
    k12 = k["q"] / k["v1"]
    k21 = k["q"] / k["v2"]
    return linear2(-(k10 + k_mm + k12), k21, k12, -k21, a1, a2, dt_day)


def give(state, drug: str, mg: float, reason: str = "") -> None:
    """Give ``mg`` of ``drug`` now: add it to the body and count it.

    Updates ``<drug>_amount_mg`` (body or central amount), ``<drug>_total_mg``
    (cumulative), ``<drug>_doses``, ``<drug>_first_day`` and ``<drug>_last_day``, and appends an
    event ``(time_day, drug, 0, detail)`` to ``state.events`` if present.
    The time is the end of the current step (doses act from the next step).
    """
    if drug not in DRUGS:
        raise ValueError(f"unknown drug {drug!r}; known: {', '.join(DRUGS)}")
    if mg <= 0:
        return
    s = state.scalars
    t = state.time_day + state.config.run.dt_min / 1440.0
    key = "tcz_central_mg" if drug == "tocilizumab" else f"{drug}_amount_mg"
    s[key] = s.get(key, 0.0) + mg
    s[f"{drug}_total_mg"] = s.get(f"{drug}_total_mg", 0.0) + mg
    s[f"{drug}_doses"] = s.get(f"{drug}_doses", 0.0) + 1.0
    s[f"{drug}_last_day"] = t
    s.setdefault(f"{drug}_first_day", t)
    events = getattr(state, "events", None)
    if events is not None:
        events.append((t, drug, 0, f"{mg:g} mg" + (f"; {reason}" if reason else "")))


#: Recorded scalars: name -> (unit, long name).
RECORDED = {
    "tcz_ug_ml": ("ug/mL", "tocilizumab serum concentration"),
    "il6r_occupancy": ("1", "IL-6 receptor occupancy by tocilizumab"),
    "dex_nm": ("nM", "dexamethasone plasma concentration"),
    "mp_nm": ("nM", "methylprednisolone plasma concentration"),
    "steroid_dexeq_nm": ("nM", "dexamethasone-equivalent steroid concentration"),
    "steroid_effect": ("1", "steroid effect (fraction of maximal suppression)"),
    "anakinra_ng_ml": ("ng/mL", "anakinra plasma concentration"),
    "il1r_blockade": ("1", "IL-1 receptor blockade by anakinra"),
    **{f"{d}_total_mg": ("mg", f"cumulative {DRUGS[d]} given") for d in DRUGS},
    **{f"{d}_doses": ("1", f"doses of {DRUGS[d]} given") for d in DRUGS},
}


class Drugs:
    """Advances drug PK and publishes PD scalars (phase ``tissue_to_blood``).

    Reads: ``tcz_central_mg``, ``tcz_peripheral_mg``, ``dexamethasone_amount_mg``,
    ``methylprednisolone_amount_mg``, ``anakinra_amount_mg``, ``steroid_effect``.
    Writes: those amounts, ``tcz_ug_ml``, ``il6r_occupancy``, ``dex_nm``,
    ``mp_nm``, ``steroid_dexeq_nm``, ``steroid_effect``, ``anakinra_ng_ml``,
    ``il1r_blockade``.
    """

    phase = "tissue_to_blood"
    meta = RECORDED

    def __init__(self, sim):
        cfg = sim.config
        p = self.p = cfg.drugs
        z = patient_effects(sim.seed, cfg.patient.random_effects)
        self.tcz = tcz_parameters(p, z)
        self.dt_day = cfg.run.dt_min / 1440.0
        dex_cl = LN2 / p.dex_half_life_h * math.exp(p.dex_cl_sd * z["dex_clearance"])
        self.k_dex_per_day = dex_cl * 24.0
        self.k_mp_per_day = LN2 / p.mp_half_life_h * 24.0
        self.k_ana_per_day = LN2 / p.anakinra_half_life_h * 24.0
        self.ke0_per_day = LN2 / p.steroid_onset_half_life_h * 24.0
        # the step's elimination factors (constants)
        self._decay_dex = math.exp(-self.k_dex_per_day * self.dt_day)
        self._decay_mp = math.exp(-self.k_mp_per_day * self.dt_day)
        self._decay_ana = math.exp(-self.k_ana_per_day * self.dt_day)
        s = sim.state.scalars
        for key in ("tcz_central_mg", "tcz_peripheral_mg", "dexamethasone_amount_mg",
                    "methylprednisolone_amount_mg", "anakinra_amount_mg", "steroid_effect"):
            s.setdefault(key, 0.0)
        for d in DRUGS:
            s.setdefault(f"{d}_total_mg", 0.0)
            s.setdefault(f"{d}_doses", 0.0)
        self.publish(s)

    def publish(self, s: dict) -> None:
        """Concentrations and receptor effects from the current amounts."""
        p = self.p
        c_tcz = s["tcz_central_mg"] / self.tcz["v1"]
        s["tcz_ug_ml"] = c_tcz
        c_nm = c_tcz * 1000.0 / p.tcz_mw_kda
        s["il6r_occupancy"] = c_nm / (c_nm + p.tcz_kd_nm)
        s["dex_nm"] = s["dexamethasone_amount_mg"] / p.dex_volume_l / p.dex_mw * 1e6
        s["mp_nm"] = s["methylprednisolone_amount_mg"] / p.mp_volume_l / p.mp_mw * 1e6
        s["steroid_dexeq_nm"] = s["dex_nm"] + p.mp_dex_potency * s["mp_nm"]
        c_ana = s["anakinra_amount_mg"] / p.anakinra_volume_l * 1000.0  # ng/mL
        s["anakinra_ng_ml"] = c_ana
        s["il1r_blockade"] = c_ana / (c_ana + p.anakinra_ic50_ng_ml)

    def steroid_target(self, s: dict) -> float:
        return hill(s["steroid_dexeq_nm"], self.p.steroid_ic50_nm, self.p.steroid_hill)

    def step(self, state):
        s, dt = state.scalars, self.dt_day
        target = self.steroid_target(s)
        s["tcz_central_mg"], s["tcz_peripheral_mg"] = tcz_step(
            s["tcz_central_mg"], s["tcz_peripheral_mg"], self.tcz, dt)
        s["dexamethasone_amount_mg"] *= self._decay_dex
        s["methylprednisolone_amount_mg"] *= self._decay_mp
        s["anakinra_amount_mg"] *= self._decay_ana
        self.publish(s)
        # effect compartment: target averaged over the step (start and end)
        target = 0.5 * (target + self.steroid_target(s))
        s["steroid_effect"] = relax_to(s["steroid_effect"], target, self.ke0_per_day, dt)

    def record(self, state, row):
        s = state.scalars
        for key in RECORDED:
            row[key] = s[key]

    def endpoints(self, state, out):
        s = state.scalars
        for d in DRUGS:
            out[f"{d}_total_mg"] = s[f"{d}_total_mg"]
            out[f"{d}_doses"] = s[f"{d}_doses"]
