"""Analysis layer: opens run files as xarray objects (depends on the file schema only).

>>> from analysis import open_run
>>> ds = open_run("runs/default/default_seed20261121.h5")   # doctest: +SKIP
"""

from analysis.io import (SUPPORTED_SCHEMA_VERSIONS, cell_snapshot, check_file, describe_file,
                         open_group, open_run, read_provenance)

__all__ = ["open_run", "open_group", "read_provenance", "check_file", "describe_file",
           "cell_snapshot", "SUPPORTED_SCHEMA_VERSIONS"]
