"""Stochastic agent-based model of CAR-T cell therapy, CRS and ICANS.

From Python, :func:`abm.simulate` runs one patient and returns its run file
as an :class:`xarray.DataTree`; :func:`abm.run_batch` runs a batch and
returns it as one :class:`xarray.Dataset` (see ``docs/python.md``)::

    import abm
    tree = abm.simulate("configs/default.toml", seed=7, **{"product.preset": "4-1bb"})

Underneath: :func:`abm.config.load_config` (TOML -> frozen, validated
:class:`abm.config.Config`), :func:`abm.build.build_simulation` (a config ->
a :class:`abm.simulation.Simulation` of the full model) and
:func:`abm.io.run.run_to_file` (simulate one run into its HDF5 file).
"""

from abm.version import __version__

__all__ = ["__version__", "simulate", "run_batch"]


def __getattr__(name):
    # lazy: the API pulls in the simulator, xarray and the analysis package
    # (seconds), which `import abm` for a submodule or the version should not pay
    if name in ("simulate", "run_batch", "api"):
        import abm.api as api
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'abm' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), "simulate", "run_batch", "api"])
