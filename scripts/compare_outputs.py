"""Compare two run outputs (files or folders of .h5 files) dataset by dataset and attribute by attribute.

Used to show that a change leaves results bit-identical: every dataset must
have the same dtype, shape and bytes, every attribute the same value. Only
attributes that record when or how fast a run went (wall times, creation and
finish times, Numba cache counters, the platform string) are skipped.
Folders are compared file by file (matched by relative path); a batch's
``manifest.csv`` is compared with its timing columns removed.

    python scripts/compare_outputs.py BEFORE AFTER   # exit 0: identical, 1: differences
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import h5py
import numpy as np

#: Attributes that record the run's timing or environment, not its results.
VOLATILE_ATTRS = {"created", "finished", "numba_cache_hits", "numba_cache_misses", "env_platform"}
VOLATILE_PREFIXES = ("wall_",)
#: Manifest columns that record timing or placement, not results.
VOLATILE_COLUMNS = {"started", "finished", "duration_s", "host", "pid", "worker", "attempts",
                    "wall_s", "cpu_s", "simulate_s", "compile_s", "write_s", "path"}


def _volatile(name: str) -> bool:
    return name in VOLATILE_ATTRS or name.startswith(VOLATILE_PREFIXES)


def _plain(value, f: h5py.File):
    """A comparable form of an attribute or dataset value: references become object names."""
    if isinstance(value, (h5py.Reference, h5py.RegionReference)):
        return ("ref", f[value].name if value else None)
    if isinstance(value, np.ndarray) and (value.dtype == object or value.dtype.fields):
        return ("array", value.dtype.str if value.dtype != object else "O", value.shape,
                tuple(_plain(v, f) for v in value.ravel().tolist()))
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v, f) for v in value)
    if isinstance(value, (np.ndarray, np.generic)):
        # bytes, not ==, so that NaN equals NaN and -0.0 differs from 0.0
        return ("array", value.dtype.str, value.shape, value.tobytes())
    return (type(value).__name__, value)


def _same_value(a, b, fa, fb) -> bool:
    return _plain(a, fa) == _plain(b, fb)


def compare_h5(a: Path, b: Path) -> tuple[int, list[str]]:
    """Return (objects compared, differences) between two HDF5 files."""
    diffs: list[str] = []
    n = 0
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names_a, names_b = [""], [""]
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        for missing in sorted(set(names_a) ^ set(names_b)):
            where = "before only" if missing in names_a else "after only"
            diffs.append(f"{missing or '/'}: {where}")
        for name in sorted(set(names_a) & set(names_b)):
            oa, ob = (fa[name], fb[name]) if name else (fa, fb)
            n += 1
            if isinstance(oa, h5py.Dataset) != isinstance(ob, h5py.Dataset):
                diffs.append(f"{name}: dataset in one file, group in the other")
                continue
            if isinstance(oa, h5py.Dataset):
                va, vb = oa[()], ob[()]
                if not _same_value(np.asarray(va), np.asarray(vb), fa, fb):
                    diffs.append(f"{name}: data differ ({oa.dtype}{oa.shape} vs {ob.dtype}{ob.shape})")
            keys = (set(oa.attrs) | set(ob.attrs))
            for key in sorted(keys):
                if _volatile(key):
                    continue
                n += 1
                if key not in oa.attrs or key not in ob.attrs:
                    diffs.append(f"{name or '/'}@{key}: in one file only")
                elif not _same_value(oa.attrs[key], ob.attrs[key], fa, fb):
                    diffs.append(f"{name or '/'}@{key}: {str(oa.attrs[key])[:60]!r} vs "
                                 f"{str(ob.attrs[key])[:60]!r}")
    return n, diffs


def compare_manifest(a: Path, b: Path) -> tuple[int, list[str]]:
    def rows(p):
        with open(p, newline="") as fh:
            return [{k: v for k, v in r.items() if k not in VOLATILE_COLUMNS}
                    for r in csv.DictReader(fh)]
    ra, rb = rows(a), rows(b)
    return len(ra), ([] if ra == rb else [f"{a.name}: rows differ"])


def compare(a: Path, b: Path) -> tuple[int, int, list[str]]:
    """Return (files, objects, differences) between two files or folders."""
    if a.is_file():
        n, d = compare_h5(a, b)
        return 1, n, d
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.suffix == ".h5" or p.name == "manifest.csv"}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.suffix == ".h5" or p.name == "manifest.csv"}
    diffs = [f"{p}: before only" for p in sorted(files_a - files_b)]
    diffs += [f"{p}: after only" for p in sorted(files_b - files_a)]
    n_obj = 0
    for rel in sorted(files_a & files_b):
        fn = compare_manifest if rel.name == "manifest.csv" else compare_h5
        n, d = fn(a / rel, b / rel)
        n_obj += n
        diffs += [f"{rel}: {x}" for x in d]
    return len(files_a & files_b), n_obj, diffs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args(argv)
    for p in (args.before, args.after):
        if not p.exists():
            print(f"compare_outputs: error: {p} does not exist", file=sys.stderr)
            return 2
    files, objects, diffs = compare(args.before, args.after)
    for d in diffs[:50]:
        print("DIFF", d)
    if len(diffs) > 50:
        print(f"... and {len(diffs) - 50} more")
    verdict = "identical" if not diffs else f"{len(diffs)} differences"
    print(f"{args.before} vs {args.after}: {files} files, {objects} datasets and attributes "
          f"compared: {verdict}")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
