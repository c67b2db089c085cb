"""Open a batch folder (``runs/<batch>/``) as one lazy :class:`xarray.Dataset`.

>>> ds = open_batch("runs/example")                          # doctest: +SKIP
>>> ds                                                        # dims run, time
>>> ds.crs_grade                  # dask array (run, time): nothing read yet
>>> ds.burden_cells, ds.product   # covariates: coordinates along run
>>> ds.endpoint_crs_max_grade     # the simulator's own /endpoints, per run (in memory)
>>> ep = ds.abm.endpoints()       # endpoints computed from the time series

What is read when:

* at open, each file once (a progress bar when there are many): root
  attributes (provenance, covariates, config), the ``time`` coordinate, the
  names and units of the time-series variables and the small ``/endpoints``
  group. That is a few kB per run, so 1000 runs cost a few MB. Before that,
  every chunk of ``/timeseries`` and ``/endpoints`` is read once to check its
  checksum (``verify=False`` skips this), so a damaged file is skipped with
  its reason instead of failing a computation later.
* the time series stay on disk as dask arrays, chunked by ``chunk_runs`` runs
  along ``run``; a computation reads only the variables and runs it needs
  (open file handles are kept in a small cache, :func:`close_files`).

Runs: with a ``manifest.csv`` (written by ``abm batch``) every row is
accounted for: ``done`` runs with a complete file are loaded; failed, pending
or running runs, and files that are missing, incomplete (``complete`` = 0,
``.h5.part``) or unreadable are skipped and listed in ``ds.attrs["skipped"]``
(JSON) with the reason. Files present but not in the manifest are loaded too.
Without a manifest every ``*.h5`` file of the folder is a run. Covariates come
from each file's own provenance (``covariates`` root attribute), never from
the manifest alone.

Runs of different lengths (or record times) are aligned on the union of
their record times, padded with NaN (integer variables become float64 then);
a variable some runs lack (e.g. ``icans_grade`` in files written before the
ICANS model) is NaN for them.

Coordinates along ``run`` (the index holds run ids): ``path``, ``seed``,
``replicate``, ``start_day``, ``end_day``, ``software_version``, from the
manifest ``member``, ``sweep_point`` and (with posterior draws) ``draw``, and the
covariates and varied parameters under one name each, with the config key in
``attrs["config_key"]``: short names for those the reports use
(:data:`COVARIATE_NAMES`: ``burden_cells``, ``product``, ``policy``,
``dose_cells``, the patient fields), else the config path with dots as
underscores (``lymphodepletion_depth``); ``ds.abm.covariate(key)`` finds
one by either. ``attrs["varied_parameters"]`` lists the varied config keys.
"""

from __future__ import annotations

import csv
import json
import math
import threading
from collections import OrderedDict
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import xarray as xr

import analysis.accessor  # noqa: F401  (registers ds.abm, also without analysis/__init__)
from abm.errors import FileFormatError
from abm.io.h5repair import open_readonly
from analysis.io import (TIME_UNITS_PREFIX, VERIFIED, check_open, one_line_error,
                         plain_value)

MANIFEST = "manifest.csv"
#: Config keys that identify a run rather than vary as parameters.
_NOT_PARAMS = ("run.name", "run.seed", "run.replicate", "output.")
#: Default number of runs per dask chunk.
CHUNK_RUNS = 64


# -- open file cache ---------------------------------------------------------------

#: Open files kept by the lazy arrays. An open HDF5 file costs ~0.5 MB of
#: metadata cache, so keep few; ``endpoints()`` reads runs in blocks of this size
#: so each file is opened once per block, not once per variable.
FILE_CACHE = 32


