"""Cytokine field parameters: one section per species, concentrations in pg/mL.

Tissue loss is first-order with rate ``ln 2 / tissue_half_life``; exchange with
plasma happens only at vessel sites, at rate ``exchange_per_s * permeability``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abm.schema import Section, param, section

#: Field species in storage order (index into the species axis of the field array).
SPECIES = ("ifng", "gmcsf", "il6", "il1", "il7_15", "ang2", "damage")
LONG_NAMES = {
    "ifng": "interferon gamma", "gmcsf": "GM-CSF", "il6": "interleukin 6",
    "il1": "interleukin 1", "il7_15": "IL-7/IL-15 (homeostatic)",
    "ang2": "angiopoietin 2", "damage": "lysis damage signal",
}


@dataclass(frozen=True)
class SpeciesParams(Section):
    """Transport of one diffusing species."""

    D_um2_s: float = param(20.0, unit="um^2/s", ge=0, le=1000, doc="diffusion coefficient in tissue")
    tissue_half_life_min: float = param(60.0, unit="min", gt=0, doc="half-life of first-order tissue loss")
    exchange_per_s: float = param(1e-3, unit="1/s", ge=0,
                                  doc="plasma exchange rate at a vessel site of permeability 1")

    @property
    def decay_per_s(self) -> float:
        return math.log(2.0) / (self.tissue_half_life_min * 60.0)


def _species(D, half_life, exchange=1e-3):
    return lambda: SpeciesParams(D_um2_s=D, tissue_half_life_min=half_life, exchange_per_s=exchange)


@dataclass(frozen=True)
class FieldParams(Section):
    """All diffusing species and the solver that steps them."""

    solver: str = param("implicit", unit="-", choices=("implicit", "explicit"),
                        doc="implicit LOD (fast, stable at dt) or explicit sub-stepping (accurate)")
    ifng: SpeciesParams = section(_species(20.0, 60.0), "IFN-gamma")
    gmcsf: SpeciesParams = section(_species(20.0, 60.0), "GM-CSF")
    il6: SpeciesParams = section(_species(20.0, 60.0), "IL-6")
    il1: SpeciesParams = section(_species(20.0, 30.0), "IL-1")
    il7_15: SpeciesParams = section(_species(20.0, 60.0), "IL-7/IL-15")
    ang2: SpeciesParams = section(_species(12.0, 120.0), "angiopoietin 2")
    damage: SpeciesParams = section(_species(30.0, 30.0, 0.0), "lysis damage signal")

    def species(self) -> list[SpeciesParams]:
        return [getattr(self, name) for name in SPECIES]

    def names(self) -> tuple[str, ...]:
        """Species names in storage order (the species axis of the field array)."""
        return SPECIES
