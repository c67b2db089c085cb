"""Tumour cell parameters (patch population, antigen, growth and lysis).

The per-cell rule is :mod:`abm.kernels.cells_tumour` (equations in its
docstring): natural death (rate d), division into a free non-vessel neighbour
(rate b, daughter antigen ``A exp(sigma_i Z)``), and for cells killed by a
CAR-T a dying state left by lysis at rate ``1 / dying_time_h``, which removes
the cell, releases ``damage_release_fg`` into the damage field and is counted
for the blood model (tumour lysis metabolites).

Bystander killing: every alive tumour cell, antigen-positive or negative,
is killed (turns dying, lyses as above) with hazard
``k_by I^n / (I^n + EC50^n)`` of the IFN-gamma ``I`` at its site. Activated T
cells kill antigen-negative tumour cells near the fight: Fas/FasL (Upadhyay et
al. 2021, Cancer Discov 11:599) and IFN-gamma acting on the tumour and its
stroma (Textor et al. 2014, Cancer Res 74:6796; Alizadeh et al. 2021, Cancer
Discov 11:2248; Larson et al. 2022, Nature 604:563). IFN-gamma marks where
activated CAR-T cells are; the EC50 is a 3D tissue level of ~100-1000 pg/mL at
which IFN-gamma acts on tumour cells (MHC, Fas and ICAM-1 up-regulation) times
the ~10x field factor of the one-site-thick 2D patch (docs/calibration.md 2.1),
the same as the macrophages' IFN-gamma EC50 (:mod:`abm.model.myeloid`), with
the same Hill coefficient 2 [A]: the hazard is high in clusters of activated
CAR-T, low around single cells. The maximal hazard ``k_by`` is an assumption
[A] (a fraction per day; fitted by ``abm calibrate``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abm.schema import Section, param
from abm.kernels import cells_tumour as K
from abm.kernels.cells_common import event_prob


@dataclass(frozen=True)
class TumourParams(Section):
    """Tumour cells in the patch: ``n_T0`` cells at start, heterogeneous antigen."""

    initial_cells: int = param(8000, unit="cells", ge=1,
                               doc="tumour cells placed in each patch at start (n_T0, per patch)")
    growth_rate_per_day: float = param(0.1, unit="1/day", ge=0, le=5,
                                       doc="division rate when a free neighbour exists")
    death_rate_per_day: float = param(0.02, unit="1/day", ge=0, le=5,
                                      doc="natural death rate")
    antigen_median_molecules: float = param(10000.0, unit="molecules/cell", gt=0,
                                            doc="median antigen density of positive cells")
    antigen_log_sd: float = param(0.8, unit="1", ge=0, le=5,
                                  doc="standard deviation of ln(antigen density)")
    antigen_negative_fraction: float = param(0.02, unit="1", ge=0, le=1,
                                             doc="fraction of antigen-negative cells")
    antigen_inherit_log_sd: float = param(0.1, unit="1", ge=0, le=5,
                                          doc="sd of ln(daughter / mother antigen density)")
    dying_time_h: float = param(1.0, unit="h", gt=0, le=48,
                                doc="mean time from a lethal hit to lysis (exponential)")
    damage_release_fg: float = param(5.0, unit="fg/cell", ge=0,
                                     doc="damage signal released into the voxel on lysis")
    bystander_kill_per_day: float = param(
        2.1, unit="1/day", ge=0, le=100,
        doc="maximal antigen-independent (bystander) kill hazard of a tumour cell, antigen-positive "
            "or negative, at saturating IFN-gamma (Fas/FasL and IFN-gamma near activated CAR-T, "
            "Upadhyay 2021; 0 turns it off; calibrated, docs/calibration.md 7.14)")
    bystander_ifng_ec50_pg_ml: float = param(
        4000.0, unit="pg/mL", gt=0,
        doc="IFN-gamma of half-maximal bystander hazard in the 2D patch (100-1000 pg/mL acting on "
            "tumour cells in 3D tissue x ~10 slab correction, docs/calibration.md; as the "
            "macrophages' EC50) [A]")
    bystander_ifng_hill: float = param(2.0, unit="1", gt=0, le=10,
                                       doc="Hill coefficient of the bystander hazard in IFN-gamma [A]")
    homing_reference_burden_cells: float = param(
        9.5e10, unit="cells", gt=0,
        doc="burden B_ref at which blood CAR-T home to the tumour at product.homing_per_day")
    homing_saturation_burden_cells: float = param(
        1e12, unit="cells", gt=0,
        doc="burden K at which tumour homing is half its maximum (the tumour's share of the "
            "circulation saturates)")

    def check(self, fail):
        if self.antigen_negative_fraction == 1.0:
            fail("antigen_negative_fraction", "is 1: no cell could ever be engaged; use < 1")


def homing_rate_per_day(config, burden_cells: float | None = None) -> float:
    """Rate at which blood CAR-T home to the whole tumour (1/day), rising with burden.

    A bigger tumour has a bigger vascular bed and captures more of the
    circulating CAR-T, up to a saturation::

        h_T(B) = h (B / B_ref) (B_ref + K) / (B + K)

    with ``h = product.homing_per_day`` (the rate at the reference burden
    ``B_ref = tumour.homing_reference_burden_cells``, the median LBCL burden)
    and ``K = tumour.homing_saturation_burden_cells`` [A]; ``B`` is the current
    tumour (``burden_cells``; the initial burden when not given), so a shrinking
    tumour captures fewer cells. The patches, ``1 / S_v`` of the tumour bed,
    receive ``h_T N_blood / S_v`` cells per day: for ``B << K`` the same density
    whatever the burden, for ``B >> K`` less (the dose is spread over more tumour).
    """
    t = config.tumour
    b = config.patient.burden_cells if burden_cells is None else burden_cells
    k, ref = t.homing_saturation_burden_cells, t.homing_reference_burden_cells
    return config.product.homing_per_day * (b / ref) * (ref + k) / (b + k)


def kernel_params(t: TumourParams, dt_s: float, voxel_ml: float) -> np.ndarray:
    """Parameter vector of :func:`abm.kernels.cells_tumour.tumour_update`."""
    day = 86400.0
    v = np.zeros(K.T_N, dtype=np.float64)
    v[K.T_P_DEATH] = event_prob(t.death_rate_per_day / day, dt_s)
    v[K.T_P_DIVIDE] = event_prob(t.growth_rate_per_day / day, dt_s)
    v[K.T_P_LYSIS] = event_prob(1.0 / (t.dying_time_h * 3600.0), dt_s)
    v[K.T_ANTIGEN_SD] = t.antigen_inherit_log_sd
    # fg released at once -> a source over one step: pg / mL / s
    v[K.T_DAMAGE_SRC] = t.damage_release_fg * 1e-3 / voxel_ml / dt_s
    v[K.T_DT_H] = dt_s / 3600.0
    v[K.T_P_FATE] = v[K.T_P_DEATH] + (1.0 - v[K.T_P_DEATH]) * v[K.T_P_DIVIDE]
    v[K.T_BY_RATE] = t.bystander_kill_per_day / day
    v[K.T_BY_EC50] = t.bystander_ifng_ec50_pg_ml
    v[K.T_BY_HILL] = t.bystander_ifng_hill
    v[K.T_DT_S] = dt_s
    return v
