"""Analysis layer: run files as xarray objects, endpoints, population risk, figures.

It depends on the file schema only (never on simulator internals), so files
written by older versions stay readable.

>>> from analysis import open_run, open_batch
>>> ds = open_run("runs/default/default_seed20261121.h5")   # doctest: +SKIP
>>> ds.abm.endpoints()                                       # doctest: +SKIP
>>> b = open_batch("runs/example")                           # doctest: +SKIP
>>> b.abm.risk(by="product")                                 # doctest: +SKIP

Modules: :mod:`~analysis.io` (one file), :mod:`~analysis.batch` (a batch
folder, lazy), :mod:`~analysis.endpoints` and :mod:`~analysis.accessor`
(``ds.abm``), :mod:`~analysis.risk` (intervals, logistic curve, cumulative
incidence), :mod:`~analysis.uncertainty` (risk over posterior draws),
:mod:`~analysis.plots` (figures); for the reports
:mod:`~analysis.formatting`, :mod:`~analysis.notes`,
:mod:`~analysis.calibration`, :mod:`~analysis.tables`,
:mod:`~analysis.batch_info` and :mod:`~analysis.render` (templates in
``analysis/templates``), used by :mod:`~analysis.report` (a batch or a run)
and :mod:`~analysis.compare` (batches), both picked by
:mod:`~analysis.analyze` (``abm analyze``). Imports only go downward in this
list. See ``docs/analysis.md``.
"""

from analysis import accessor as _accessor  # noqa: F401  (registers ds.abm)
from analysis.batch import close_files, open_batch
from analysis.io import (SUPPORTED_SCHEMA_VERSIONS, cell_snapshot, check_file, describe_file,
                         open_group, open_run, read_provenance)
from analysis.risk import (binned_risk, cumulative_incidence, fit_logistic, risk_table,
                           wilson_interval)

__all__ = ["open_run", "open_batch", "open_group", "read_provenance", "check_file",
           "describe_file", "cell_snapshot", "close_files", "SUPPORTED_SCHEMA_VERSIONS",
           "wilson_interval", "risk_table", "binned_risk", "fit_logistic",
           "cumulative_incidence"]
