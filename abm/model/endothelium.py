"""Endothelial cells at vessel sites: activation, ANG-2 / VWF release, permeability.

Equations in :mod:`abm.kernels.cells_endothelial`. Activation rises with
IL-6 signalling (IL-6 times ``1 - state.scalars["il6r_occupancy"]``, the
tocilizumab receptor occupancy), IL-1 and IFN-gamma (probabilistic OR of Hill
terms) above a patient baseline (``patient.baseline_endothelial_activation``)
and is suppressed by steroids. Activated cells release ANG-2 and VWF from a
finite Weibel-Palade store in stochastic exocytosis events (fraction
``release_fraction`` of the store per event); the store refills with
half-life ``store_refill_half_life_h`` (stored ANG-2 t1/2 > 18 h, Fiedler
2004). Permeability ``1 + g_e e + g_a H(ANG-2)`` scales plasma exchange and
the entry of blood cells at that site. ``enabled = false`` switches the
response off (activation 0, no release, permeability 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from abm.schema import Section, param
from abm.kernels import cells_endothelial as K


@dataclass(frozen=True)
class EndothelialParams(Section):
    """Endothelium lining the vessel sites."""

    enabled: bool = param(True, unit="-", doc="endothelial response on (false: activation 0, perm 1)")
    il6_ec50_pg_ml: float = param(500.0, unit="pg/mL", gt=0,
                                  doc="IL-6 signal (IL-6 x free IL-6R) of half activation")
    il1_ec50_pg_ml: float = param(500.0, unit="pg/mL", gt=0, doc="IL-1 of half activation")
    ifng_ec50_pg_ml: float = param(2000.0, unit="pg/mL", gt=0, doc="IFN-gamma of half activation")
    activation_hill: float = param(1.0, unit="1", gt=0, le=10, doc="Hill coefficient of each term")
    activation_rate_per_h: float = param(1.0, unit="1/h", gt=0, doc="rate of rising activation")
    deactivation_rate_per_h: float = param(0.1, unit="1/h", gt=0, doc="rate of falling activation")
    release_rate_per_h: float = param(2.0, unit="1/h", ge=0,
                                      doc="Weibel-Palade exocytosis event rate at full activation")
    release_fraction: float = param(0.3, unit="1", ge=0, le=1,
                                    doc="fraction of the store released per exocytosis event")
    store_refill_half_life_h: float = param(24.0, unit="h", gt=0, doc="refill half-life of the store")
    ang2_store_fg: float = param(5.0, unit="fg/cell", ge=0, doc="ANG-2 in a full store")
    vwf_store_fg: float = param(50.0, unit="fg/cell", ge=0, doc="VWF in a full store")
    ang2_secretion_fg_per_h: float = param(0.2, unit="fg/cell/h", ge=0,
                                           doc="continuous (transcriptional) ANG-2 secretion at full "
                                               "activation")
    il6_uptake_per_s: float = param(0.0, unit="1/s", ge=0, doc="first-order IL-6 uptake per vessel site")
    perm_activation_gain: float = param(3.0, unit="1", ge=0, le=100,
                                        doc="permeability added at full activation")
    perm_ang2_gain: float = param(3.0, unit="1", ge=0, le=100,
                                  doc="permeability added at saturating local ANG-2")
    perm_ang2_ec50_pg_ml: float = param(5000.0, unit="pg/mL", gt=0,
                                        doc="local ANG-2 of half the ANG-2 permeability effect")
    steroid_max_suppression: float = param(0.8, unit="1", ge=0, le=1,
                                           doc="maximal steroid suppression of activation")


def resting_state(en: EndothelialParams, baseline: float, dt_s: float) -> tuple[float, float]:
    """``(activation, store)`` of an endothelial cell at the patient's resting state.

    Without cytokines the activation target is the baseline ``e_0``, and the
    store's expected value is the fixed point of one step of the rule (release
    of the fraction ``phi`` with probability ``p = 1 - exp(-k_rel e_0 dt)``,
    then refill ``w' = 1 - (1 - w) f``)::

        w_ss = (1 - f) / (1 - f + f p phi)

    (1 at ``e_0 = 0``). Cells start there, so a patient with chronically
    activated endothelium does not empty full stores into plasma in the first
    hours of the run, a transient of the start, not of the disease.
    """
    if not en.enabled or baseline <= 0.0:
        return 0.0, 1.0
    f = refill_factor(en, dt_s)
    p = -math.expm1(-en.release_rate_per_h / 3600.0 * baseline * dt_s)
    return float(baseline), (1.0 - f) / (1.0 - f + f * p * en.release_fraction)


def refill_factor(en: EndothelialParams, dt_s: float) -> float:
    """``f = exp(-k_refill dt)``: the unrefilled share of a store's deficit after one step."""
    return math.exp(-math.log(2.0) / (en.store_refill_half_life_h * 3600.0) * dt_s)


def kernel_params(en: EndothelialParams, baseline: float, dt_s: float,
                  voxel_ml: float) -> np.ndarray:
    """Parameter vector of :func:`abm.kernels.cells_endothelial.endothelial_step`."""
    hour = 3600.0
    v = np.zeros(K.EN_N, dtype=np.float64)
    v[K.EN_DT] = dt_s
    v[K.EN_EC50_IL6] = en.il6_ec50_pg_ml
    v[K.EN_EC50_IL1] = en.il1_ec50_pg_ml
    v[K.EN_EC50_IFNG] = en.ifng_ec50_pg_ml
    v[K.EN_HILL] = en.activation_hill
    v[K.EN_BASE] = baseline
    v[K.EN_F_ON] = math.exp(-en.activation_rate_per_h / hour * dt_s)
    v[K.EN_F_OFF] = math.exp(-en.deactivation_rate_per_h / hour * dt_s)
    v[K.EN_RELEASE] = en.release_rate_per_h / hour
    v[K.EN_RELEASE_FRAC] = en.release_fraction
    v[K.EN_F_REFILL] = refill_factor(en, dt_s)
    v[K.EN_ANG2_STORE_SRC] = en.ang2_store_fg * 1e-3 / voxel_ml / dt_s
    v[K.EN_ANG2_STORE_PG] = en.ang2_store_fg * 1e-3
    v[K.EN_VWF_STORE_PG] = en.vwf_store_fg * 1e-3
    v[K.EN_ANG2_SECR_SRC] = en.ang2_secretion_fg_per_h * 1e-3 / hour / voxel_ml
    v[K.EN_ANG2_SECR_PG] = en.ang2_secretion_fg_per_h * 1e-3 * dt_s / hour
    v[K.EN_PERM_GAIN_ACT] = en.perm_activation_gain
    v[K.EN_PERM_GAIN_ANG2] = en.perm_ang2_gain
    v[K.EN_PERM_EC50_ANG2] = en.perm_ang2_ec50_pg_ml
    v[K.EN_STEROID_MAX] = en.steroid_max_suppression
    v[K.EN_ENABLED] = 1.0 if en.enabled else 0.0
    v[K.EN_UPT_IL6] = en.il6_uptake_per_s
    return v
