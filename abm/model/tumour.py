"""Tumour cell parameters (patch population, antigen, growth and lysis)."""

from __future__ import annotations

from dataclasses import dataclass

from abm.config.schema import Section, param


@dataclass(frozen=True)
class TumourParams(Section):
    """Tumour cells in the patch: ``n_T0`` cells at start, heterogeneous antigen."""

    initial_cells: int = param(8000, unit="cells", ge=1,
                               doc="tumour cells placed in the patch at start (n_T0)")
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
    dying_time_h: float = param(1.0, unit="h", gt=0, le=48,
                                doc="mean time from a lethal hit to lysis")
    damage_release_fg: float = param(5.0, unit="fg/cell", ge=0,
                                     doc="damage signal released into the voxel on lysis")

    def check(self, fail):
        if self.antigen_negative_fraction == 1.0:
            fail("antigen_negative_fraction", "is 1: no cell could ever be engaged; use < 1")
