"""CAR-T product parameters (the infused product sets the cells' personality).

Presets ``cd28`` and ``4-1bb`` (``abm/presets/product.toml``) differ in
division time, antigen threshold, exhaustion limit, secretion, memory
conversion and activation-induced death, following MODEL.md section 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from abm.config.presets import load_presets
from abm.config.schema import Section, param

_PRESETS = load_presets("product")


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
    division_time_h: float = param(10.0, unit="h", gt=0, le=1000,
                                   doc="mean time to divide when fully activated")
    max_divisions: int = param(10, unit="-", ge=0, le=100,
                               doc="division potential of an infused cell")
    division_il7_15_ec50_pg_ml: float = param(20.0, unit="pg/mL", gt=0,
                                              doc="IL-7/IL-15 giving half the division boost")
    division_il7_15_boost: float = param(1.0, unit="1", ge=0, le=10,
                                         doc="extra division rate (fraction) at saturating IL-7/IL-15")
    engagement_rate_per_h: float = param(3.0, unit="1/h", ge=0,
                                         doc="contact-to-engagement rate at saturating antigen")
    engagement_ec50_molecules: float = param(1500.0, unit="molecules/cell", gt=0,
                                             doc="antigen density of half-maximal engagement")
    engagement_hill: float = param(2.0, unit="1", gt=0, le=10,
                                   doc="Hill coefficient of engagement in antigen density")
    kill_rate_per_h: float = param(1.5, unit="1/h", ge=0,
                                   doc="kill rate of an engaged cell (engagement ~25-60 min)")
    exhaustion_engagements: int = param(10, unit="-", ge=1, le=1000,
                                        doc="engagements without rest before exhaustion")
    rest_recovery_per_day: float = param(1.0, unit="1/day", ge=0,
                                         doc="engagement count forgiven per day without contact")
    activation_half_life_h: float = param(8.0, unit="h", gt=0,
                                          doc="half-life of activation after disengagement")
    ifng_secretion_fg_per_h: float = param(2.0, unit="fg/cell/h", ge=0,
                                           doc="IFN-gamma secretion of a fully activated cell")
    gmcsf_secretion_fg_per_h: float = param(1.5, unit="fg/cell/h", ge=0,
                                            doc="GM-CSF secretion of a fully activated cell")
    il6_secretion_fg_per_h: float = param(0.03, unit="fg/cell/h", ge=0,
                                          doc="IL-6 secretion of a fully activated CAR-T (small)")
    il7_15_uptake_per_s: float = param(2e-4, unit="1/s", ge=0,
                                       doc="first-order IL-7/IL-15 consumption per CAR-T site")
    basal_death_per_day: float = param(0.02, unit="1/day", ge=0,
                                       doc="death rate of resting cells")
    activation_death_per_day: float = param(0.25, unit="1/day", ge=0,
                                            doc="extra death rate at full activation (AICD)")
    exhausted_death_per_day: float = param(0.3, unit="1/day", ge=0,
                                           doc="death rate of exhausted cells")
    exhausted_kill_factor: float = param(0.1, unit="1", ge=0, le=1,
                                         doc="kill and secretion of exhausted cells relative to effectors")
    memory_conversion_per_day: float = param(0.02, unit="1/day", ge=0,
                                             doc="effector-to-memory conversion rate when resting")
    speed_um_per_min: float = param(5.0, unit="um/min", ge=0, le=100,
                                    doc="random-walk speed of a free cell")
    egress_per_day: float = param(0.5, unit="1/day", ge=0,
                                  doc="rate at which a free cell on a vessel site returns to blood")
    steroid_max_suppression: float = param(0.8, unit="1", ge=0, le=1,
                                           doc="maximal steroid suppression of division, killing, secretion")

    def check(self, fail):
        expected = {"cd28": "CD28", "4-1bb": "4-1BB"}.get(self.preset)
        if expected and self.costimulation != expected:
            fail("costimulation", f"is {self.costimulation!r} but preset {self.preset!r} is a "
                                  f"{expected} product; drop the key or choose the matching preset")
