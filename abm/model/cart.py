"""CAR-T product parameters (the infused product sets the cells' personality).

Presets ``cd28`` and ``4-1bb`` (``abm/presets/product.toml``) differ in
division time, antigen threshold, exhaustion limit, secretion, memory
conversion and activation-induced death, following docs/model.md section 3:
CD28 is the "gas pedal" (fast division, low antigen threshold, early
exhaustion and activation-induced death, little memory), 4-1BB the
"endurance" product (slower division, higher threshold, twice the engagement
limit, more memory, lower secretion).

The per-cell rule itself is :mod:`abm.kernels.cells_cart`; its docstring has
the equations. :func:`kernel_params` converts this section into the kernel's
parameter vector (SI rates, per-step probabilities, pg/mL/s sources).
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

_PRESETS = load_presets("product")

#: fg/cell/h -> pg/s per cell
FG_PER_H_TO_PG_PER_S = 1e-3 / 3600.0


@dataclass(frozen=True)
class ProductParams(Section):
    """The infused CAR-T product and the per-cell rules it implies."""

    PRESETS: ClassVar[dict] = _PRESETS

    preset: str = param("cd28", unit="-", choices=tuple(_PRESETS),
                        doc="named product preset applied before the keys below")
    costimulation: str = param("CD28", unit="-", choices=("CD28", "4-1BB"),
                               doc="costimulatory domain")
    dose_cells: float = param(1.4e8, unit="cells", gt=0, le=1e10,
                              doc="CAR-T cells infused on day 0")
    # -- homing and egress ---------------------------------------------------
    homing_per_day: float = param(0.3, unit="1/day", ge=0, le=100,
                                  doc="fraction of blood CAR-T entering the tumour per day through "
                                      "resting vessels (permeability 1) at the reference burden "
                                      "tumour.homing_reference_burden_cells (it rises with burden, "
                                      "abm.model.tumour.homing_rate_per_day); scaled by local permeability")
    egress_per_day: float = param(3.0, unit="1/day", ge=0, le=1000,
                                  doc="rate at which a free cell on a vessel site returns to blood")
    speed_um_per_min: float = param(5.0, unit="um/min", ge=0, le=100,
                                    doc="random-walk speed of a free cell")
    contact_arrest: bool = param(True, unit="-",
                                 doc="a free cell that scans a target stops moving for the step with "
                                     "probability H(antigen) (antigen stop signal)")
    # -- proliferation -------------------------------------------------------
    division_time_h: float = param(10.0, unit="h", gt=0, le=1000,
                                   doc="mean time to divide when fully activated")
    max_divisions: int = param(10, unit="-", ge=0, le=100,
                               doc="division potential of a cell entering from blood")
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
    exhaustion_engagements: int = param(10, unit="-", ge=1, le=1000,
                                        doc="engagements without rest before exhaustion")
    rest_recovery_per_day: float = param(10.0, unit="1/day", ge=0,
                                         doc="engagement count forgiven per day without contact")
    activation_half_life_h: float = param(16.0, unit="h", gt=0,
                                          doc="half-life of activation after disengagement")
    memory_conversion_per_day: float = param(0.02, unit="1/day", ge=0,
                                             doc="effector-to-memory conversion rate of a resting cell "
                                                 "(times 1 - activation)")
    # -- secretion and uptake -------------------------------------------------
    ifng_secretion_fg_per_h: float = param(2.0, unit="fg/cell/h", ge=0,
                                           doc="IFN-gamma secretion of a fully activated cell")
    gmcsf_secretion_fg_per_h: float = param(1.5, unit="fg/cell/h", ge=0,
                                            doc="GM-CSF secretion of a fully activated cell")
    il6_secretion_fg_per_h: float = param(0.03, unit="fg/cell/h", ge=0,
                                          doc="IL-6 secretion of a fully activated CAR-T (small)")
    il7_15_uptake_per_s: float = param(2e-4, unit="1/s", ge=0,
                                       doc="first-order IL-7/IL-15 consumption per CAR-T site")
    # -- death -----------------------------------------------------------------
    basal_death_per_day: float = param(0.02, unit="1/day", ge=0,
                                       doc="death rate of resting naive-like and effector cells")
    activation_death_per_day: float = param(0.25, unit="1/day", ge=0,
                                            doc="extra death rate at full activation (AICD)")
    memory_death_per_day: float = param(0.005, unit="1/day", ge=0,
                                        doc="death rate of memory cells")
    exhausted_death_per_day: float = param(0.3, unit="1/day", ge=0,
                                           doc="death rate of exhausted cells")
    exhausted_kill_factor: float = param(0.1, unit="1", ge=0, le=1,
                                         doc="kill and secretion of exhausted cells relative to effectors")
    # -- drugs -------------------------------------------------------------------
    steroid_max_suppression: float = param(0.3, unit="1", ge=0, le=1,
                                           doc="maximal steroid suppression of division, killing, secretion")

    def check(self, fail):
        expected = {"cd28": "CD28", "4-1bb": "4-1BB"}.get(self.preset)
        if expected and self.costimulation != expected:
            fail("costimulation", f"is {self.costimulation!r} but preset {self.preset!r} is a "
                                  f"{expected} product; drop the key or choose the matching preset")


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
    v[K.C_P_DEATH_EXH] = event_prob(p.exhausted_death_per_day / day, dt_s)
    v[K.C_P_DEATH_MEM] = event_prob(p.memory_death_per_day / day, dt_s)
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
