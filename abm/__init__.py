"""Stochastic agent-based model of CAR-T cell therapy, CRS and ICANS.

The public entry points are :func:`abm.config.load_config` (TOML -> frozen,
validated :class:`abm.config.Config`), :func:`abm.build.build_simulation`
(a config -> a :class:`abm.simulation.Simulation` of the full model) and
:func:`abm.io.run.run_to_file` (simulate one run into its HDF5 file).
"""

__version__ = "0.1.0"
