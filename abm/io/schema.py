"""The HDF5 file schema: version, layout, variable metadata, netCDF-4 helpers.

One run writes one file. Every group except ``/checkpoint`` is a netCDF-4
group (dimension scales, ``units`` and ``long_name`` on every variable), so
``xr.open_dataset(path, engine="h5netcdf", group=G, decode_times=False)``
opens it directly.

Layout (schema version 2)::

    /                 root attributes: provenance (see abm.io.provenance)
    /timeseries       dim time;  time(time), step(time), one variable per
                      key of Simulation.record_row()
    /fields           dims snapshot, [z,] y, x;  snapshot_time(snapshot),
                      snapshot_step(snapshot), z/y/x [um, site centres],
                      one float32 variable per species [pg/mL]
    /cells            dims snapshot, obs;  count(snapshot) (CF contiguous ragged
                      array, sample_dimension = "obs"), snapshot_time,
                      snapshot_step, one variable per cell column over obs,
                      [z,] y, x(obs) [um, centre of the cell's site]
    /events           dim event;  time, kind (text), kind_code (flags),
                      grade, detail
    /endpoints        scalar variables, Simulation.endpoints()
    /checkpoint       step_<N> subgroups: the complete State at step N
                      (see abm.io.checkpoint); not a netCDF group

Dimensions named ``snapshot``, ``obs`` and ``event`` have no coordinate
variable (netCDF "dimension but not a variable"); ``time``, ``z``, ``y``,
``x`` in ``/fields`` are coordinate variables.

CF conventions (CF-1.10, every netCDF group):

* Time. The model's time is days relative to CAR-T infusion (day 0, negative
  before it), an instant with no calendar date. CF time needs
  ``"<unit> since <reference>"``, so every time variable (``time``,
  ``snapshot_time``, ``events/time``) has ``units`` :data:`TIME_UNITS`, whose
  reference 2000-01-01 00:00:00 *stands for the infusion instant* (attribute
  ``time_origin_meaning``); the stored numbers are the model's days, unchanged.
  A fixed placeholder date was chosen over the run's wall-clock date so that
  the files of identical runs are identical and day 0 reads as 2000-01-01 in
  CF tools; decode with ``decode_times=False`` to keep days (the analysis
  layer does).
* Codes. Coded integers carry ``flag_values`` and ``flag_meanings``: the cell
  ``kind``, the cell ``phenotype`` (its meaning depends on the kind, hence
  one combined meaning per code and ``flag_meanings_<kind>`` per kind) and
  ``events/kind_code`` (codes given in order of first occurrence).
* Grades (``*_grade`` keys: CRS/ICANS grade, max grade, episode max grade,
  and their endpoints) are int8 with ``_FillValue`` :data:`GRADE_FILL` (-127,
  the netCDF default for a byte: "not recorded").
* Units are UDUNITS-2 strings (:func:`cf_units`): counts of cells, molecules
  per cell and other dimensionless numbers are ``"1"`` (what is counted is in
  ``long_name``); ``cells/uL`` is ``uL-1``; ``nM`` is ``nmol/L``; ``IU/dL``
  is ``dL-1`` (international units are counts of activity).
* ``standard_name`` only where CF defines one: ``time``. The spatial
  coordinates are positions in a tissue patch, not Earth axes, so they carry
  no ``axis`` attribute (CF tools read axis X/Y as longitude/latitude).

Schema-1 files (time units ``"day"``, grades float64, no flags, CF-1.8) stay
readable; ``tests/data/golden_v1.h5`` is one.
"""

from __future__ import annotations

import re

import h5py
import numpy as np

from abm.kernels.codes import CartPhenotype, Kind, MyeloidPhenotype, TumourPhenotype

#: Version of the layout above. Bump on any incompatible change and keep a
#: file of each old version under tests/data so readers stay able to open it.
SCHEMA_VERSION = 2

#: Conventions attribute of the root group.
CONVENTIONS = "CF-1.10"