class FileCache:
    """A small LRU of read-only h5py files shared by the dask getters (thread-safe)."""

    def __init__(self, size: int = FILE_CACHE):
        self.size = size
        self._files: OrderedDict[str, tuple] = OrderedDict()
        self._lock = threading.Lock()

    def read_timeseries(self, path: str, name: bytes) -> np.ndarray:
        """The whole ``/timeseries/<name>`` dataset of ``path``.

        Read while holding the cache's lock: another thread opening a file could
        otherwise evict and close this one between the look-up and the read
        (h5py serialises its calls anyway, so the lock costs no parallelism).
        """
        with self._lock:
            dsid = h5py.h5d.open(self._entry_locked(path)[1], name)
            values = np.empty(dsid.shape, dtype=dsid.dtype)
            if values.size:
                dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, values)
            return values

    def _entry_locked(self, path: str) -> tuple:
        e = self._files.get(path)
        if e is not None and e[0].id.valid:
            self._files.move_to_end(path)
            return e
        try:
            f = open_readonly(path)
            e = (f, f["timeseries"].id)
        except (OSError, ValueError, KeyError) as exc:
            raise FileFormatError(f"{path}: cannot be read ({one_line_error(exc)})") from None
        self._files[path] = e
        while len(self._files) > self.size:
            _, old = self._files.popitem(last=False)
            try:
                old[0].close()
            except Exception:  # pragma: no cover - closing a broken handle
                pass
        return e

    def clear(self) -> None:
        with self._lock:
            for e in self._files.values():
                try:
                    e[0].close()
                except Exception:  # pragma: no cover
                    pass
            self._files.clear()


_FILES = FileCache(FILE_CACHE)


def close_files() -> None:
    """Close the run files kept open by lazy batch arrays (they reopen when needed)."""
    _FILES.clear()


