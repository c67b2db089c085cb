"""CAR-T product parameters (the infused product sets the cells' personality).

Both products run the same per-cell rules. The costimulatory domain
(``costimulation``: CD28 or 4-1BB) sets the gains of each cell's signalling
state (glycolytic drive g, oxidative capacity o; gains in
``abm/presets/costimulation.toml``), and division, secretion,
activation-induced death, exhaustion, memory conversion and persistence
follow from that state, following docs/model.md section 3: CD28 is the "gas
pedal" (glycolytic: fast division, large cytokine burst, early exhaustion and
activation-induced death, little memory), 4-1BB the "endurance" product
(oxidative: slower division, twice the engagement limit, more memory, lower
secretion). Presets ``cd28`` and ``4-1bb`` (``abm/presets/product.toml``) set
the domain, dose and antigen threshold.

The per-cell rule itself is :mod:`abm.kernels.cells_cart`; its docstring has
the equations. :func:`kernel_params` converts this section into the kernel's
parameter vector (SI rates, per-step probabilities, pg/mL/s sources);
:func:`effective_rates` gives the per-product rates the rules imply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from abm.presets import load_presets
from abm.schema import Section, param
from abm.kernels import cells_cart as K
from abm.kernels.cells_common import event_prob
from abm.model.effects import patient_effects

_PRESETS = load_presets("product")
#: Costimulatory domain -> signalling gains (``glycolytic_gain``, ``oxidative_gain``).
DOMAINS = load_presets("costimulation")

#: fg/cell/h -> pg/s per cell
FG_PER_H_TO_PG_PER_S = 1e-3 / 3600.0


@dataclass(frozen=True)
class ProductParams(Section):
    """The infused CAR-T product and the per-cell rules it implies."""

    PRESETS: ClassVar[dict] = _PRESETS

    preset: str = param("cd28", unit="-", choices=tuple(_PRESETS),
                        doc="named product preset applied before the keys below")
    costimulation: str = param("CD28", unit="-", choices=tuple(DOMAINS),
                               doc="costimulatory domain: sets the gains of the per-cell signalling "
                                   "state (abm/presets/costimulation.toml)")
    dose_cells: float = param(1.4e8, unit="cells", gt=0, le=1e10,
                              doc="CAR-T cells infused on day 0")
    glycolytic_gain: float | None = param(None, unit="1", ge=0, le=10,
                                          doc="glycolytic gain G of the costimulatory domain (drive of "
                                              "division, IFN-gamma/GM-CSF secretion and AICD); unset: the "
                                              "domain's value (abm/presets/costimulation.toml)")
    oxidative_gain: float | None = param(None, unit="1", ge=0, le=10,
                                         doc="oxidative gain O of the costimulatory domain (memory "
                                             "conversion, resistance to exhaustion, persistence); unset: "
                                             "the domain's value (abm/presets/costimulation.toml)")
    # -- homing and egress ---------------------------------------------------
    homing_per_day: float = param(2.8, unit="1/day", ge=0, le=100,
                                  doc="fraction of blood CAR-T entering the tumour per day through "
                                      "resting vessels (permeability 1) at the reference burden "
                                      "tumour.homing_reference_burden_cells (it rises with burden, "
                                      "abm.model.tumour.homing_rate_per_day); scaled by local permeability. "
                                      "Blood holds ~2 % of the CAR-T outside the tumour and lymphoma sits "
                                      "mostly in lymph nodes; calibrated (docs/calibration.md 7.14)")
    egress_per_day: float = param(3.0, unit="1/day", ge=0, le=1000,
                                  doc="rate at which a free cell on a vessel site returns to blood")
    speed_um_per_min: float = param(5.0, unit="um/min", ge=0, le=100,
                                    doc="random-walk speed of a free cell")
    contact_arrest: bool = param(True, unit="-",
                                 doc="a free cell that scans a target stops moving for the step with "
                                     "probability H(antigen) (antigen stop signal)")
    # -- proliferation -------------------------------------------------------
    division_time_h: float = param(10.0, unit="h", gt=0, le=1000,
                                   doc="mean time to divide when fully activated with full glycolytic "
                                       "drive (g = 1)")
    division_basal_fraction: float = param(0.4, unit="1", ge=0, le=1,
                                           doc="share of the division rate reached without glycolytic "
                                               "drive (g = 0)")
    max_divisions: int = param(11, unit="-", ge=0, le=100,
                               doc="division potential of a product cell (a population expanding e-fold "
                                   "gains 2 generations on average, so the >= 2-log clinical expansion "
                                   "needs >= 9; calibrated, docs/calibration.md 7.14)")
    division_potential_sd: float = param(0.3, unit="1", ge=0, le=2,
                                         doc="log-scale SD across patients of the product's division "
                                             "potential (products differ in memory-like, less "
                                             "differentiated T cells: Fraietta 2018, Deng 2020); "
                                             "0: every product has max_divisions; 0.3 [A], docs/calibration.md 7.15)")
    division_il7_15_ec50_pg_ml: float = param(20.0, unit="pg/mL", gt=0,
                                              doc="IL-7/IL-15 giving half the division boost")
    division_il7_15_boost: float = param(1.0, unit="1", ge=0, le=10,
                                         doc="extra division rate (fraction) at saturating IL-7/IL-15")
    homeostatic_division_per_day: float = param(0.1, unit="1/day", ge=0, le=10,
                                                doc="antigen-independent division rate at saturating "
                                                    "IL-7/IL-15")
    # -- signal 1: engagement and killing ------------------------------------
    engagement_rate_per_h: float = param(1.0, unit="1/h", ge=0,
                                         doc="contact-to-engagement rate at saturating antigen")
    engagement_ec50_molecules: float = param(1500.0, unit="molecules/cell", gt=0,
                                             doc="antigen density of half-maximal engagement")
    engagement_hill: float = param(2.0, unit="1", gt=0, le=10,
                                   doc="Hill coefficient of engagement in antigen density")
    kill_rate_per_h: float = param(1.2, unit="1/h", ge=0,
                                   doc="kill rate of an engaged cell")
    detach_rate_per_h: float = param(0.2, unit="1/h", ge=0,
                                     doc="rate of detaching from a target without killing it")
    # -- exhaustion, activation, phenotypes ----------------------------------
    exhaustion_engagements: int = param(9, unit="-", ge=1, le=1000,
                                        doc="engagements without rest before exhaustion, without "
                                            "oxidative capacity (o = 0)")
    exhaustion_oxidative_gain: float = param(1.2, unit="1", ge=0, le=100,
                                             doc="exhaustion limit grows by this fraction per unit "
                                                 "oxidative capacity: E_max (1 + c o)")
    rest_recovery_per_day: float = param(10.0, unit="1/day", ge=0,
                                         doc="engagement count forgiven per day without contact")
    activation_half_life_h: float = param(16.0, unit="h", gt=0,
                                          doc="half-life of activation after disengagement")
    memory_conversion_per_day: float = param(0.667, unit="1/day", ge=0,
                                             doc="effector-to-memory conversion rate of a resting cell "
                                                 "with full oxidative capacity (times o (1 - activation))")
    # -- costimulation signalling state ---------------------------------------
    glycolytic_time_h: float = param(1.0, unit="h", gt=0, le=1000,
                                     doc="relaxation time of the glycolytic drive g toward "
                                         "G a (1 + K) / (a + K)")
    glycolytic_activation_k: float = param(0.1, unit="1", gt=0, le=1000,
                                           doc="saturation constant K of the glycolytic target in "
                                               "activation (smaller: full drive at lower activation)")
    oxidative_time_h: float = param(24.0, unit="h", gt=0, le=10000,
                                    doc="relaxation time of the oxidative capacity o toward "
                                        "O (r + (1 - r) a)")
    oxidative_tonic_fraction: float = param(0.75, unit="1", ge=0, le=1,
                                            doc="share r of the oxidative target held without "
                                                "activation (tonic signalling)")
    # -- secretion and uptake -------------------------------------------------
    ifng_secretion_fg_per_h: float = param(2.0, unit="fg/cell/h", ge=0,
                                           doc="IFN-gamma secretion of a fully activated cell (g = 1)")
    gmcsf_secretion_fg_per_h: float = param(1.5, unit="fg/cell/h", ge=0,
                                            doc="GM-CSF secretion of a fully activated cell (g = 1)")
    secretion_basal_fraction: float = param(0.05, unit="1", ge=0, le=1,
                                            doc="share of IFN-gamma and GM-CSF secretion reached without "
                                                "glycolytic drive (g = 0)")
    il6_secretion_fg_per_h: float = param(0.03, unit="fg/cell/h", ge=0,
                                          doc="IL-6 secretion of a fully activated CAR-T (small; g = 1)")
    il6_secretion_basal_fraction: float = param(0.6, unit="1", ge=0, le=1,
                                                doc="share of IL-6 secretion reached without glycolytic "
                                                    "drive (g = 0)")
    il7_15_uptake_per_s: float = param(2e-4, unit="1/s", ge=0,
                                       doc="first-order IL-7/IL-15 consumption per CAR-T site")
    # -- death -----------------------------------------------------------------
    basal_death_per_day: float = param(0.02, unit="1/day", ge=0,
                                       doc="death rate of resting naive-like and effector cells")
    activation_death_per_day: float = param(0.35, unit="1/day", ge=0,
                                            doc="extra death rate at full activation (AICD) with full "
                                                "glycolytic drive (g = 1)")
    activation_death_basal_fraction: float = param(0.64, unit="1", ge=0, le=1,
                                                   doc="share of AICD reached without glycolytic drive "
                                                       "(g = 0)")
    memory_death_per_day: float = param(0.0111, unit="1/day", ge=0,
                                        doc="death rate of memory cells without oxidative capacity "
                                            "(o = 0)")
    memory_oxidative_protection: float = param(3.6, unit="1", ge=0, le=1000,
                                               doc="memory death rate is divided by 1 + c o")
    exhausted_death_per_day: float = param(0.306, unit="1/day", ge=0,
                                           doc="death rate of exhausted cells without oxidative "
                                               "capacity (o = 0)")
    exhausted_oxidative_protection: float = param(0.7, unit="1", ge=0, le=1000,
                                                  doc="exhausted death rate is divided by 1 + c o")
    exhausted_kill_factor: float = param(0.1, unit="1", ge=0, le=1,
                                         doc="kill and secretion of exhausted cells relative to effectors")
    # -- drugs -------------------------------------------------------------------
    steroid_max_suppression: float = param(0.3, unit="1", ge=0, le=1,
                                           doc="maximal steroid suppression of division, killing, secretion")



def patient_division_potential(config, seed: int) -> int:
    """Division potential of this patient's product: ``round(max_divisions exp(sd z))``.

    ``z`` is the patient's ``product_fitness`` random effect, so the value is
    a pure function of the run seed; within ``[0, 100]``. With
    ``division_potential_sd = 0`` (or random effects off) it is ``max_divisions``.
    """
    p = config.product
    if p.division_potential_sd == 0.0:
        return p.max_divisions
    z = patient_effects(seed, config.patient.random_effects)["product_fitness"]
    return int(min(100, max(0, round(p.max_divisions * math.exp(p.division_potential_sd * z)))))


def domain_gains(costimulation: str) -> tuple[float, float]:
    """Signalling gains ``(G, O)`` of a costimulatory domain (glycolytic, oxidative; 1)."""
    d = DOMAINS[costimulation]
    return float(d["glycolytic_gain"]), float(d["oxidative_gain"])


def signalling_gains(p: ProductParams) -> tuple[float, float]:
    """The product's gains ``(G, O)``: its domain's, unless the config sets them."""
    G, O = domain_gains(p.costimulation)
    return (G if p.glycolytic_gain is None else float(p.glycolytic_gain),
            O if p.oxidative_gain is None else float(p.oxidative_gain))


def signalling_steady_state(p: ProductParams, activation: float) -> tuple[float, float]:
    """Steady ``(g, o)`` of a cell held at ``activation`` a.

    ``g = G a (1 + K) / (a + K)`` (saturating in a, G at a = 1) and
    ``o = O (r + (1 - r) a)``.
    """
    G, O = signalling_gains(p)
    r, k = p.oxidative_tonic_fraction, p.glycolytic_activation_k
    return G * activation * (1.0 + k) / (activation + k), O * (r + (1.0 - r) * activation)


def effective_rates(p: ProductParams) -> dict[str, float]:
    """The per-product rates the shared rules imply (units of the product keys).

    Rates that scale with activation (division time, secretion, AICD) and the
    exhaustion limit (reached while serially engaged) are taken at full
    activation, rates of resting cells (memory conversion per ``1 - a``,
    memory and exhausted death) at rest, each in the steady signalling state
    of that activation (:func:`signalling_steady_state`).
    """
    g1, o1 = signalling_steady_state(p, 1.0)
    _, o0 = signalling_steady_state(p, 0.0)

    def share(basal, g):
        return basal + (1.0 - basal) * g

    return {
        "division_time_h": p.division_time_h / share(p.division_basal_fraction, g1),
        "ifng_secretion_fg_per_h": p.ifng_secretion_fg_per_h * share(p.secretion_basal_fraction, g1),
        "gmcsf_secretion_fg_per_h": p.gmcsf_secretion_fg_per_h * share(p.secretion_basal_fraction, g1),
        "il6_secretion_fg_per_h": p.il6_secretion_fg_per_h * share(p.il6_secretion_basal_fraction, g1),
        "activation_death_per_day": p.activation_death_per_day * share(p.activation_death_basal_fraction,
                                                                       g1),
        "exhaustion_engagements": p.exhaustion_engagements * (1.0 + p.exhaustion_oxidative_gain * o1),
        "memory_conversion_per_day": p.memory_conversion_per_day * o0,
        "memory_death_per_day": p.memory_death_per_day / (1.0 + p.memory_oxidative_protection * o0),
        "exhausted_death_per_day": p.exhausted_death_per_day / (1.0 + p.exhausted_oxidative_protection
                                                                * o0),
    }


def mean_hop_um(offsets: np.ndarray, h_um: float) -> float:
    """Mean length of one lattice hop (um) over the neighbour offsets."""
    return float(np.mean(np.sqrt((np.asarray(offsets, dtype=np.float64) ** 2).sum(axis=1)))) * h_um


def hops_per_step(speed_um_per_min: float, dt_s: float, offsets, h_um: float) -> float:
    """Expected hops per step of a free cell moving at ``speed`` (``v dt / mean hop``)."""
    return speed_um_per_min * dt_s / 60.0 / mean_hop_um(offsets, h_um)


def kernel_params(p: ProductParams, dt_s: float, voxel_ml: float) -> np.ndarray:
    """Parameter vector of :func:`abm.kernels.cells_cart.cart_update`.

    Rates are converted to 1/s; constant rates to per-step probabilities
    ``1 - exp(-k dt)``; secretion in fg/cell/h to a source in pg/mL/s in one
    voxel of ``voxel_ml`` mL.
    """
    day, hour = 86400.0, 3600.0
    src = FG_PER_H_TO_PG_PER_S / voxel_ml
    v = np.zeros(K.C_N, dtype=np.float64)
    v[K.C_DT] = dt_s
    v[K.C_DT_H] = dt_s / hour
    v[K.C_DEATH_BASAL] = p.basal_death_per_day / day
    v[K.C_DEATH_AICD] = p.activation_death_per_day / day
    v[K.C_DEATH_EXH] = p.exhausted_death_per_day / day
    v[K.C_DEATH_MEM] = p.memory_death_per_day / day
    v[K.C_P_EGRESS] = event_prob(p.egress_per_day / day, dt_s)
    v[K.C_KILL] = p.kill_rate_per_h / hour
    v[K.C_DETACH] = p.detach_rate_per_h / hour
    v[K.C_ENGAGE] = p.engagement_rate_per_h / hour
    v[K.C_ENG_EC50] = p.engagement_ec50_molecules
    v[K.C_ENG_HILL] = p.engagement_hill
    v[K.C_EXH_LIMIT] = p.exhaustion_engagements
    v[K.C_EXH_FACTOR] = p.exhausted_kill_factor
    v[K.C_P_REST] = event_prob(p.rest_recovery_per_day / day, dt_s)
    v[K.C_ACT_DECAY] = math.exp(-math.log(2.0) / (p.activation_half_life_h * hour) * dt_s)
    v[K.C_MEM_CONV] = p.memory_conversion_per_day / day
    v[K.C_DIVIDE] = 1.0 / (p.division_time_h * hour)
    v[K.C_IL_EC50] = p.division_il7_15_ec50_pg_ml
    v[K.C_IL_BOOST] = p.division_il7_15_boost
    v[K.C_HOMEO_DIVIDE] = p.homeostatic_division_per_day / day
    v[K.C_IFNG_SRC] = p.ifng_secretion_fg_per_h * src
    v[K.C_GMCSF_SRC] = p.gmcsf_secretion_fg_per_h * src
    v[K.C_IL6_SRC] = p.il6_secretion_fg_per_h * src
    v[K.C_IL6_PG_STEP] = p.il6_secretion_fg_per_h * 1e-3 * dt_s / hour
    v[K.C_IL7_UPTAKE] = p.il7_15_uptake_per_s
    v[K.C_STEROID_MAX] = p.steroid_max_suppression
    v[K.C_ARREST] = 1.0 if p.contact_arrest else 0.0
    G, O = signalling_gains(p)
    v[K.C_GLYC_GAIN] = G
    v[K.C_OXID_GAIN] = O
    v[K.C_OXID_TONIC] = p.oxidative_tonic_fraction
    v[K.C_GLYC_RELAX] = math.exp(-dt_s / (p.glycolytic_time_h * hour))
    v[K.C_OXID_RELAX] = math.exp(-dt_s / (p.oxidative_time_h * hour))
    v[K.C_DIV_BASAL] = p.division_basal_fraction
    v[K.C_SECR_BASAL] = p.secretion_basal_fraction
    v[K.C_IL6_BASAL] = p.il6_secretion_basal_fraction
    v[K.C_AICD_BASAL] = p.activation_death_basal_fraction
    v[K.C_EXH_OXID] = p.exhaustion_oxidative_gain
    v[K.C_MEM_OXID] = p.memory_oxidative_protection
    v[K.C_EXHD_OXID] = p.exhausted_oxidative_protection
    v[K.C_GLYC_K] = p.glycolytic_activation_k
    return v


def implied_kills_per_day(p: ProductParams, dt_s: float, antigen: float) -> float:
    """Kills per CAR-T per day implied by the rule for a cell that always has a target.

    The discrete-time cycle is free -> engaged (probability ``p_e =
    p(k_engage H(A))`` per step) -> free (probability ``p_x = p(k_kill +
    k_detach)`` per step), ending in a kill with probability ``q = k_kill /
    (k_kill + k_detach)``. The mean cycle lasts ``1/p_e + 1/p_x`` steps, so
    kills per step are ``q / (1/p_e + 1/p_x)``.
    """
    h = antigen ** p.engagement_hill / (antigen ** p.engagement_hill
                                         + p.engagement_ec50_molecules ** p.engagement_hill)
    p_e = event_prob(p.engagement_rate_per_h / 3600.0 * h, dt_s)
    k_tot = (p.kill_rate_per_h + p.detach_rate_per_h) / 3600.0
    p_x = event_prob(k_tot, dt_s)
    q = p.kill_rate_per_h / (p.kill_rate_per_h + p.detach_rate_per_h)
    return q / (1.0 / p_e + 1.0 / p_x) * 86400.0 / dt_s
