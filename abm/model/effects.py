"""Per-patient random effects: one standard normal draw per named effect.

Each virtual patient gets a fixed vector of random effects (sensitivities,
baselines, PK parameters), drawn from the counter-based generator with
stream ``PATIENT_EFFECTS``, step 0 and cell id = the effect's index in
:data:`EFFECTS`. They are pure functions of the run seed, so a resumed run
recomputes the same values. Each module scales the draw ``z`` by its own
standard deviation, e.g. a log-normal sensitivity ``exp(sd * z)`` or an
additive baseline ``mean + sd * z``. With ``patient.random_effects = false``
every draw is 0 (the typical patient).

Rules for editing: append new names at the end; never reorder (that would
change every stored patient).
"""

from __future__ import annotations

from abm.kernels import rng, streams

#: Effect names; the index is the cell id of the draw.
EFFECTS: tuple[str, ...] = (
    "temperature_baseline",     # 0  physiology: additive, deg C
    "fever_sensitivity",        # 1  physiology: log-normal on pyrogen potency
    "map_baseline",             # 2  physiology: additive, mmHg
    "leak_sensitivity",         # 3  physiology: log-normal on systemic leak
    "pulmonary_sensitivity",    # 4  physiology: log-normal on pulmonary leak
    "shunt_baseline",           # 5  physiology: log-normal on baseline shunt
    "il6_baseline",             # 6  blood: log-normal on baseline plasma IL-6
    "myeloid_pool_size",        # 7  blood: log-normal on systemic myeloid pool
    "myeloid_sensitivity",      # 8  blood: log-normal on pool activation potency
    "tcz_cl",                   # 9  drugs: tocilizumab CL (correlated, Frey 2010)
    "tcz_v1",                   # 10 drugs: tocilizumab V1
    "tcz_v2",                   # 11 drugs: tocilizumab V2
    "tcz_vmax",                 # 12 drugs: tocilizumab Vmax
    "dex_clearance",            # 13 drugs: log-normal on dexamethasone CL
    "lymphocyte_baseline",      # 14 blood: log-normal on host lymphocytes N0
    "il7_15_production",        # 15 blood: log-normal on IL-7/IL-15 production
    "ang1_baseline",            # 16 blood: log-normal on ANG-1
    "ang2_baseline",            # 17 blood: log-normal on ANG-2
    "endothelial_sensitivity",  # 18 physiology: log-normal on systemic endothelial potency
    "vwf_baseline",             # 19 blood: log-normal on VWF
    "brain_endothelial_sensitivity",  # 20 brain: log-normal on brain endothelial potency
    "neuro_sensitivity",        # 21 brain: log-normal on neuro-inflammation potency
    "product_fitness",          # 22 product: log-normal on the division potential
)
INDEX = {name: i for i, name in enumerate(EFFECTS)}


def patient_effects(seed: int, enabled: bool = True) -> dict[str, float]:
    """Standard normal draw ``z`` per effect name (all 0 when not ``enabled``)."""
    if not enabled:
        return {name: 0.0 for name in EFFECTS}
    return {name: float(rng.normal(seed, streams.PATIENT_EFFECTS, 0, i, 0))
            for i, name in enumerate(EFFECTS)}
