"""Patient physiology: temperature, systemic and pulmonary vascular leak, MAP and SpO2.

Every patient has random effects (:mod:`abm.model.effects`) on the baselines
and sensitivities below. Cytokine drives use plasma levels above the
patient's healthy baseline (``(C - C0)+``), IL-6 as signalling
``IL-6 (1 - occ)`` (tocilizumab IL-6R occupancy) and IL-1 as
``IL-1 (1 - il1r_blockade)`` (anakinra).

Temperature (IL-6 is the necessary endogenous pyrogen -- IL-6-deficient mice
get no fever from IL-1 -- and IL-1 a co-signal that potentiates it: Chai
1996, Cartmell 2000; human endotoxaemia +1.5-2 C; docs/model.md 12.6). So
blocking IL-6 signalling (tocilizumab) removes fever whatever the IL-1::

    x_T = sens_T (IL6sig - IL6_0)+ / EC_T6 * (1 + (IL1sig - IL1_0)+ / EC_T1)
    T*  = T0 + dT_max h_n(x_T) (1 - Imax_ap E_steroid)        h_n(x) = x^n/(1 + x^n)
    dT/dt = (T* - T) / tau_T                                   (lag compartment, 1-3 h)

Systemic endothelial activation ``E`` (whole-body vasculature, lag ``tau_E``),
floor ``E_b = patient.baseline_endothelial_activation``::

    x_E = sens_E [ (IL6sig - IL6_0)+/EC_E6 + (IFNg - IFNg_0)+/EC_Eg + (IL1sig - IL1_0)+/EC_E1 ]
    E*  = E_b + (1 - E_b) h_n(x_E) (1 - Imax_E E_steroid);     dE/dt = (E* - E)/tau_E

Systemic leak and mean arterial pressure (fluids and vasopressors raise it)::

    y   = sens_L [ E + w_A (R/R0 - 1)+ ],   R = ANG-2/ANG-1
    MAP = MAP0 - dMAP_max y^2/(y50^2 + y^2) + g_F V_F + g_V n_pressors + g_VP [vasopressin]

``V_F`` is the intravascular volume left from fluid boluses; it leaves with
half-life ``t_F / (1 + a_F y)`` (leakier vessels hold fluid less well). The
cumulative fluid balance (excreted with half-life 24 h) adds to lung water.

Oxygenation (a shunt-like model; alveolar gas equation and the Severinghaus
oxygen dissociation curve)::

    z     = sens_P [ E + w_F (balance - 1 L)+ ]
    shunt = s0 + (s_max - s0) h_3(z / z50) (1 - r_PPV [positive pressure])
    PAO2  = FiO2 (760 - 47) - PaCO2 / 0.8;     PaO2 = PAO2 (1 - shunt)
    SpO2  = 100 / (23400 / (PaO2^3 + 150 PaO2) + 1)

FiO2 comes from the oxygen support rung (:data:`OXYGEN_RUNGS`): room air 0.21,
nasal cannula 0.21 + 0.04 L/min, high flow and positive pressure as set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abm import grading
from abm.schema import Section, param
from abm.model.effects import patient_effects
from abm.model.odes import hill, relax_to

LN2 = math.log(2.0)

#: Oxygen support rungs: (device, flow L/min, FiO2, positive pressure).
OXYGEN_RUNGS: tuple[tuple[str, float, float, bool], ...] = (
    ("room_air", 0.0, 0.21, False),
    ("nasal_cannula", 2.0, 0.29, False),
    ("nasal_cannula", 4.0, 0.37, False),
    ("nasal_cannula", 6.0, 0.45, False),
    ("high_flow_nasal_cannula", 40.0, 0.6, False),
    ("high_flow_nasal_cannula", 50.0, 0.8, False),
    ("high_flow_nasal_cannula", 60.0, 1.0, False),
    ("bipap", 0.0, 0.6, True),
    ("bipap", 0.0, 0.8, True),
    ("mechanical_ventilation", 0.0, 1.0, True),
)
#: ASTCT hypoxia support level of each rung.
OXYGEN_RUNG_LEVEL = tuple(grading.oxygen_level(d, f) for d, f, _, _ in OXYGEN_RUNGS)
#: Rung used for oxygen given for comfort (2 L/min nasal cannula).
COMFORT_RUNG = 1


def spo2_from_pao2(pao2: float) -> float:
    """Severinghaus (1979) oxygen dissociation curve: SpO2 (%) from PaO2 (mmHg)."""
    pao2 = max(pao2, 1e-3)
    return 100.0 / (23400.0 / (pao2 ** 3 + 150.0 * pao2) + 1.0)


@dataclass(frozen=True)
class PhysiologyParams(Section):
    """Temperature, vascular leak, blood pressure and oxygenation."""

    # temperature
    temperature_baseline_c: float = param(36.8, unit="degC", ge=34, le=38, doc="afebrile core temperature T0")
    temperature_baseline_sd: float = param(0.2, unit="degC", ge=0, le=2, doc="SD of T0 across patients")
    fever_max_c: float = param(3.0, unit="degC", ge=0, le=6, doc="maximal cytokine-driven rise dT_max (2.5-3)")
    fever_il6_ec50_pg_ml: float = param(50.0, unit="pg/mL", gt=0,
                                        doc="IL-6 signalling above baseline for half dT_max (20-50; calibrated to "
                                            "the upper end, docs/calibration.md 5)")
    fever_il1_ec50_pg_ml: float = param(50.0, unit="pg/mL", gt=0,
                                        doc="IL-1 above baseline that doubles the IL-6 pyrogen drive")
    fever_hill: float = param(2.0, unit="1", gt=0, le=10, doc="Hill coefficient of the fever map")
    fever_sensitivity_sd: float = param(0.3, unit="1", ge=0, le=3, doc="log-scale SD of pyrogen sensitivity")
    fever_lag_h: float = param(1.5, unit="h", gt=0, doc="time constant of the temperature lag compartment")
    steroid_antipyretic_imax: float = param(0.5, unit="1", ge=0, le=1, doc="maximal antipyretic steroid effect")
    # systemic endothelial activation
    endothelial_il6_ec50_pg_ml: float = param(150.0, unit="pg/mL", gt=0, doc="IL-6 signalling potency")
    endothelial_ifng_ec50_pg_ml: float = param(500.0, unit="pg/mL", gt=0, doc="IFN-gamma potency")
    endothelial_il1_ec50_pg_ml: float = param(100.0, unit="pg/mL", gt=0, doc="IL-1 potency")
    endothelial_hill: float = param(2.0, unit="1", gt=0, le=10, doc="Hill coefficient of activation")
    endothelial_sensitivity_sd: float = param(0.3, unit="1", ge=0, le=3, doc="log-scale SD of sensitivity")
    endothelial_time_constant_h: float = param(6.0, unit="h", gt=0, doc="lag tau_E of systemic activation")
    endothelial_steroid_imax: float = param(0.7, unit="1", ge=0, le=1,
                                            doc="maximal steroid suppression of endothelial activation")
    # systemic leak and MAP
    leak_ang_weight: float = param(0.05, unit="1", ge=0, doc="weight w_A of the relative ANG-2/ANG-1 rise")
    leak_sensitivity_sd: float = param(0.35, unit="1", ge=0, le=3, doc="log-scale SD of leak sensitivity")
    map_baseline_mmhg: float = param(88.0, unit="mmHg", ge=50, le=130, doc="baseline MAP0")
    map_baseline_sd: float = param(7.0, unit="mmHg", ge=0, le=30, doc="SD of MAP0")
    map_max_drop_mmhg: float = param(50.0, unit="mmHg", ge=0, le=100, doc="maximal leak-driven MAP fall")
    map_leak_half: float = param(0.6, unit="1", gt=0, doc="leak y of half-maximal MAP fall")
    fluid_map_gain_mmhg_per_l: float = param(10.0, unit="mmHg/L", ge=0, doc="MAP rise per litre intravascular")
    fluid_half_life_h: float = param(4.0, unit="h", gt=0, doc="intravascular half-life of a bolus, no leak")
    fluid_leak_acceleration: float = param(2.0, unit="1", ge=0, doc="a_F: leak shortens the intravascular life")
    fluid_excretion_half_life_h: float = param(24.0, unit="h", gt=0, doc="excretion of the fluid balance")
    vasopressor_map_gain_mmhg: float = param(15.0, unit="mmHg", ge=0, doc="MAP rise per titrated vasopressor")
    vasopressin_map_gain_mmhg: float = param(8.0, unit="mmHg", ge=0, doc="MAP rise from add-on vasopressin")
    # oxygenation
    shunt_baseline: float = param(0.03, unit="1", ge=0, lt=1, doc="baseline venous admixture s0")
    shunt_baseline_sd: float = param(0.3, unit="1", ge=0, le=3, doc="log-scale SD of s0")
    shunt_max: float = param(0.95, unit="1", gt=0, lt=1, doc="maximal venous admixture")
    pulmonary_leak_half: float = param(1.0, unit="1", gt=0, doc="pulmonary drive z50 of half-maximal shunt")
    pulmonary_hill: float = param(3.0, unit="1", gt=0, le=10, doc="Hill coefficient of the shunt map")
    pulmonary_sensitivity_sd: float = param(0.4, unit="1", ge=0, le=3, doc="log-scale SD of pulmonary sensitivity")
    fluid_overload_weight_per_l: float = param(0.1, unit="1/L", ge=0,
                                               doc="pulmonary drive per litre of positive balance above 1 L")
    ppv_recruitment: float = param(0.5, unit="1", ge=0, le=1, doc="shunt reduction by positive pressure")
    paco2_mmhg: float = param(40.0, unit="mmHg", gt=0, le=100, doc="arterial CO2 (alveolar gas equation)")


#: Recorded scalars: name -> (unit, long name).
RECORDED = {
    "temperature_c": ("degC", "core temperature"),
    "map_mmhg": ("mmHg", "mean arterial pressure"),
    "spo2_pct": ("%", "oxygen saturation (SpO2)"),
    "fio2": ("1", "inspired oxygen fraction"),
    "pulmonary_shunt": ("1", "venous admixture"),
    "endothelial_activation_systemic": ("1", "systemic endothelial activation"),
    "systemic_leak": ("1", "systemic vascular leak index"),
    "fluid_volume_ml": ("mL", "intravascular volume left from fluid boluses"),
    "fluid_balance_ml": ("mL", "cumulative fluid balance (given - excreted)"),
}


class Vitals:
    """Constants of one patient's physiology; evaluates MAP and SpO2 from the scalars."""

    def __init__(self, config, seed: int):
        p = self.p = config.physiology
        z = self.z = patient_effects(seed, config.patient.random_effects)
        self.t0 = p.temperature_baseline_c + p.temperature_baseline_sd * z["temperature_baseline"]
        self.fever_sens = math.exp(p.fever_sensitivity_sd * z["fever_sensitivity"])
        self.endo_sens = math.exp(p.endothelial_sensitivity_sd * z["endothelial_sensitivity"])
        self.leak_sens = math.exp(p.leak_sensitivity_sd * z["leak_sensitivity"])
        self.pulm_sens = math.exp(p.pulmonary_sensitivity_sd * z["pulmonary_sensitivity"])
        self.map0 = p.map_baseline_mmhg + p.map_baseline_sd * z["map_baseline"]
        self.shunt0 = min(0.5, p.shunt_baseline * math.exp(p.shunt_baseline_sd * z["shunt_baseline"]))
        self.e_floor = config.patient.baseline_endothelial_activation

    def leak(self, s: dict) -> float:
        """Systemic leak index ``y``."""
        r0 = s.get("ang2_ang1_ratio_baseline", 0.0)
        rel = s.get("ang2_ang1_ratio", 0.0) / r0 - 1.0 if r0 > 0 else 0.0
        return self.leak_sens * (s["endothelial_activation_systemic"] + self.p.leak_ang_weight * max(0.0, rel))

    def map_mmhg(self, s: dict, n_pressors: float | None = None, vasopressin: float | None = None,
                 fluid_ml: float | None = None) -> float:
        """MAP with the current (or the given) vasopressors and intravascular fluid."""
        p = self.p
        n = s.get("vasopressors", 0.0) if n_pressors is None else n_pressors
        vp = s.get("vasopressin", 0.0) if vasopressin is None else vasopressin
        vf = s.get("fluid_volume_ml", 0.0) if fluid_ml is None else fluid_ml
        y = self.leak(s)
        drop = p.map_max_drop_mmhg * y * y / (p.map_leak_half ** 2 + y * y)
        return (self.map0 - drop + p.fluid_map_gain_mmhg_per_l * vf / 1000.0
                + p.vasopressor_map_gain_mmhg * n + p.vasopressin_map_gain_mmhg * vp)

    def shunt(self, s: dict, positive_pressure: bool) -> float:
        p = self.p
        over = max(0.0, s.get("fluid_balance_ml", 0.0) / 1000.0 - 1.0)
        zp = self.pulm_sens * (s["endothelial_activation_systemic"] + p.fluid_overload_weight_per_l * over)
        sh = self.shunt0 + (p.shunt_max - self.shunt0) * hill(zp, p.pulmonary_leak_half, p.pulmonary_hill)
        if positive_pressure:
            sh *= 1.0 - p.ppv_recruitment
        return sh

    def spo2(self, s: dict, rung: int) -> float:
        """SpO2 (%) on oxygen rung ``rung`` of :data:`OXYGEN_RUNGS`."""
        _, _, fio2, ppv = OXYGEN_RUNGS[rung]
        pa = fio2 * (760.0 - 47.0) - self.p.paco2_mmhg / 0.8
        return spo2_from_pao2(pa * (1.0 - self.shunt(s, ppv)))

    def delivered_rung(self, s: dict) -> int:
        """The rung physically delivered: the therapeutic one, or comfort oxygen."""
        rung = int(s.get("oxygen_rung", 0.0))
        if rung == 0 and s.get("oxygen_for_comfort", 0.0) > 0.0:
            return COMFORT_RUNG
        return rung

    def update_vitals(self, s: dict) -> None:
        """Write ``map_mmhg``, ``spo2_pct``, ``fio2``, ``pulmonary_shunt``, ``systemic_leak``."""
        rung = self.delivered_rung(s)
        s["systemic_leak"] = self.leak(s)
        s["map_mmhg"] = self.map_mmhg(s)
        s["spo2_pct"] = self.spo2(s, rung)
        s["fio2"] = OXYGEN_RUNGS[rung][2]
        s["pulmonary_shunt"] = self.shunt(s, OXYGEN_RUNGS[rung][3])


