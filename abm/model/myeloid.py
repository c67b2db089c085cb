"""Monocytes and macrophages: resident population, recruitment, activation, IL-6/IL-1.

Rules (equations in :mod:`abm.kernels.cells_myeloid` and, for recruitment,
:mod:`abm.kernels.cells_endothelial`):

* **Residents** are placed at set-up: ``n_M = f / (1 - f) n_T0`` cells
  (``f = resident_fraction`` of all tissue cells) on free non-vessel sites
  chosen uniformly by hash priority (stream ``MYELOID_INIT``).
* **Recruitment**: a free vessel site takes a monocyte from blood with rate
  ``k_r (M_blood / 400 per uL) (b + e_v)``, ``e_v`` the local endothelial
  activation and ``b`` the resting-vessel baseline; ``M_blood`` is
  ``state.scalars["blood_monocytes_per_ul"]`` when the blood model sets it,
  else ``blood_monocytes_per_ul``.
* **Activation** ``m`` relaxes toward ``(1 - sigma) S`` with ``S`` the
  probabilistic OR of Hill terms in IFN-gamma, GM-CSF, IL-1 and damage.
* **Secretion** of IL-6 and IL-1 proportional to ``m``; **uptake** of IFN-gamma
  and GM-CSF; **turnover** (death) with rate ``mu_0 + mu_act m``; random-walk
  movement at ``speed_um_per_min``.

Defaults: IL-6 0.5 fg/cell/h at full activation (nlisim macrophage IL-6
1.46e-2 amol/cell/h = 0.31 fg/cell/h, and ~10x the T-cell rate), mature IL-1
0.15 fg/cell/h (most IL-1beta stays cell-associated; serum IL-1 in CRS is
usually < 10-20 pg/mL), activated half-life ~1 day (nlisim), resident
turnover weeks, TAMs ~10-13 % of cells in DLBCL (CD68+ median 12.8 %).

Scale of tissue concentrations: one cell secreting 1 fg/h into an 8 pL voxel
is a source of 35 pg/mL/s. In the one-site-thick 2D patch the field of an
isolated secreting cell, 1-5 sites away, is ~6-18x what it would be in 3D
tissue (``scripts/calibrate_2d_factor.py``), so the EC50s are the literature
values (IFN-gamma 100-1000, GM-CSF 10-100 pg/mL) times ~10: IFN-gamma 4000,
GM-CSF 1000 pg/mL, Hill 2, so that macrophages respond to clusters of
activated CAR-T rather than to single cells (docs/calibration.md). The IL-1
EC50 sits far above the IL-1 that activated residents produce, so the
autocrine loop amplifies a little but does not lock on by itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from abm.schema import Section, param
from abm.kernels import cells_myeloid as K
from abm.kernels import rng, streams

#: Blood monocyte level the recruitment rate is quoted at (cells/uL).
REFERENCE_MONOCYTES_PER_UL = 400.0


@dataclass(frozen=True)
class MyeloidParams(Section):
    """Monocytes / macrophages in the patch."""

    resident_fraction: float = param(0.1, unit="1", ge=0, lt=0.9,
                                     doc="resident macrophages as a fraction of tissue cells at set-up")
    blood_monocytes_per_ul: float = param(400.0, unit="cells/uL", ge=0, le=1e5,
                                          doc="blood monocyte level used when the blood model sets none")
    recruit_per_vessel_per_day: float = param(1.0, unit="1/day", ge=0, le=1000,
                                              doc="monocyte entry rate of a free vessel site at full "
                                                  "endothelial activation and 400 monocytes/uL")
    recruit_basal_activation: float = param(0.05, unit="1", ge=0, le=1,
                                            doc="activation-equivalent recruitment of a resting vessel")
    ifng_ec50_pg_ml: float = param(4000.0, unit="pg/mL", gt=0,
                                   doc="IFN-gamma of half activation in the 2D patch (literature 100-1000 "
                                       "in 3D tissue x ~10 slab correction, docs/calibration.md)")
    gmcsf_ec50_pg_ml: float = param(1000.0, unit="pg/mL", gt=0,
                                    doc="GM-CSF of half activation in the 2D patch (literature 10-100 x ~10 "
                                        "slab correction, docs/calibration.md)")
    il1_ec50_pg_ml: float = param(10000.0, unit="pg/mL", gt=0,
                                 doc="IL-1 of half activation (autocrine loop; keep above the IL-1 "
                                     "that fully activated residents make, ~5000 pg/mL, or the loop "
                                     "locks on)")
    damage_ec50_pg_ml: float = param(5000.0, unit="pg/mL", gt=0,
                                     doc="lysis damage signal of half activation")
    activation_hill: float = param(2.0, unit="1", gt=0, le=10,
                                   doc="Hill coefficient of every activation term")
    activation_rate_per_h: float = param(1.0, unit="1/h", gt=0,
                                         doc="rate of rising toward the activation target")
    deactivation_rate_per_h: float = param(0.25, unit="1/h", gt=0,
                                           doc="rate of decay toward a lower target")
    il6_secretion_fg_per_h: float = param(0.5, unit="fg/cell/h", ge=0,
                                          doc="IL-6 secretion at full activation")
    il1_secretion_fg_per_h: float = param(0.15, unit="fg/cell/h", ge=0,
                                          doc="mature IL-1 released at full activation (most IL-1beta stays "
                                              "cell-associated; serum IL-1 in CRS < 10-20 pg/mL)")
    ifng_uptake_per_s: float = param(1e-4, unit="1/s", ge=0,
                                     doc="first-order IFN-gamma uptake per myeloid site")
    gmcsf_uptake_per_s: float = param(1e-4, unit="1/s", ge=0,
                                      doc="first-order GM-CSF uptake per myeloid site")
    death_per_day: float = param(0.03, unit="1/day", ge=0, doc="turnover of resting cells")
    activated_death_per_day: float = param(0.7, unit="1/day", ge=0,
                                           doc="extra death rate at full activation (t1/2 ~1 day)")
    speed_um_per_min: float = param(1.5, unit="um/min", ge=0, le=100,
                                    doc="random-walk speed")
    steroid_max_suppression: float = param(0.9, unit="1", ge=0, le=1,
                                           doc="maximal steroid suppression of activation")


def kernel_params(m: MyeloidParams, dt_s: float, voxel_ml: float) -> np.ndarray:
    """Parameter vector of :func:`abm.kernels.cells_myeloid.myeloid_update`."""
    day, hour = 86400.0, 3600.0
    src = 1e-3 / hour / voxel_ml
    v = np.zeros(K.M_N, dtype=np.float64)
    v[K.M_DT] = dt_s
    v[K.M_DT_H] = dt_s / hour
    v[K.M_EC50_IFNG] = m.ifng_ec50_pg_ml
    v[K.M_EC50_GMCSF] = m.gmcsf_ec50_pg_ml
    v[K.M_EC50_IL1] = m.il1_ec50_pg_ml
    v[K.M_EC50_DAMAGE] = m.damage_ec50_pg_ml
    v[K.M_HILL] = m.activation_hill
    v[K.M_F_ON] = math.exp(-m.activation_rate_per_h / hour * dt_s)
    v[K.M_F_OFF] = math.exp(-m.deactivation_rate_per_h / hour * dt_s)
    v[K.M_DEATH] = m.death_per_day / day
    v[K.M_DEATH_ACT] = m.activated_death_per_day / day
    v[K.M_IL6_SRC] = m.il6_secretion_fg_per_h * src
    v[K.M_IL1_SRC] = m.il1_secretion_fg_per_h * src
    v[K.M_IL6_PG_STEP] = m.il6_secretion_fg_per_h * 1e-3 * dt_s / hour
    v[K.M_UPT_IFNG] = m.ifng_uptake_per_s
    v[K.M_UPT_GMCSF] = m.gmcsf_uptake_per_s
    v[K.M_STEROID_MAX] = m.steroid_max_suppression
    return v


def n_residents(m: MyeloidParams, n_tumour: int) -> int:
    """Resident count ``round(f / (1 - f) n_T0)`` so that they are ``f`` of tissue cells."""
    f = m.resident_fraction
    return int(round(f / (1.0 - f) * n_tumour))


def place_residents(state, patch: int | None = None) -> np.ndarray:
    """Place resident macrophages on free non-vessel sites (set-up; returns their rows).

    Sites are the ``n`` free non-vessel sites with the smallest hash priority
    ``U(seed, MYELOID_INIT, 0, site, 0)``; ``n`` is clipped to the free sites.
    With ``patch``, only that patch of a layered lattice is filled.
    """
    from abm.cells import MYELOID, MYELOID_RESIDENT

    cells, lat = state.cells, state.lattice
    n = n_residents(state.config.myeloid, state.config.tumour.initial_cells)
    free = np.flatnonzero((cells.occ < 0) & ~lat.vessel).astype(np.int64)
    if patch is not None:
        free = free[lat.patch_of(free) == patch]
    n = min(n, len(free))
    if n == 0:
        return np.empty(0, dtype=np.int64)
    prio = rng.uniform_array(state.seed, streams.MYELOID_INIT, 0, free, 0)
    sites = np.sort(free[np.argsort(prio, kind="stable")[:n]])
    return cells.add(MYELOID, sites, phenotype=MYELOID_RESIDENT, activation=0.0)
