"""Every integer code of the model, each defined once.

Cell kinds, phenotypes, field species, occupancy markers, agent-pass event
flags and random-stream ids are declared here as :class:`enum.IntEnum` tables
(species as one table of :class:`SpeciesDef`). From each table this module
derives plain ``int`` module constants -- ``TUMOUR``, ``CART_EXHAUSTED``,
``F_IL6``, ``FREE``, ``EV_KILL``, ... -- which the kernels import: Numba
freezes a module-level ``int`` as a compile-time constant, so the compiled
code (and its disk cache) is the same as with literal numbers.

Stream constants are not exported here (the stream ``ENDOTHELIAL`` and the
kind ``ENDOTHELIAL`` would collide); :mod:`abm.kernels.streams` exports them.

This module is in the lowest layer: it imports only the standard library, so
the kernels, the model, the config and the I/O layers can all import it.
Numeric values are part of the stored data (cell columns, stream keys, field
axes): never renumber a code; append new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Kind(IntEnum):
    """Cell kinds (the ``kind`` column)."""

    DEAD = -1
    TUMOUR = 0
    CART = 1
    MYELOID = 2
    ENDOTHELIAL = 3


class TumourPhenotype(IntEnum):
    """Tumour phenotypes (the ``phenotype`` column of tumour rows)."""

    ALIVE = 0
    DYING = 1


class CartPhenotype(IntEnum):
    """CAR-T phenotypes."""

    NAIVE = 0
    EFFECTOR = 1
    MEMORY = 2
    EXHAUSTED = 3


class MyeloidPhenotype(IntEnum):
    """Myeloid phenotypes."""

    RESIDENT = 0
    RECRUITED = 1


class Occupancy(IntEnum):
    """Markers in the occupancy map (a value >= 0 is the row of the cell at the site)."""

    FREE = -1       # an empty site
    RESERVED = -2   # a site claimed by a daughter born this step


class Event(IntEnum):
    """Per-row event flags written by the agent pass (bits of the events scratch column)."""

    KILL = 1            # this CAR-T killed its target this step
    CART_DIED = 2       # this CAR-T died
    EGRESS = 4          # this CAR-T left the patch through a vessel site
    LYSED = 8           # this (killed) tumour cell lysed and was removed
    TUMOUR_DIED = 16    # this tumour cell died naturally
    MYELOID_DIED = 32   # this myeloid cell died
    ENGAGED = 64        # this CAR-T formed a new engagement this step
    EXHAUSTED = 128     # this CAR-T became exhausted this step
    ARRESTED = 256      # this free CAR-T stopped on antigen contact (no movement this step)


class Stream(IntEnum):
    """Random-stream ids of the built-in rules (keys of :mod:`abm.kernels.rng`).

    Stable forever: an id is part of the key of every random number its rule
    draws, so renumbering or reusing one changes every stored run. Registered
    CAR-T rules get ids after the last member (:mod:`abm.kernels.registry`).
    """

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
    TUMOUR_BYSTANDER = 27   # antigen-independent (bystander) killing of tumour cells near activated CAR-T
    TUMOUR_RELIFT = 28      # re-lifting the patches' tumour to the whole tumour's density


@dataclass(frozen=True)
class SpeciesDef:
    """One diffusing field species and its default transport.

    Attributes:
        name: key of the species (config section ``[fields.<name>]``, recorded
            ``tissue_<name>`` and, with ``plasma``, ``plasma_<name>``).
        long_name: long name of the field snapshot variable.
        label: one-line title of the config section.
        D_um2_s: default diffusion coefficient in tissue (um^2/s).
        tissue_half_life_min: default half-life of first-order tissue loss (min).
        exchange_per_s: default plasma exchange rate at a vessel site of
            permeability 1 (1/s).
        plasma: whether the species has a plasma concentration in the blood model.
        plasma_half_life_min: plasma clearance half-life (min) of a species
            the blood model has no dedicated rule for (registered species);
            the built-in species take theirs from ``[blood]``.
    """

    name: str
    long_name: str
    label: str
    D_um2_s: float = 20.0
    tissue_half_life_min: float = 60.0
    exchange_per_s: float = 1e-3
    plasma: bool = True
    plasma_half_life_min: float = 60.0


#: The built-in field species, in storage order (index into the species axis).
BUILTIN_SPECIES: tuple[SpeciesDef, ...] = (
    SpeciesDef("ifng", "interferon gamma", "IFN-gamma", 20.0, 60.0),
    SpeciesDef("gmcsf", "GM-CSF", "GM-CSF", 20.0, 60.0),
    SpeciesDef("il6", "interleukin 6", "IL-6", 20.0, 60.0),
    SpeciesDef("il1", "interleukin 1", "IL-1", 20.0, 30.0),
    SpeciesDef("il7_15", "IL-7/IL-15 (homeostatic)", "IL-7/IL-15", 20.0, 60.0),
    SpeciesDef("ang2", "angiopoietin 2", "angiopoietin 2", 12.0, 120.0),
    SpeciesDef("damage", "lysis damage signal", "lysis damage signal", 30.0, 30.0, 0.0, plasma=False),
)

#: Number of built-in species (registered species follow them on the species axis).
N_FIELDS = len(BUILTIN_SPECIES)

#: Kind code -> name (live kinds only).
KIND_NAMES: dict[int, str] = {int(k): k.name.lower() for k in Kind if k is not Kind.DEAD}


def _export(table, prefix: str = "") -> None:
    """Module constants ``<prefix><member name> = int(value)`` for every member of ``table``."""
    for member in table:
        globals()[prefix + member.name] = int(member)


_export(Kind)                        # DEAD, TUMOUR, CART, MYELOID, ENDOTHELIAL
_export(TumourPhenotype, "TUMOUR_")  # TUMOUR_ALIVE, TUMOUR_DYING
_export(CartPhenotype, "CART_")      # CART_NAIVE, CART_EFFECTOR, CART_MEMORY, CART_EXHAUSTED
_export(MyeloidPhenotype, "MYELOID_")  # MYELOID_RESIDENT, MYELOID_RECRUITED
_export(Occupancy)                   # FREE, RESERVED
_export(Event, "EV_")                # EV_KILL, EV_CART_DIED, ... EV_ARRESTED
for _i, _s in enumerate(BUILTIN_SPECIES):
    globals()["F_" + _s.name.upper()] = _i   # F_IFNG, F_GMCSF, ... F_DAMAGE
del _i, _s

__all__ = ["Kind", "TumourPhenotype", "CartPhenotype", "MyeloidPhenotype", "Occupancy", "Event",
           "Stream", "SpeciesDef", "BUILTIN_SPECIES", "N_FIELDS", "KIND_NAMES",
           *(k.name for k in Kind), *("TUMOUR_" + p.name for p in TumourPhenotype),
           *("CART_" + p.name for p in CartPhenotype),
           *("MYELOID_" + p.name for p in MyeloidPhenotype), *(o.name for o in Occupancy),
           *("EV_" + e.name for e in Event), *("F_" + s.name.upper() for s in BUILTIN_SPECIES)]
