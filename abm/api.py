"""The Python API: run one patient or a batch and get the results as xarray objects.

>>> import abm
>>> tree = abm.simulate("configs/default.toml", seed=7, days=7)     # doctest: +SKIP
>>> tree["timeseries"].blood_cart_per_ul.plot()                     # doctest: +SKIP
>>> tree["endpoints"].crs_max_grade.item()                          # doctest: +SKIP
>>> trial = abm.run_batch("configs/batch_example.toml", out="runs")  # doctest: +SKIP
>>> trial.abm.risk(by="product")                                    # doctest: +SKIP

Both take a config as a TOML path, a parsed dict or a config object, with
overrides given as dotted keys (``**{"product.preset": "4-1bb"}``) or nested
dicts (``product={"preset": "4-1bb"}``). They write the same HDF5 files as
``abm run`` and ``abm batch`` (simulation and file format are theirs) and
read them back through :mod:`analysis`. See ``docs/python.md``.
"""

from __future__ import annotations

import tempfile
import tomllib
import weakref
from pathlib import Path

import xarray as xr

from abm.batch.config import set_path
from abm.config import Config, apply_overrides, config_from_dict, load_config
from abm.errors import AbmError, ConfigError

#: Groups of a run file returned by :func:`simulate` (``/checkpoint``, the
#: restart state, is left out).
RESULT_GROUPS = ("timeseries", "endpoints", "events", "fields", "cells")


def nested_overrides(overrides: dict, days: float | None = None) -> dict:
    """Dotted keys (``"product.preset"``) and nested dicts as one nested dict.

    ``days`` sets ``run.end_day``. Later keys win; dicts merge key by key.
    """
    out: dict = {}
    for key, value in overrides.items():
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"override key {key!r} is not a dotted config path "
                              "(e.g. 'product.preset')")
        tree: dict = {}
        set_path(tree, key, value)
        out = apply_overrides(out, tree)
    if days is not None:
        out = apply_overrides(out, {"run": {"end_day": float(days)}})
    return out


def resolve_config(config_or_path, overrides: dict | None = None) -> Config:
    """A :class:`~abm.config.Config` from a TOML path, a dict or a Config, overrides on top."""
    overrides = overrides or {}
    if isinstance(config_or_path, Config):
        if not overrides:
            return config_or_path
        data = _unresolve_presets(config_or_path.to_dict(), overrides)
        return config_from_dict(apply_overrides(data, overrides))
    if isinstance(config_or_path, dict):
        return config_from_dict(apply_overrides(config_or_path, overrides))
    if isinstance(config_or_path, (str, Path)):
        return load_config(config_or_path, overrides)
    raise ConfigError(f"expected a config (TOML path, dict or abm.config.Config), "
                      f"got {type(config_or_path).__name__}")


def _unresolve_presets(data: dict, overrides: dict, path: tuple = ()) -> dict:
    """``data`` (a resolved config) less the values its old presets set, where
    ``overrides`` picks another preset: the new preset then fills them, and the
    values changed by hand are kept."""
    out = dict(data)
    for key, value in overrides.items():
        if not isinstance(value, dict) or not isinstance(out.get(key), dict):
            continue
        section = out[key]
        new, old = value.get("preset"), section.get("preset")
        if new is not None and old is not None and new != old:
            table: dict = {"preset": old}
            for part in reversed((*path, key)):
                table = {part: table}
            baseline = config_from_dict(table).to_dict()
            for part in (*path, key):
                baseline = baseline[part]
            section = {k: v for k, v in section.items() if k == "preset" or v != baseline.get(k)}
        out[key] = _unresolve_presets(section, value, (*path, key))
    return out


def read_run_tree(path, groups=RESULT_GROUPS, *, load: bool = True) -> xr.DataTree:
    """A run file as an :class:`xarray.DataTree`: one child per group present.

    The root holds the file's root attributes (provenance) and ``path``;
    each child is :func:`analysis.io.open_group` of that group. With
    ``load`` the data are read into memory and the file is closed.
    """
    from analysis.io import check_open, open_group

    attrs, present = check_open(path, lambda h5: [g for g in groups if g in h5])
    children = {g: xr.DataTree(open_group(path, g, load=load)) for g in present}
    root = xr.Dataset(attrs={**attrs, "path": str(path)})
    return xr.DataTree(root, children=children)