class _RunVariable:
    """One time-series variable of many runs as a lazily read ``(run, time)`` array.

    Each run's values are placed at its positions on the shared time axis
    (``index[i]``: None when the run has exactly the shared axis); the rest
    is NaN.
    """

    def __init__(self, paths, name, n_time, dtype, index, has, fill=None):
        self.paths = list(paths)
        self.name = name
        self._bname = name.encode()
        self.shape = (len(self.paths), int(n_time))
        self.dtype = np.dtype(dtype)
        self.ndim = 2
        self.index = index
        self.has = has
        self.fill = fill     # stored integer fill value, read as NaN

    def __dask_tokenize__(self):
        return ("abm-run-variable", self.name, tuple(self.paths), self.shape, str(self.dtype))

    def _read(self, i: int) -> np.ndarray:
        out = np.full(self.shape[1], np.nan if self.dtype.kind == "f" else 0, dtype=self.dtype)
        if not self.has[i]:
            return out
        path = self.paths[i]
        try:   # low-level read: a tenth of the overhead of group[name][...]
            values = _FILES.read_timeseries(path, self._bname)
        except FileFormatError:
            raise
        except Exception as exc:  # damaged chunk, file replaced since opening, ...
            raise FileFormatError(f"{path}: cannot read /timeseries/{self.name} "
                                  f"({one_line_error(exc)})") from None
        if self.fill is not None:
            values = np.where(values == self.fill, np.nan, values)
        idx = self.index[i]
        if idx is None:
            out[:] = values
        else:
            out[idx] = values[: len(idx)]
        return out

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            j = key.index(Ellipsis)
            key = key[:j] + (slice(None),) * (self.ndim - len(key) + 1) + key[j + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        k0, k1 = key
        rows = np.arange(self.shape[0])[k0]
        scalar = np.ndim(rows) == 0
        rows = np.atleast_1d(rows)
        block = np.empty((rows.size, self.shape[1]), dtype=self.dtype)
        for j, i in enumerate(rows):
            block[j] = self._read(int(i))
        block = block[:, k1]
        return block[0] if scalar else block


# -- manifest and scanning ---------------------------------------------------------

def read_manifest(folder) -> list[dict] | None:
    """Rows of ``folder/manifest.csv`` as dicts of text (None if there is none).

    Read defensively (only ``run_id``, ``status``, ``error`` and ``file`` are
    used, and each may be missing), so manifests of other versions load.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [dict(r) for r in csv.DictReader(fh)]
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{path}: unreadable manifest ({one_line_error(exc)})") from None


def manifest_params(rows) -> list[str]:
    """Varied parameter columns of a manifest (dotted config paths)."""
    if not rows:
        return []
    return [c for c in rows[0] if c and "." in c]


def find_runs(folder) -> tuple[list[dict], list[dict]]:
    """Runs of a batch folder: ``(candidates, skipped)``.

    Candidates are ``{"run_id", "path", "manifest"}`` for files to open;
    skipped entries are ``{"run_id", "status", "reason"}``. Files are not
    opened here (see :func:`open_batch`).
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileFormatError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise FileFormatError(f"{folder}: not a folder (for one run file use open_run)")
    rows = read_manifest(folder)
    cands: list[dict] = []
    skipped: list[dict] = []
    seen: set[str] = set()
    for row in rows or []:
        run_id = (row.get("run_id") or "").strip()
        fname = (row.get("file") or "").strip() or (f"{run_id}.h5" if run_id else "")
        if not fname:
            continue
        path = folder / fname
        seen.add(path.name)
        status = (row.get("status") or "").strip() or "unknown"
        error = (row.get("error") or "").strip()
        if path.name.endswith(".part"):   # never a finished run, whatever the row says
            skipped.append({"run_id": run_id or path.stem, "status": "incomplete",
                            "reason": f"{fname}: run in progress or interrupted"})
            continue
        if status == "done" or (status == "unknown" and path.is_file()):
            if path.is_file():
                cands.append({"run_id": run_id or path.stem, "path": path, "manifest": row})
            else:
                skipped.append({"run_id": run_id, "status": status,
                                "reason": f"file {fname} missing"})
            continue
        reason = error or {"failed": "failed", "pending": "not run yet",
                           "running": "still running or interrupted"}.get(status, status)
        if status in ("pending", "running") and (folder / (fname + ".part")).is_file():
            reason += f" (incomplete {fname}.part)"
        skipped.append({"run_id": run_id, "status": status, "reason": reason})
    for path in sorted(folder.glob("*.h5")):
        if path.name not in seen:
            cands.append({"run_id": path.stem, "path": path, "manifest": None})
    if rows is None:
        for path in sorted(folder.glob("*.h5.part")):
            skipped.append({"run_id": path.name[:-len(".h5.part")], "status": "incomplete",
                            "reason": f"{path.name}: run in progress or interrupted"})
    return cands, skipped


_MISSING = object()


class _FlatConfig:
    """A run's flattened config as the differences from a shared base (first run's)."""

    __slots__ = ("base", "diff")

    def __init__(self, base: dict, flat: dict | None = None):
        self.base = base
        if flat is None or flat is base:
            self.diff = {}
        else:
            self.diff = {k: v for k, v in flat.items() if k not in base or base[k] != v}
            self.diff.update({k: _MISSING for k in base if k not in flat})

    def get(self, key, default=None):
        v = self.diff.get(key, self.base.get(key, default))
        return default if v is _MISSING else v

    def __contains__(self, key) -> bool:
        return self.get(key, _MISSING) is not _MISSING


def _flatten(d, prefix="") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def scan_file(path, known: set | None = None, *, verify: bool = True) -> dict:
    """What :func:`open_batch` keeps of one run file (a few kB).

    Returns ``attrs`` (root attributes; ``config_toml``/``config_json`` left
    out), ``covariates`` and ``config`` (decoded JSON), ``time``, ``vars``
    ({name: (dtype, units, long_name)}; the metadata only for names not in
    ``known``, None for those: a variable keeps its dtype and units across
    the files of a batch) and ``endpoints`` ({name: float}). With ``verify``
    the checksums of ``/timeseries`` and ``/endpoints`` are checked first (every
    chunk read once), so a damaged file is refused here rather than midway
    through a computation.
    """
    def read(h5):
        out: dict = {}
        ts = h5["timeseries"]
        out["time"] = np.asarray(ts["time"][...], dtype=float)
        variables = {}
        for name in ts.keys():   # names only: opening each dataset costs ~0.1 ms
            if name == "time":
                continue
            if known is not None and name in known:
                variables[name] = None      # seen in an earlier file: same metadata
                continue
            obj = ts[name]
            if not isinstance(obj, h5py.Dataset) or obj.ndim != 1 \
                    or obj.shape[0] != out["time"].size:
                continue
            dtype = obj.dtype.str
            if obj.dtype.kind in "iu" and "_FillValue" in obj.attrs:
                # int with a fill (grades): float with NaN where not recorded, as xarray reads it
                dtype = f"float64:fill={int(obj.attrs['_FillValue'])}"
            units = plain_value(obj.attrs.get("units", ""))
            if isinstance(units, str) and units.startswith(TIME_UNITS_PREFIX):
                units = "day"
            variables[name] = (dtype, units, plain_value(obj.attrs.get("long_name", name)))
        out["vars"] = variables
        out["endpoints"] = _read_scalars(h5["endpoints"]) if "endpoints" in h5 else {}
        return out

    attrs, out = check_open(path, read, verify=VERIFIED if verify else ())
    out["attrs"] = {k: v for k, v in attrs.items() if k not in ("config_toml", "config_json")}
    for key, name in (("covariates", "covariates"), ("config_json", "config")):
        text = attrs.get(key)
        try:
            out[name] = json.loads(text) if isinstance(text, str) and text else {}
        except json.JSONDecodeError:
            raise FileFormatError(f"{path}: attribute {key} is not valid JSON") from None
    return out


def _read_scalars(group) -> dict[str, float]:
    """Numeric scalar datasets of a group, read with the low-level API (~10x faster)."""
    out = {}
    gid = group.id
    for name in group.keys():
        try:
            dsid = h5py.h5d.open(gid, name.encode())
        except (KeyError, ValueError, OSError):   # a subgroup or a link
            continue
        if dsid.shape != () or dsid.dtype.kind not in "fiub":
            continue
        arr = np.empty((), dtype=dsid.dtype)
        dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, arr)
        value = float(arr)
        if arr.dtype.kind in "iu" and h5py.h5a.exists(dsid, b"_FillValue"):
            fill = np.empty((), dtype=arr.dtype)   # a grade not recorded reads as NaN
            h5py.h5a.open(dsid, b"_FillValue").read(fill)
            value = math.nan if arr == fill else value
        out[name] = value
    return out


