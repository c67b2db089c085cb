"""Batches: parameter sweeps, replicates, virtual populations and posterior draws from one
TOML file.

>>> from abm.batch import load_batch, expand_batch, run_batch
>>> batch = load_batch("configs/batch_example.toml")          # doctest: +SKIP
>>> specs = expand_batch(batch)                               # one RunSpec per run
>>> result = run_batch(batch)                                 # doctest: +SKIP
>>> result.folder                                             # doctest: +SKIP
PosixPath('runs/example')

Any single run can be re-created alone and matches its batch twin bit for bit::

    from abm.io.run import run_to_file
    run_to_file(expand_batch(batch)[k].resolve(), path="alone.h5")

Modules: :mod:`~abm.batch.config` (the ``[batch]`` schema and loader),
:mod:`~abm.batch.sampling` (covariate draws and Latin hypercubes on the
counter-based RNG), :mod:`~abm.batch.posterior` (the posterior draws of a
calibration file), :mod:`~abm.batch.expand` (runs and seeds),
:mod:`~abm.batch.manifest`, :mod:`~abm.batch.worker` (what a worker runs),
:mod:`~abm.batch.executors` (local pool, Dask), :mod:`~abm.batch.runner`
(plan, execute, resume) and :mod:`~abm.batch.cli` (``abm batch``).
See ``docs/batch.md``.
"""

from __future__ import annotations

from abm.batch.config import (BatchConfig, batch_from_dict, is_batch_file, load_batch)
from abm.batch.expand import RunSpec, expand_batch, run_seed


def validate_batch(path) -> tuple[str, list[str]]:
    """Validate a batch file and every run config it expands to.

    Returns ``(summary, notes)``: a one-line summary and notes (covariates
    whose draws can fall out of range, runs whose config is invalid). Raises
    ConfigError for an invalid batch section or base config; runs with an
    invalid config (bad draws) are reported in the notes, not raised.
    """
    batch = load_batch(path)
    specs = expand_batch(batch)
    bad = [s for s in specs if s.error]
    text = batch.summary()
    if batch.base_file:
        text += f", base {batch.base_file}"
    if batch.root_seed_drawn:
        text += ", root seed drawn when the batch starts"
    notes = list(batch.warnings)
    if bad:
        notes.append(f"{len(bad)} of {len(specs)} runs have an invalid config and would fail, "
                     f"e.g. {bad[0].error}")
    return text, notes


def __getattr__(name):  # lazy: the runner pulls in executors, tqdm, h5py
    if name in ("run_batch", "BatchResult", "batch_folder"):
        from abm.batch import runner
        return getattr(runner, name)
    if name in ("LocalPool", "DaskExecutor", "make_executor"):
        from abm.batch import executors
        return getattr(executors, name)
    raise AttributeError(f"module 'abm.batch' has no attribute {name!r}")


__all__ = ["BatchConfig", "RunSpec", "load_batch", "batch_from_dict", "is_batch_file",
           "expand_batch", "run_seed", "validate_batch", "run_batch", "BatchResult",
           "batch_folder", "LocalPool", "DaskExecutor", "make_executor"]