def simulate(config_or_path, seed: int | None = None, *, out=None, days: float | None = None,
             progress: bool = False, log=None, **overrides) -> xr.DataTree:
    """Simulate one patient and return the run as an :class:`xarray.DataTree`.

    Args:
        config_or_path: a TOML config file, a dict of its tables, or a
            :class:`~abm.config.Config`.
        seed: the run seed (default ``run.seed``; drawn and recorded when
            neither is set).
        out: where the HDF5 file goes: a path ending in ``.h5`` is the file
            itself; any other path is a folder, the file being
            ``<out>/<run.name>/<run.name>_seed<seed>.h5`` (as ``abm run --out``).
            Default: a temporary folder that lives as long as the returned
            tree (``tree.attrs["path"]`` stays readable until then).
        days: the last simulated day (``run.end_day``, days since infusion).
        progress: show a progress bar on stderr.
        log: callable for one-line messages (default: none).
        **overrides: config values on top of the file, as dotted keys
            (``**{"product.preset": "4-1bb"}``) or nested dicts
            (``product={"preset": "4-1bb"}``).

    Returns:
        A tree whose children are the file's groups ``timeseries`` (dim
        ``time``, days), ``endpoints`` (scalars), ``events`` (dim ``event``),
        ``fields`` (dims ``snapshot, y, x``; index ``snapshot_time``) and
        ``cells`` (ragged: dims ``obs`` and ``snapshot``), read into memory;
        the root's ``attrs`` hold the file's provenance and ``path``.

    Raises:
        ConfigError: an invalid config or override (one line, naming the key).
    """
    from abm.io.run import run_to_file

    config = resolve_config(config_or_path, nested_overrides(overrides, days))
    keep = None
    if out is None:
        keep = tempfile.TemporaryDirectory(prefix="abm-run-")
        result = run_to_file(config, out_dir=keep.name, seed=seed, progress=progress,
                             log=log or _silent)
    elif Path(out).suffix == ".h5":
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        result = run_to_file(config, path=out, seed=seed, progress=progress, log=log or _silent)
    else:
        result = run_to_file(config, out_dir=out, seed=seed, progress=progress,
                             log=log or _silent)
    tree = read_run_tree(result.path)
    if keep is not None:
        # the data are in memory; the file is kept for functions that take a path
        weakref.finalize(tree, keep.cleanup)
    return tree


def run_batch(config_or_path, *, out=None, workers: int | None = None, resume: bool = False,
              days: float | None = None, progress: bool = False, log=None,
              **overrides) -> xr.Dataset:
    """Run a batch (sweep, replicates or virtual population) and return it as one Dataset.

    Args:
        config_or_path: a batch TOML file (with a ``[batch]`` table), a dict of
            its tables, or a :class:`~abm.batch.BatchConfig`.
        out: parent of the batch folder ``<out>/<batch.name>/`` (default: the
            base config's ``output.dir``, as ``abm batch``). The folder must
            not hold a batch already unless ``resume``.
        workers: worker processes (default: one per core, at most one per
            run; ``0``: run in this process, one run after another).
        resume: continue the batch in the folder (skip done runs).
        days: the last simulated day of every run (``run.end_day``).
        progress: show a progress bar on stderr.
        log: callable for one-line messages (default: none).
        **overrides: values on top of the batch file's tables, as dotted
            keys or nested dicts: ``**{"batch.population.size": 8}``,
            ``lattice={"shape": [48, 48]}`` (run sections apply to every run).

    Returns:
        :func:`analysis.open_batch` of the folder: dims ``(run, time)``, time
        series lazy (dask), endpoints ``endpoint_<name>(run)``, covariates as
        coordinates, ``ds.abm`` for grades, onsets and risk tables. Failed runs
        are left out and listed in ``attrs["skipped"]``.

    Raises:
        ConfigError: an invalid batch file or override.
        AbmError: the folder already holds a batch (and not ``resume``).
    """
    from abm.batch.config import BatchConfig, batch_from_dict, load_batch
    from abm.batch.executors import make_executor
    from abm.batch.runner import run_batch as run_batch_folder
    from abm.batch.tomlio import batch_toml
    from analysis.batch import open_batch

    extra = nested_overrides(overrides, days)
    batch = config_or_path
    if isinstance(batch, BatchConfig):
        if extra:
            # the saved batch.toml round-trips; base and inline sections are resolved in it
            batch = batch_from_dict(apply_overrides(tomllib.loads(batch_toml(batch, "")), extra),
                                    file=batch.file)
    elif isinstance(batch, dict):
        batch = batch_from_dict(apply_overrides(batch, extra))
    elif isinstance(batch, (str, Path)):
        batch = load_batch(batch, extra)
    else:
        raise ConfigError(f"expected a batch config (TOML path, dict or abm.batch.BatchConfig), "
                          f"got {type(batch).__name__}")
    if workers is not None and workers < 0:
        raise AbmError(f"workers must be >= 0 (got {workers})")
    executor = make_executor(workers=workers) if workers is not None else None
    try:
        result = run_batch_folder(batch, out=out, executor=executor, resume=resume,
                                  progress=progress, log=log or _silent)
    finally:
        if executor is not None:
            executor.close()
    if result.interrupted:
        raise KeyboardInterrupt
    return open_batch(result.folder, progress=False)


def _silent(_msg: str) -> None:
    pass


__all__ = ["simulate", "run_batch", "read_run_tree", "resolve_config", "nested_overrides",
           "RESULT_GROUPS"]