def _time_union(times: list[np.ndarray]) -> tuple[np.ndarray, list]:
    """Shared time axis and each run's positions on it (None: the run has the axis itself)."""
    first = times[0]
    if all(t is first or (t.shape == first.shape and np.array_equal(t, first)) for t in times):
        return first, [None] * len(times)
    rounded = [np.round(t, 9) for t in times]
    union = np.unique(np.concatenate(rounded))
    index = []
    for t, r in zip(times, rounded):
        idx = np.searchsorted(union, r)
        index.append(None if (idx.size == union.size) else idx)
    return union, index


def _coord_values(values: list):
    """An array for a coordinate: numbers as float/int, text as str, mixed as object."""
    if all(isinstance(v, bool) for v in values if v is not None):
        if any(v is None for v in values):
            return np.array([float(v) if v is not None else np.nan for v in values])
        return np.array(values, dtype=bool)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
           if v is not None):
        if all(isinstance(v, int) for v in values):
            return np.array(values, dtype=np.int64)
        return np.array([np.nan if v is None else v for v in values], dtype=float)
    if all(isinstance(v, str) for v in values if v is not None):
        return np.array(["" if v is None else v for v in values], dtype=object)
    return np.array([json.dumps(v) if isinstance(v, (list, dict)) else v for v in values],
                    dtype=object)


def _progress(iterable, total, progress, desc):
    if progress is False or (progress is None and total < 20):
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, unit="file", leave=False,
                disable=None if progress is None else not progress)


