"""Open run files as xarray objects.

This module depends on the file schema only, never on simulator internals,
so files written by older versions stay readable: each schema version this
reader understands is listed in :data:`SUPPORTED_SCHEMA_VERSIONS`, and a file
of any other version is refused with :class:`abm.errors.FileFormatError`, as
are missing, truncated, corrupted and non-HDF5 files (one-line messages).

>>> ds = open_run("runs/default/default_seed20261121.h5")        # doctest: +SKIP
>>> ds.n_tumour.plot()                                            # doctest: +SKIP
>>> fields = open_group(ds.attrs["path"], "fields")               # doctest: +SKIP
>>> fields.il6.sel(snapshot_time=7.0)                             # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from abm.errors import FileFormatError
from abm.io.h5repair import open_readonly, readonly_fileobj
from abm.io.schema import REQUIRED

#: Schema versions this reader opens.
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
#: Groups of a file (schema 1 and 2).
GROUPS = ("timeseries", "fields", "cells", "events", "endpoints", "checkpoint")
#: Schema-2 time units start so (see abm.io.schema.TIME_UNITS).
TIME_UNITS_PREFIX = "days since "
#: Groups whose checksums :func:`open_run` and :func:`analysis.batch.open_batch`
#: verify before trusting a file: the ones the analysis reads.
VERIFIED = ("timeseries", "endpoints")
#: Root attributes holding JSON text, decoded by :func:`read_provenance`.
JSON_ATTRS = ("config_json", "covariates", "restarts")


def one_line_error(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_file(path, *, verify=()) -> dict:
    """Validate ``path`` as a run file; return its root attributes.

    Args:
        verify: groups whose every dataset is read, so that a corrupted chunk
            (its Fletcher-32 checksum fails) is found now, not later.

    Raises:
        FileFormatError: missing, not HDF5, truncated or corrupted, not an abm
            file, an unsupported schema version, or missing a required group or
            variable (:data:`abm.io.schema.REQUIRED`).
    """
    return check_open(path, verify=verify)[0]


def check_open(path, fn=None, *, verify=()) -> tuple[dict, object]:
    """:func:`check_file`, then ``fn(h5)`` on the same open file (one open instead of two).

    Returns ``(attrs, fn(h5))`` (``None`` without ``fn``). Errors of ``fn``
    other than :class:`FileFormatError` read as a damaged file.
    """
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path}: no such file")
    if path.is_dir():
        raise FileFormatError(f"{path}: is a directory, not a run file")
    if not path.is_file():
        raise FileFormatError(f"{path}: is not a regular file")
    if not h5py.is_hdf5(path):
        raise FileFormatError(f"{path}: not an HDF5 file")
    try:
        with _h5open(path) as h5:
            attrs = {k: plain_value(v) for k, v in h5.attrs.items()}
            _check_attrs(path, attrs)
            _check_layout(path, h5)
            for group in verify:
                if group in h5:
                    _verify_group(path, h5[group])
            out = fn(h5) if fn is not None else None
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise FileFormatError(f"{path}: {open_error(exc)}") from None
    return attrs, out


def open_error(exc: BaseException) -> str:
    """Why HDF5 could not open or read a file, in words, from its exception."""
    msg = one_line_error(exc)
    low = msg.lower()
    if "truncated file" in low or "eof" in low and "stored_eof" in low:
        return f"truncated or not an HDF5 file ({msg})"
    if "unable to lock" in low or "file locking" in low or "resource temporarily" in low:
        return "is locked; is an abm process still writing it?"
    return f"truncated or corrupted HDF5 file ({msg})"


def _check_attrs(path, attrs: dict) -> None:
    version = attrs.get("schema_version")
    if version is None:
        raise FileFormatError(f"{path}: not an abm run file (no schema_version attribute)")
    if int(version) not in SUPPORTED_SCHEMA_VERSIONS:
        raise FileFormatError(
            f"{path}: unknown schema version {int(version)} (this reader supports "
            f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}); use a matching abm version")


def _check_layout(path, h5: h5py.File) -> None:
    """The groups and variables of :data:`abm.io.schema.REQUIRED` exist (time: 1-D)."""
    for group, variables in REQUIRED.items():
        g = h5.get(group)
        if not isinstance(g, h5py.Group):
            raise FileFormatError(f"{path}: damaged run file (no /{group} group)")
        for name in variables:
            v = g.get(name)
            if not isinstance(v, h5py.Dataset) or v.ndim != 1:
                raise FileFormatError(f"{path}: damaged run file (no /{group}/{name} variable)")


def _verify_group(path, group: h5py.Group) -> None:
    try:
        group.visititems(_read_dataset)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise FileFormatError(f"{path}: cannot read /{group.name.strip('/')}: corrupted data "
                              f"({one_line_error(exc)})") from None


def _h5open(path) -> h5py.File:
    """Open read-only, also an interrupted run's ``.part`` (its writer was killed)."""
    return open_readonly(path)


