"""The stream registry: one integer id per random rule.

Every call into :mod:`abm.kernels.rng` names the rule it serves with one of
these ids, so two rules never read the same random numbers. The ids are
module-level ``int`` constants (Numba freezes them as compile-time globals)
and are also listed by name in :data:`STREAMS`.

Rules for editing: ids are stable -- never renumber or reuse one, since that
would change every stored run; add a new rule by appending a new constant
with the next free id and listing it in :data:`STREAMS`.
"""

from __future__ import annotations

VESSEL_LAYOUT = 0       # placement of vessels on the lattice at set-up
TUMOUR_INIT = 1         # initial tumour cell positions and states
TUMOUR_ANTIGEN = 2      # per-cell antigen density (initial and on division)
TUMOUR_DIVIDE = 3       # tumour daughter placement (the division event is drawn in TUMOUR_DEATH)
TUMOUR_DEATH = 4        # tumour cell fate each step: natural death or division
TUMOUR_LYSIS = 5        # lysis of killed tumour cells (debris, DAMP release)
CART_ENTRY = 6          # CAR-T extravasation from vessels into tissue
CART_ENGAGE = 7         # CAR-T engagement of an antigen-positive target
CART_KILL = 8           # kill outcome of an engaged CAR-T / target pair
CART_DIVIDE = 9         # CAR-T proliferation events
CART_DEATH = 10         # CAR-T death (activation-induced, exhaustion, age)
CART_MOVE = 11          # CAR-T migration (random walk / chemotaxis choice)
CART_PHENOTYPE = 12     # CAR-T phenotype transitions (memory, effector, exhausted)
CART_EGRESS = 13        # CAR-T leaving the tissue into the circulation
MYELOID_INIT = 14       # initial myeloid cell positions and states
MYELOID_RECRUIT = 15    # recruitment of monocytes / macrophages from vessels
MYELOID_DEATH = 16      # myeloid cell death
MYELOID_MOVE = 17       # myeloid cell migration
ENDOTHELIAL = 18        # endothelial activation / leak events
COLOUR_ORDER = 19       # order of sublattice colour classes within a step
MOVE_PRIORITY = 20      # hash priorities resolving conflicting moves
PATIENT_EFFECTS = 21    # per-patient random effects (systemic compartment)
CLINICIAN = 22          # clinician policy decisions (tocilizumab, steroids, ...)
ICE_SCORE = 23          # noise in ICE neurological score assessment
SEIZURE = 24            # seizure events under ICANS
INFUSION_REACTION = 25  # acute infusion reactions at dosing
BATCH_COVARIATES = 26   # sampling of virtual-patient covariates in batches

STREAMS: dict[str, int] = {
    "VESSEL_LAYOUT": VESSEL_LAYOUT,
    "TUMOUR_INIT": TUMOUR_INIT,
    "TUMOUR_ANTIGEN": TUMOUR_ANTIGEN,
    "TUMOUR_DIVIDE": TUMOUR_DIVIDE,
    "TUMOUR_DEATH": TUMOUR_DEATH,
    "TUMOUR_LYSIS": TUMOUR_LYSIS,
    "CART_ENTRY": CART_ENTRY,
    "CART_ENGAGE": CART_ENGAGE,
    "CART_KILL": CART_KILL,
    "CART_DIVIDE": CART_DIVIDE,
    "CART_DEATH": CART_DEATH,
    "CART_MOVE": CART_MOVE,
    "CART_PHENOTYPE": CART_PHENOTYPE,
    "CART_EGRESS": CART_EGRESS,
    "MYELOID_INIT": MYELOID_INIT,
    "MYELOID_RECRUIT": MYELOID_RECRUIT,
    "MYELOID_DEATH": MYELOID_DEATH,
    "MYELOID_MOVE": MYELOID_MOVE,
    "ENDOTHELIAL": ENDOTHELIAL,
    "COLOUR_ORDER": COLOUR_ORDER,
    "MOVE_PRIORITY": MOVE_PRIORITY,
    "PATIENT_EFFECTS": PATIENT_EFFECTS,
    "CLINICIAN": CLINICIAN,
    "ICE_SCORE": ICE_SCORE,
    "SEIZURE": SEIZURE,
    "INFUSION_REACTION": INFUSION_REACTION,
    "BATCH_COVARIATES": BATCH_COVARIATES,
}


def stream_id(name: str) -> int:
    """The id of the rule called ``name``.

    Raises:
        KeyError: ``name`` is not registered; the message lists known names.
    """
    try:
        return STREAMS[name]
    except KeyError:
        known = ", ".join(sorted(STREAMS))
        raise KeyError(f"unknown random stream {name!r}; known streams: {known}") from None


__all__ = ["STREAMS", "stream_id", *STREAMS]
