"""Run the IOOS compliance checker's CF suite on every netCDF group of a run file.

The checker reads only the root group of a file, so each group
(``/timeseries``, ``/fields``, ``/cells``, ``/events``, ``/endpoints``) is
copied to the root of a file of its own (the file's root attributes, then the
group's, as attributes of that root) and checked there. ``/checkpoint`` is no
netCDF group (see :mod:`abm.io.schema`) and is not checked.
"""

from __future__ import annotations

from pathlib import Path

import h5py

#: The CF suite run on every group.
CF_SUITE = "cf:1.10"
#: Groups of a run file that are netCDF groups.
NETCDF_GROUPS = ("timeseries", "fields", "cells", "events", "endpoints")
#: Priorities of the checker's results: 3 = error (high), 2 = warning, 1 = note.
PRIORITY = {3: "error", 2: "warning", 1: "note"}


def group_as_file(src_path, group: str, dst_path) -> Path:
    """Copy ``/group`` of a run file to the root of a new netCDF-4 file ``dst_path``."""
    dst_path = Path(dst_path)
    with h5py.File(src_path, "r") as a, h5py.File(dst_path, "w", libver=("v110", "v110")) as b:
        for k, v in a.attrs.items():
            b.attrs[k] = v
        g = a[group]
        for k, v in g.attrs.items():
            b.attrs[k] = v
        attached = []
        for name, ds in g.items():
            if not isinstance(ds, h5py.Dataset):
                continue
            a.copy(ds, b, name=name)
            for attr in ("DIMENSION_LIST", "REFERENCE_LIST"):
                if attr in b[name].attrs:
                    del b[name].attrs[attr]
            for i in range(ds.ndim):
                for scale in ds.dims[i].values():
                    attached.append((name, i, scale.name.rsplit("/", 1)[-1]))
        for name, i, scale in attached:
            b[name].dims[i].attach_scale(b[scale])
    return dst_path


def check_file(path, suite: str = CF_SUITE) -> list[dict]:
    """Results of the CF suite on one netCDF file: ``{priority, name, passed, out_of, msgs}``
    for every check that did not pass in full, plus ``{priority: "crash", ...}`` for checks
    that raised inside the checker."""
    from compliance_checker.runner import CheckSuite

    cs = CheckSuite()
    cs.load_all_available_checkers()
    ds = cs.load_dataset(str(path))
    try:
        (groups, errors), = cs.run_all(ds, [suite]).values()
    finally:
        ds.close()
    out = []
    for r in groups:
        passed, total = r.value
        if passed != total:
            out.append({"priority": PRIORITY.get(r.weight, str(r.weight)), "name": r.name,
                        "passed": passed, "out_of": total, "msgs": list(r.msgs)})
    for name, (exc, _tb) in errors.items():
        out.append({"priority": "crash", "name": name, "passed": 0, "out_of": 0,
                    "msgs": [f"{type(exc).__name__}: {exc}"]})
    return out


def check_run_file(path, workdir, suite: str = CF_SUITE) -> dict[str, list[dict]]:
    """:func:`check_file` on each netCDF group of a run file: ``{group: results}``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out = {}
    with h5py.File(path, "r") as h5:
        groups = [g for g in NETCDF_GROUPS if g in h5]
    for g in groups:
        out[g] = check_file(group_as_file(path, g, workdir / f"{g}.nc"), suite)
    return out


def summary(results: dict[str, list[dict]]) -> str:
    """One line per group with its counts, then one line per message."""
    lines = []
    for g, rs in results.items():
        counts = {p: sum(r["priority"] == p for r in rs) for p in ("error", "warning", "note",
                                                                   "crash")}
        lines.append(f"/{g}: " + ", ".join(f"{n} {p}(s)" for p, n in counts.items()))
        for r in rs:
            for m in r["msgs"] or [""]:
                lines.append(f"  [{r['priority']}] {r['name']}: {m}")
    return "\n".join(lines)