class Physiology:
    """Temperature, endothelial activation, fluids and vital signs (phase ``patient``).

    Reads: ``plasma_<s>``, ``baseline_<s>``, ``il6r_occupancy``,
    ``il1r_blockade``, ``steroid_effect``, ``ang2_ang1_ratio``, the support
    set by the clinician (``vasopressors``, ``vasopressin``, ``oxygen_rung``,
    ``oxygen_for_comfort``). Writes: :data:`RECORDED`.
    """

    phase = "patient"
    meta = RECORDED

    def __init__(self, sim):
        cfg = sim.config
        self.p = cfg.physiology
        self.v = Vitals(cfg, sim.seed)
        self.dt_h = cfg.run.dt_min / 60.0
        #: the step's fluid excretion factor (a constant)
        self._excretion = math.exp(-LN2 / self.p.fluid_excretion_half_life_h * self.dt_h)
        s = sim.state.scalars
        if "physiology_initialised" not in s:
            s["physiology_initialised"] = 1.0
            s["temperature_c"] = self.v.t0
            s["endothelial_activation_systemic"] = self.v.e_floor
            s["fluid_volume_ml"] = 0.0
            s["fluid_balance_ml"] = 0.0
            s["ang2_ang1_ratio_baseline"] = s.get("ang2_ang1_ratio", 0.0)
            self.v.update_vitals(s)
            s["temperature_max_c"] = s["temperature_c"]
            s["map_min_mmhg"] = s["map_mmhg"]
            s["spo2_min_pct"] = s["spo2_pct"]

    def _excess(self, s: dict, species: str, factor: float = 1.0) -> float:
        return max(0.0, s.get(f"plasma_{species}", 0.0) * factor - s.get(f"baseline_{species}", 0.0))

    def step(self, state):
        p, v, s, dt = self.p, self.v, state.scalars, self.dt_h
        steroid = s.get("steroid_effect", 0.0)
        get = s.get   # (the excess of each cytokine over its baseline, as _excess)
        il6 = max(0.0, get("plasma_il6", 0.0) * (1.0 - get("il6r_occupancy", 0.0)) - get("baseline_il6", 0.0))
        il1 = max(0.0, get("plasma_il1", 0.0) * (1.0 - get("il1r_blockade", 0.0)) - get("baseline_il1", 0.0))
        ifng = max(0.0, get("plasma_ifng", 0.0) * 1.0 - get("baseline_ifng", 0.0))
        # temperature
        x_t = v.fever_sens * il6 / p.fever_il6_ec50_pg_ml * (1.0 + il1 / p.fever_il1_ec50_pg_ml)
        target_t = v.t0 + p.fever_max_c * hill(x_t, 1.0, p.fever_hill) * (
            1.0 - p.steroid_antipyretic_imax * steroid)
        s["temperature_c"] = relax_to(s["temperature_c"], target_t, 1.0 / p.fever_lag_h, dt)
        # systemic endothelial activation
        x_e = v.endo_sens * (il6 / p.endothelial_il6_ec50_pg_ml + ifng / p.endothelial_ifng_ec50_pg_ml
                             + il1 / p.endothelial_il1_ec50_pg_ml)
        target_e = v.e_floor + (1.0 - v.e_floor) * hill(x_e, 1.0, p.endothelial_hill) * (
            1.0 - p.endothelial_steroid_imax * steroid)
        s["endothelial_activation_systemic"] = relax_to(s["endothelial_activation_systemic"], target_e,
                                                        1.0 / p.endothelial_time_constant_h, dt)
        # fluids leave the vessels (faster when leaky) and are excreted
        y = v.leak(s)
        k_f = LN2 / p.fluid_half_life_h * (1.0 + p.fluid_leak_acceleration * y)
        s["fluid_volume_ml"] *= math.exp(-k_f * dt)
        s["fluid_balance_ml"] *= self._excretion
        v.update_vitals(s)
        s["temperature_max_c"] = max(s["temperature_max_c"], s["temperature_c"])
        s["map_min_mmhg"] = min(s["map_min_mmhg"], s["map_mmhg"])
        s["spo2_min_pct"] = min(s["spo2_min_pct"], s["spo2_pct"])

    def record(self, state, row):
        s = state.scalars
        for key in RECORDED:
            row[key] = s[key]

    def endpoints(self, state, out):
        s = state.scalars
        out["temperature_max_c"] = s["temperature_max_c"]
        out["map_min_mmhg"] = s["map_min_mmhg"]
        out["spo2_min_pct"] = s["spo2_min_pct"]