def plain_value(v):
    """An HDF5 attribute value as a plain Python value (str, int, float, list)."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def open_group(path, group: str, *, load: bool = False) -> xr.Dataset:
    """One group of a run file as an :class:`xarray.Dataset`.

    Times are float days relative to infusion (not decoded to dates), grades
    with a fill value are floats with NaN where not recorded. ``fields`` and
    ``cells`` get an index on ``snapshot_time``, so ``ds.sel(snapshot_time=7.0)``
    works. With ``load=True`` the data are read
    into memory (and the file closed); otherwise they are read lazily.
    """
    check_file(path)
    group = group.strip("/")
    try:
        # decode_times=False: times stay float days relative to infusion (schema 2 labels
        # them "days since 2000-01-01", a stand-in for the infusion instant)
        ds = xr.open_dataset(readonly_fileobj(path), engine="h5netcdf", group=group,
                             decode_times=False, decode_timedelta=False)
        if load:
            ds = ds.load()
            ds.close()
    except FileFormatError:
        raise
    except Exception as exc:  # h5py/h5netcdf raise many types on damaged files
        raise FileFormatError(
            f"{path}: cannot read group /{group} ({one_line_error(exc)})") from None
    _days_relative_to_infusion(ds)
    if "snapshot_time" in ds.coords and "snapshot" in ds.dims:
        ds = ds.set_xindex("snapshot_time")
    return ds


def _days_relative_to_infusion(ds: xr.Dataset) -> None:
    """Label schema-2 time variables ("days since <stand-in for infusion>") as plain days,
    which is what their values are to every user of this package."""
    for var in ds.variables.values():
        if str(var.attrs.get("units", "")).startswith(TIME_UNITS_PREFIX):
            var.attrs["units"] = "day"
            var.attrs.pop("calendar", None)


def open_run(path, *, load: bool = True) -> xr.Dataset:
    """The time series of a run (dim ``time``), with the file's root attributes.

    Endpoints are added as attributes ``endpoint_<name>``; the file path is in
    ``attrs["path"]`` for :func:`open_group` (fields, cells, events).
    """
    attrs = check_file(path, verify=VERIFIED)
    ds = open_group(path, "timeseries", load=load)
    ds.attrs.update(attrs)
    ds.attrs["path"] = str(path)
    try:
        with _h5open(path) as h5:
            if "endpoints" in h5:
                for k, v in h5["endpoints"].items():
                    ds.attrs[f"endpoint_{k}"] = endpoint_value(v)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise FileFormatError(f"{path}: cannot read /endpoints ({one_line_error(exc)})") from None
    return ds


def endpoint_value(ds: h5py.Dataset):
    """A scalar endpoint as a plain value; an integer equal to its ``_FillValue`` (a grade
    not recorded, schema 2) is NaN."""
    value = ds[()]
    fill = ds.attrs.get("_FillValue")
    if fill is not None and np.asarray(value).dtype.kind in "iu" and value == fill:
        return float("nan")
    return plain_value(value)


def read_provenance(path) -> dict:
    """Root attributes of a run file, with JSON attributes decoded (``config`` = the config dict)."""
    attrs = check_file(path)
    out = dict(attrs)
    for k in JSON_ATTRS:
        if isinstance(out.get(k), str):
            try:
                out[k] = json.loads(out[k])
            except json.JSONDecodeError:
                raise FileFormatError(f"{path}: attribute {k} is not valid JSON") from None
    out["config"] = out.pop("config_json", None)
    return out


def cell_snapshot(cells: xr.Dataset, i: int) -> xr.Dataset:
    """The cells of snapshot ``i`` from the ragged ``/cells`` group (a slice of ``obs``)."""
    count = np.asarray(cells["count"].values, dtype=np.int64)
    start = int(count[:i].sum())
    return cells.drop_vars([v for v in cells.variables if "snapshot" in cells[v].dims]) \
        .isel(obs=slice(start, start + int(count[i])))


def describe_file(path, *, verify: bool = True) -> dict:
    """Summary of a run file: provenance, groups with their dimension sizes.

    With ``verify`` every dataset is read in full, so a corrupted chunk (the
    Fletcher-32 checksums fail) is reported.
    """
    prov = read_provenance(path)
    groups: dict[str, dict] = {}
    try:
        with _h5open(path) as h5:
            for name in GROUPS:
                if name not in h5:
                    continue
                g = h5[name]
                dims: dict[str, int] = {}
                n_vars, subgroups = 0, []
                for k, obj in g.items():
                    if isinstance(obj, h5py.Group):
                        subgroups.append(k)
                        continue
                    if obj.attrs.get("CLASS") == b"DIMENSION_SCALE":
                        dims[k] = int(obj.shape[0])
                    if not str(obj.attrs.get("NAME", b"")).count("not a netCDF variable"):
                        n_vars += 1
                groups[name] = {"dims": dims, "variables": n_vars, "subgroups": subgroups}
            if verify:
                h5.visititems(_read_dataset)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise FileFormatError(f"{path}: corrupted data ({one_line_error(exc)})") from None
    return {"provenance": prov, "groups": groups, "size_bytes": Path(path).stat().st_size}


def _read_dataset(name, obj):
    if isinstance(obj, h5py.Dataset) and obj.size:
        if obj.chunks:
            for s in obj.iter_chunks():
                obj[s]
        else:
            obj[()]