#: Units of every time variable: days, the reference standing for the infusion instant.
TIME_UNITS = "days since 2000-01-01 00:00:00"
#: Attributes of every time variable (CF time coordinate; values in days relative to infusion).
TIME_ATTRS = {
    "standard_name": "time",
    "calendar": "proleptic_gregorian",
    "time_origin_meaning": ("2000-01-01 00:00:00 stands for the instant of CAR-T infusion "
                            "(day 0); it is no calendar date"),
}

#: Fill value of the int8 grade variables ("not recorded").
GRADE_FILL = np.int8(-127)

#: Model unit strings that are not UDUNITS-2 -> their UDUNITS-2 form.
_UDUNITS = {"cells": "1", "-": "1", "molecules/cell": "1", "count": "1", "cells/uL": "uL-1",
            "nM": "nmol/L", "IU/dL": "dL-1", "day": "day", "days": "day"}

#: Groups of a file, in the order they are created.
GROUPS = ("timeseries", "fields", "cells", "events", "endpoints", "checkpoint")

#: What every run file holds, finished or not (the writer creates them when the
#: file is created): group -> variables. Readers refuse a file without them.
REQUIRED = {"timeseries": ("time",), "endpoints": ()}

#: netCDF-4 marks a dimension scale that is not a variable with this name.
NOT_A_VARIABLE = "This is a netCDF dimension but not a netCDF variable."

#: Units and long names of time-series and endpoint keys known to the schema.
#: Processes add their own with a ``meta`` class attribute (key -> (units,
#: long_name)); :func:`describe` falls back on name patterns.
KNOWN: dict[str, tuple[str, str]] = {
    "time": (TIME_UNITS, "time since CAR-T infusion (day 0)"),
    "step": ("1", "simulation step"),
}

_PATTERNS: list[tuple[str, str, str]] = [
    # (regex, units, long-name template with {0} = first group)
    (r"^n_(\w+)$", "1", "number of {0} cells in the patch"),
    (r"^final_n_(\w+)$", "1", "number of {0} cells in the patch at the end of the run"),
    (r"^tissue_(\w+)$", "pg/mL", "patch-mean tissue concentration of {0}"),
    (r"^plasma_(\w+)$", "pg/mL", "plasma concentration of {0}"),
    (r"^exchange_(\w+)_pg$", "pg", "{0} moved from tissue to plasma in the patch this step"),
    (r"^uptake_(\w+)_pg$", "pg", "{0} taken up by cells in the patch this step"),
    (r"^(\w+)_day$", "day", "{0} (day relative to infusion)"),
    (r"^(\w+)_per_ul$", "uL-1", "{0} per microlitre"),
    (r"^(\w+)_mmhg$", "mmHg", "{0}"),
    (r"^(\w+)_pct$", "%", "{0}"),
    (r"^(\w+)_c$", "degC", "{0}"),
    (r"^(\w+)_(episodes|resolved|cells|rung_max|max)$", "1", "{0} {1}"),
    (r"^(\w+)_h$", "h", "{0}"),
    (r"^(\w+)_pg_ml$", "pg/mL", "{0}"),
]


def describe(key: str, meta: dict | None = None) -> tuple[str, str]:
    """``(units, long_name)`` of a recorded key: declared, known, by pattern, or unknown.

    Units are UDUNITS-2 strings (:func:`cf_units`).
    """
    if meta and key in meta:
        units, long_name = meta[key]
        return cf_units(units), long_name
    if key in KNOWN:
        return KNOWN[key]
    for pattern, units, template in _PATTERNS:
        m = re.match(pattern, key)
        if m:
            return units, template.format(*m.groups()).replace("_", " ")
    return "unknown", key.replace("_", " ")


def cf_units(units: str) -> str:
    """The UDUNITS-2 form of a unit string of the model (``"cells"`` -> ``"1"``, ...)."""
    return _UDUNITS.get(units, units)


def is_grade(key: str) -> bool:
    """Whether a time-series or endpoint key is a clinical grade (stored as int8)."""
    return re.search(r"(^|_)grade$", key) is not None