def open_batch(source, *, progress: bool | None = None, chunk_runs: int = CHUNK_RUNS,
               variables=None, verify: bool = True) -> xr.Dataset:
    """All runs of a batch as one Dataset with a ``run`` dimension (time series lazy).

    Args:
        source: a batch folder (``runs/<batch>``; a ``manifest.csv`` is used
            when present) or a list of run files.
        progress: show a progress bar while the files are scanned (None:
            when there are 20 files or more and stderr is a terminal).
        chunk_runs: runs per dask chunk of the time series.
        variables: time-series variables to expose (default: all).
        verify: check the checksums of each file's ``/timeseries`` and
            ``/endpoints`` while scanning (a damaged file is skipped).

    Returns:
        Dataset with dims ``(run, time)``: each time-series variable as a dask
        array, the file endpoints as ``endpoint_<name>(run)`` (in memory),
        covariates and varied parameters as coordinates along ``run``, and in
        ``attrs``: ``batch_name``, ``folder``, ``n_runs`` (runs accounted
        for), ``n_loaded``, ``n_skipped``, ``skipped`` (JSON list of
        ``{run_id, status, reason}``), ``batch_config`` (``batch.toml`` text,
        if any), ``software_versions``, ``schema_versions``.

    Raises:
        FileFormatError: the folder does not exist or holds no readable,
            complete run file (one line, naming the folder and what was found).
    """
    if isinstance(source, (str, Path)):
        folder = Path(source)
        cands, skipped = find_runs(folder)
        rows = read_manifest(folder)
    else:
        paths = [Path(p) for p in source]
        folder = paths[0].parent if paths else Path(".")
        cands = [{"run_id": p.stem, "path": p, "manifest": None} for p in paths]
        skipped, rows = [], None
    scans, kept = [], []
    known: dict[str, tuple] = {}
    for c in _progress(cands, len(cands), progress, "reading runs"):
        if c["path"].name.endswith(".part"):
            skipped.append({"run_id": c["run_id"], "status": "incomplete",
                            "reason": f"{c['path'].name}: run in progress or interrupted"})
            continue
        try:
            s = scan_file(c["path"], known=set(known), verify=verify)
        except FileFormatError as exc:
            skipped.append({"run_id": c["run_id"], "status": "unreadable", "reason": str(exc)})
            continue
        if int(s["attrs"].get("complete", 1) or 0) != 1:
            skipped.append({"run_id": c["run_id"], "status": "incomplete",
                            "reason": f"{c['path'].name}: run not complete (complete = 0)"})
            continue
        if s["time"].size == 0:
            skipped.append({"run_id": c["run_id"], "status": "empty",
                            "reason": f"{c['path'].name}: no time-series records"})
            continue
        for name, meta in s["vars"].items():
            if meta is not None and name not in known:
                known[name] = meta
        if scans and np.array_equal(s["time"], scans[0]["time"]):
            s["time"] = scans[0]["time"]    # share one time axis: O(1) memory per run
        flat = _flatten(s.pop("config"))    # keep only what differs from the first run
        s["cfg"] = _FlatConfig(scans[0]["cfg"].base if scans else flat, flat)
        scans.append(s)
        kept.append(c)
    n_accounted = len(kept) + len(skipped)
    if not kept:
        what = (f"{len(skipped)} run(s) listed, none usable: "
                + "; ".join(f"{s['run_id'] or '?'} {s['status']}" for s in skipped[:3])
                + (" ..." if len(skipped) > 3 else "")) if skipped else "no *.h5 run files"
        raise FileFormatError(f"{folder}: no complete run files found ({what})")

    time, index = _time_union([s["time"] for s in scans])
    n_run, n_time = len(kept), time.size
    padded = any(i is not None for i in index)
    names = [n for n in known if variables is None or n in variables]
    paths = [str(c["path"]) for c in kept]
    data_vars = {}
    for name in names:
        dtype, units, long_name = known[name]
        has = np.array([name in s["vars"] for s in scans])
        dtype, _, fill = dtype.partition(":fill=")
        dt = np.dtype(dtype)
        if padded or not has.all() or dt.kind not in "fiub":
            dt = np.dtype(np.float64) if dt.kind in "fiub" else dt
        arr = _RunVariable(paths, name, n_time, dt, index, has,
                           fill=int(fill) if fill else None)
        chunks = (max(1, min(int(chunk_runs), n_run)), n_time)
        d = da.from_array(arr, chunks=chunks, lock=False, asarray=True,
                          meta=np.empty((0, 0), dtype=dt), name=f"abm-{name}-" +
                          _token(paths, name, n_time))
        data_vars[name] = xr.Variable(("run", "time"), d,
                                      attrs={"units": units or "unknown",
                                             "long_name": long_name or name})
    # endpoints written by the simulator (small: in memory)
    ep_names = sorted({k for s in scans for k in s["endpoints"]})
    for name in ep_names:
        data_vars[f"endpoint_{name}"] = xr.Variable(
            ("run",), np.array([s["endpoints"].get(name, np.nan) for s in scans], float),
            attrs={"long_name": f"{name} (from the file's /endpoints)"})

    coords = _run_coords(kept, scans, rows)
    varied_keys = coords.pop("__varied__")
    coords["time"] = ("time", time, {"units": "day", "long_name": "time since CAR-T infusion"})
    ds = xr.Dataset(data_vars, coords=coords)
    batch_toml = folder / "batch.toml"
    n_listed = len(rows) if rows is not None else n_accounted
    ds.attrs.update({
        "batch_name": folder.name,
        "folder": str(folder),
        "n_runs": int(max(n_listed, n_accounted)),
        "n_loaded": int(n_run),
        "n_skipped": int(len(skipped)),
        "skipped": json.dumps(skipped),
        "batch_config": batch_toml.read_text(encoding="utf-8") if batch_toml.is_file() else "",
        "software_versions": ", ".join(sorted({str(s["attrs"].get("software_version", "?"))
                                               for s in scans})),
        "schema_versions": ", ".join(sorted({str(s["attrs"].get("schema_version", "?"))
                                             for s in scans})),
        "padded": int(padded),
        "varied_parameters": ", ".join(varied_keys),
    })
    return ds


def _token(paths, name, n_time) -> str:
    from dask.base import tokenize
    return tokenize(tuple(paths), name, n_time)


