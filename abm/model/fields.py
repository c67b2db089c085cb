"""Cytokine field parameters: one section per species, concentrations in pg/mL.

The species and their default transport are declared once, in
:mod:`abm.kernels.registry` (built-in rows in
:data:`abm.kernels.codes.BUILTIN_SPECIES`); :class:`FieldParams` gets one
``[fields.<name>]`` section per species from that list when this module is
imported (which fixes the list for the process).

Tissue loss is first-order with rate ``ln 2 / tissue_half_life``; exchange with
plasma happens only at vessel sites, at rate ``exchange_per_s * permeability``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from abm.kernels import registry
from abm.schema import Section, param, section

#: The species declarations, in storage order (fixed from here on).
SPECIES_DEFS = registry.species(freeze=True)
#: Field species in storage order (index into the species axis of the field array).
SPECIES = tuple(s.name for s in SPECIES_DEFS)
#: Species name -> long name (field snapshot variables).
LONG_NAMES = {s.name: s.long_name for s in SPECIES_DEFS}
#: Species with a plasma concentration in the blood model.
PLASMA_SPECIES = tuple(s.name for s in SPECIES_DEFS if s.plasma)


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


def _species(spec):
    return lambda: SpeciesParams(D_um2_s=spec.D_um2_s, tissue_half_life_min=spec.tissue_half_life_min,
                                 exchange_per_s=spec.exchange_per_s)


class _FieldParamsBase(Section):
    def species(self) -> list[SpeciesParams]:
        """The species sections in storage order."""
        return [getattr(self, name) for name in SPECIES]

    def names(self) -> tuple[str, ...]:
        """Species names in storage order (the species axis of the field array)."""
        return SPECIES


#: All diffusing species and the solver that steps them (one section per species).
FieldParams = dataclasses.make_dataclass(
    "FieldParams",
    [("solver", str, param("implicit", unit="-", choices=("implicit", "explicit"),
                           doc="implicit LOD (fast, stable at dt) or explicit sub-stepping (accurate)"))]
    + [(s.name, SpeciesParams, section(_species(s), s.label)) for s in SPECIES_DEFS],
    bases=(_FieldParamsBase,), frozen=True)
FieldParams.__module__ = __name__
FieldParams.__doc__ = "All diffusing species and the solver that steps them."