def flag_attrs(codes: dict[str, int], dtype) -> dict:
    """``flag_values`` and ``flag_meanings`` of a coded variable (meaning -> code)."""
    items = sorted(codes.items(), key=lambda kv: kv[1])
    return {"flag_values": np.array([v for _, v in items], dtype=dtype),
            "flag_meanings": " ".join(k for k, _ in items)}


def cell_flag_attrs() -> dict[str, dict]:
    """Flag attributes of the coded cell columns (``kind``, ``phenotype``)."""
    kind = flag_attrs({k.name.lower(): int(k) for k in Kind}, np.int8)
    per_kind = {"tumour": TumourPhenotype, "cart": CartPhenotype, "myeloid": MyeloidPhenotype}
    codes = sorted({int(p) for e in per_kind.values() for p in e})
    combined = {"_or_".join(f"{k}_{e(c).name.lower()}" for k, e in per_kind.items()
                            if c in {int(p) for p in e}): c for c in codes}
    phenotype = flag_attrs(combined, np.int8)
    for k, e in per_kind.items():
        phenotype[f"flag_meanings_{k}"] = " ".join(p.name.lower() for p in e)
        phenotype[f"flag_values_{k}"] = np.array([int(p) for p in e], dtype=np.int8)
    phenotype["comment"] = ("the meaning of a code depends on the cell kind: see "
                            "flag_meanings_<kind>; endothelial cells have phenotype 0")
    return {"kind": kind, "phenotype": phenotype}


# -- netCDF-4 on h5py ---------------------------------------------------------

def create_dimension(group: h5py.Group, name: str, size: int = 0, *,
                     maxlen: int | None = None, chunk: int = 1024) -> h5py.Dataset:
    """A dimension without a coordinate variable (a dimension scale holding no data).

    It can grow to ``maxlen`` (None: without bound; netCDF then calls it
    *unlimited*). Give a bound where it is known: h5netcdf sizes an unlimited
    dimension by visiting every variable attached to it, once per variable,
    which costs O(variables^2) when a file is opened.
    """
    ds = group.create_dataset(name, shape=(size,), dtype="f4", maxshape=(maxlen,),
                              chunks=(_chunk(chunk, maxlen),))
    ds.make_scale(f"{NOT_A_VARIABLE}{size:10d}")
    return ds


def create_coordinate(group: h5py.Group, name: str, data=None, *, dtype=None, units: str,
                      long_name: str, growable: bool = False, maxlen: int | None = None,
                      chunk: int = 1024, compression: int = 0, **attrs) -> h5py.Dataset:
    """A coordinate variable ``name(name)``: a dimension scale that holds values.

    Fixed (``data`` given, not ``growable``) or growable up to ``maxlen``.
    """
    kw = _filters(compression, fletcher32=True)
    if growable:
        kw.update(maxshape=(maxlen,), chunks=(_chunk(chunk, maxlen),))
    if data is None:
        ds = group.create_dataset(name, shape=(0,), dtype=dtype, **kw)
    else:
        ds = group.create_dataset(name, data=np.asarray(data, dtype=dtype), **kw)
    ds.make_scale(name)
    ds.attrs["units"] = units
    ds.attrs["long_name"] = long_name
    for k, v in attrs.items():
        ds.attrs[k] = v
    return ds


