"""Stochastic agent-based model of CAR-T cell therapy, CRS and ICANS.

The public entry points are :func:`abm.config.load_config` (TOML -> frozen,
validated :class:`abm.config.Config`) and :class:`abm.simulation.Simulation`.
"""

__version__ = "0.1.0"
