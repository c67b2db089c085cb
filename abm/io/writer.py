"""HDF5 output of one run (time series so far; grows with the schema).

Written incrementally: each record appends one row to resizable datasets in
``/timeseries`` and the file is flushed, so a killed run keeps what it had
recorded. The file is written under a temporary name and renamed on success.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from abm import __version__
from abm.config import to_json, to_toml

SCHEMA_VERSION = 1


class RunWriter:
    """Writes one run's HDF5 file; use as ``writer.open()``, ``record()``, ``close()``."""

    def __init__(self, path: Path, sim):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".part")
        self.sim = sim
        self.h5: h5py.File | None = None
        self.n = 0

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.h5 = h5py.File(self.tmp, "w")
        a = self.h5.attrs
        a["schema_version"] = SCHEMA_VERSION
        a["software_version"] = __version__
        a["seed"] = str(self.sim.seed)
        a["config_toml"] = to_toml(self.sim.config)
        a["config_json"] = to_json(self.sim.config)
        a["complete"] = False
        self.h5.create_group("timeseries")

    def record(self, sim) -> None:
        row = sim.record_row()
        g = self.h5["timeseries"]
        for key, value in row.items():
            if key not in g:
                dtype = np.int64 if isinstance(value, (int, np.integer)) else np.float64
                g.create_dataset(key, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(256,))
            ds = g[key]
            ds.resize((self.n + 1,))
            ds[self.n] = value
        self.n += 1
        self.h5.flush()

    def close(self, timings: dict) -> Path:
        for k, v in timings.items():
            self.h5.attrs[k] = v
        self.h5.attrs["complete"] = True
        self.h5.close()
        os.replace(self.tmp, self.path)
        return self.path