def create_variable(group: h5py.Group, name: str, dims: tuple[str, ...], dtype, *,
                    units: str, long_name: str, chunks: tuple[int, ...] | None = None,
                    compression: int = 0, fillvalue=None, **attrs) -> h5py.Dataset:
    """A variable over existing dimensions of ``group``, with scales attached.

    Its shape is the current size of each dimension, and it can grow as far
    as each dimension can. A 0-d variable (``dims=()``) is a scalar.
    """
    scales = [group[d] for d in dims]
    shape = tuple(s.shape[0] for s in scales)
    maxshape = tuple(s.maxshape[0] for s in scales)
    kw: dict = {}
    if dims:
        vlen = h5py.check_string_dtype(np.dtype(dtype)) is not None
        kw = {} if vlen else _filters(compression, fletcher32=True)
        if chunks is None:
            chunks = tuple(1024 if m is None or m > n else n for n, m in zip(shape, maxshape))
        chunks = tuple(_chunk(c, m) for c, m in zip(chunks, maxshape))
        kw.update(maxshape=maxshape, chunks=chunks)
    if fillvalue is not None:
        kw["fillvalue"] = fillvalue
    ds = group.create_dataset(name, shape=shape, dtype=dtype, **kw)
    for i, s in enumerate(scales):
        ds.dims[i].attach_scale(s)
    ds.attrs["units"] = units
    ds.attrs["long_name"] = long_name
    if fillvalue is not None and ds.dtype.kind == "f":
        ds.attrs["_FillValue"] = np.array(fillvalue, dtype=ds.dtype)
    for k, v in attrs.items():
        ds.attrs[k] = v
    return ds


def compact_copy(src, dst) -> None:
    """Copy a file into a new, compact one (like ``h5repack``, without recompressing).

    HDF5 does not give back the space of deleted objects or of rewritten
    chunks; a copy holds only live data. ``H5Ocopy`` copies chunks as
    stored, but not the object references by which dimension scales are
    attached (they would point into ``src``), so scales are re-attached.
    A scale is found by its object address among the datasets of its group
    (every variable's scales live in its own group): asking HDF5 for the
    name of a dereferenced scale costs ~1 ms a variable.
    """
    with h5py.File(src, "r") as a, h5py.File(dst, "w", libver=("v110", "v110")) as b:
        for k, v in a.attrs.items():
            b.attrs[k] = v
        for name in a:
            a.copy(a[name], b, name=name)
        for gname, ga in a.items():
            if not isinstance(ga, h5py.Group):
                continue
            gb = b[gname]
            datasets = [(name, ds) for name, ds in ga.items() if isinstance(ds, h5py.Dataset)]
            by_addr = {h5py.h5o.get_info(ds.id).addr: name for name, ds in datasets}
            attached = []
            for name, ds in datasets:
                for i in range(ds.ndim):
                    if not h5py.h5ds.get_num_scales(ds.id, i):
                        continue
                    found: list = []
                    h5py.h5ds.iterate(ds.id, i,
                                      lambda sid: found.append(by_addr[h5py.h5o.get_info(sid).addr]))
                    attached.extend((name, i, scale) for scale in found)
            ids = {}
            for name, _ in datasets:
                dsid = ids[name] = gb[name].id
                for attr in (b"DIMENSION_LIST", b"REFERENCE_LIST"):
                    if h5py.h5a.exists(dsid, attr):
                        h5py.h5a.delete(dsid, attr)
            for name, i, scale in attached:
                h5py.h5ds.attach_scale(ids[name], ids[scale], i)


def _chunk(chunk: int, maxlen: int | None) -> int:
    """A chunk length no longer than a bounded dimension (HDF5 requires it)."""
    return max(1, int(chunk) if maxlen is None else min(int(chunk), int(maxlen)))


def delete_variable(group: h5py.Group, name: str) -> None:
    """Detach a variable from its dimension scales and unlink it."""
    ds = group[name]
    for i in range(ds.ndim):
        for scale in list(ds.dims[i].values()):
            ds.dims[i].detach_scale(scale)
    del group[name]


def _filters(level: int, *, fletcher32: bool) -> dict:
    """gzip (with byte shuffle) at ``level`` (0: none) and a Fletcher-32 checksum.

    The checksum makes a corrupted chunk an error on read instead of silent
    garbage.
    """
    kw: dict = {"fletcher32": fletcher32}
    if level > 0:
        kw.update(compression="gzip", compression_opts=int(level), shuffle=True)
    return kw


def filters(level: int) -> dict:
    """Public form of the filter set used for every chunked dataset."""
    return _filters(level, fletcher32=True)