#: Short names of the covariates every report uses (config key -> coordinate name); any
#: other config key is named by its path with the dots replaced by underscores.
COVARIATE_NAMES = {
    "patient.tumour_burden_cells": "burden_cells",   # effective burden, also when given in mL
    "product.preset": "product",
    "clinician.preset": "policy",
    "product.dose_cells": "dose_cells",
    "patient.weight_kg": "weight_kg",
    "patient.baseline_endothelial_activation": "baseline_endothelial_activation",
    "patient.tumour_volume_ml": "tumour_volume_ml",
    "patient.random_effects": "random_effects",
}
#: Keys of a file's ``covariates`` attribute -> config key (the rest are ``patient.<key>``).
_COVARIATE_KEYS = {"burden_cells": "patient.tumour_burden_cells",
                   "product_preset": "product.preset", "dose_cells": "product.dose_cells"}
#: ``covariates`` keys left out: the raw setting behind ``burden_cells`` (None when the
#: burden is given as a volume).
_RAW_COVARIATES = ("tumour_burden_cells",)


def covariate_name(config_key: str) -> str:
    """The coordinate name of a covariate or varied parameter given by its config key."""
    return COVARIATE_NAMES.get(config_key, config_key.replace(".", "_"))


def _run_coords(kept, scans, rows) -> dict:
    n = len(kept)
    coords: dict = {"run": ("run", np.array([c["run_id"] for c in kept], dtype=object))}
    coords["path"] = ("run", np.array([str(c["path"]) for c in kept], dtype=object))
    for key in ("seed", "replicate", "start_day", "end_day", "dt_min", "software_version",
                "wall_total_s"):
        vals = [s["attrs"].get(key) for s in scans]
        if any(v is not None for v in vals):
            coords[key] = ("run", _coord_values(vals))
    for key in ("member", "sweep_point", "draw"):   # draw: posterior draw ([batch.posterior])
        vals = [(c["manifest"] or {}).get(key) for c in kept]
        if any(v not in (None, "") for v in vals):
            coords[key] = ("run", np.array([int(v) if v not in (None, "") else -1 for v in vals]))
    # covariates, from each file's provenance, under one name each (COVARIATE_NAMES)
    cov_keys: list[str] = []
    for s in scans:
        cov_keys += [k for k in s["covariates"] if k not in cov_keys and k not in _RAW_COVARIATES]
    for k in cov_keys:
        key = _COVARIATE_KEYS.get(k, f"patient.{k}")
        name = covariate_name(key)
        if name not in coords:
            coords[name] = ("run", _coord_values([s["covariates"].get(k) for s in scans]),
                            {"config_key": key})
    # varied parameters: those the manifest names, else every config key that differs
    # between runs (a product preset then brings all its keys); values from the files
    flat = [s["cfg"] for s in scans]
    varied = [k for k in manifest_params(rows) if any(k in f for f in flat)]
    if not varied:
        keys = list(flat[0].base)
        for f in flat:
            keys += [k for k in f.diff if k not in flat[0].base and k not in keys]
        differs = {k for f in flat for k in f.diff}
        varied = [k for k in keys if k in differs and not k.startswith(_NOT_PARAMS)]
    for k in varied:
        name = covariate_name(k)
        if name not in coords:     # a covariate already read from the provenance wins
            coords[name] = ("run", _coord_values([f.get(k) for f in flat]), {"config_key": k})
    # grouping covariates every batch has (files without a covariates attribute)
    if "product" not in coords:
        coords["product"] = ("run", np.array([str(f.get("product.preset", "")) for f in flat],
                                             dtype=object), {"config_key": "product.preset"})
    else:
        coords["product"] = ("run", np.array(["" if p is None else str(p)
                                              for p in coords["product"][1]], dtype=object),
                             {"config_key": "product.preset"})
    if "policy" not in coords:
        coords["policy"] = ("run", np.array([str(f.get("clinician.preset", "")) for f in flat],
                                            dtype=object), {"config_key": "clinician.preset"})
    if "burden_cells" not in coords:
        b = [f.get("patient.tumour_burden_cells", math.nan) for f in flat]
        coords["burden_cells"] = ("run", np.array(b, dtype=float),
                                  {"config_key": "patient.tumour_burden_cells"})
    assert all(len(v[1]) == n for v in coords.values())
    coords["__varied__"] = varied
    return coords


__all__ = ["open_batch", "covariate_name", "COVARIATE_NAMES", "find_runs", "read_manifest", "scan_file", "close_files"]
