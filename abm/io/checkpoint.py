"""Checkpoints: the complete :class:`~abm.state.State` of a run, for exact restart.

Design rule: **all dynamic state lives on State**. Processes hold only
constants and scratch buffers that they overwrite before reading; random
numbers are pure functions of (seed, stream, step, cell id, draw). So saving
every attribute of State is enough to continue a run bit for bit.

The encoder is generic over State's attributes, so state added later (blood
compartments, clinician state, events, ...) is checkpointed without changes
here:

* ``config``, ``lattice`` and ``species`` are not stored: they are rebuilt from the
  resolved config and the seed (the lattice is geometry only; anything that
  changes during a run must live on State itself);
* NumPy arrays become datasets (exact dtype and shape, lossless gzip);
* the :class:`~abm.cells.CellTable` becomes a group holding its used rows,
  ``next_id`` and ``capacity``; occupancy is rebuilt on load;
* dicts, lists and tuples that hold arrays become groups;
* every other value (numbers, strings, None, and containers of them, e.g.
  ``scalars`` and ``events``) becomes a scalar string dataset of *tagged
  JSON* that preserves Python and NumPy scalar types and tuples exactly
  (floats are written with ``repr``, which round-trips).

A value of any other type raises :class:`CheckpointError` when the checkpoint
is written, never silently at restart.

A checkpoint group ``/checkpoint/step_<N>`` carries ``step``, ``seed`` and
``time_day`` attributes, the lengths of the output groups at that step
(``n_time``, ``n_snapshots``, ``n_obs``, ``n_events``, ``timeseries_keys``),
which a resume truncates back to, and ``complete = 1``, set last: a
checkpoint interrupted while being written is ignored.

Checkpoint files (crash consistency). HDF5 does not journal: a process killed
(or a machine losing power) in the middle of a write can leave the ``.part``
with damaged metadata, which no truncation can repair. So every checkpoint is
also written as a separate, complete file beside the output::

    <run>.h5.ckpt-<step>-<sha256 of the file, 16 hex digits>

a byte copy of the ``.part`` taken right after the checkpoint was flushed
(its "open for write" flags cleared), written under a temporary name,
fsync'ed and renamed atomically (the folder fsync'ed too), and only then are
older checkpoint files removed. No later write to the ``.part`` touches it,
and its name carries its checksum, so a resume verifies it before use.
A resume always rebuilds the ``.part`` from the newest checkpoint file that
verifies (copy, fsync, rename) and ignores whatever the ``.part`` holds
after it; the records after the checkpoint are recomputed, exactly. A run
finished cleanly leaves no checkpoint file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import h5py
import numpy as np

from abm.build import build_simulation
from abm.cells import COLUMNS, CellTable
from abm.config import config_from_dict
from abm.errors import AbmError
from abm.io.h5file import open_output
from abm.io.h5repair import cleared_superblock

#: State attributes rebuilt from config and seed instead of stored.
NOT_STORED = ("config", "lattice", "species")
#: CellTable attributes that are derived (occupancy, the per-process layout marker) or stored
#: as attributes.
_TABLE_SPECIAL = ("occ", "n", "next_id", "capacity", "layout")
#: Prefix of checkpoint group names.
PREFIX = "step_"


class CheckpointError(AbmError):
    """A state cannot be checkpointed, or a checkpoint cannot be restored."""


# -- tagged JSON ---------------------------------------------------------------

def _tag(v):
    if v is None or type(v) in (bool, str, int, float):
        return v
    if isinstance(v, np.generic) and v.dtype.kind in "biuf":
        return {"__np__": v.dtype.str, "v": v.item()}
    if type(v) is list:
        return [_tag(x) for x in v]
    if type(v) is tuple:
        return {"__tuple__": [_tag(x) for x in v]}
    if type(v) is dict:
        return {"__dict__": [[_tag(k), _tag(x)] for k, x in v.items()]}
    raise CheckpointError(f"cannot checkpoint a value of type {type(v).__name__} ({v!r:.60}); "
                          "state must be arrays, numbers, strings and lists/dicts/tuples of them")


def _untag(v):
    if isinstance(v, list):
        return [_untag(x) for x in v]
    if isinstance(v, dict):
        if "__np__" in v:
            return np.dtype(v["__np__"]).type(v["v"])
        if "__tuple__" in v:
            return tuple(_untag(x) for x in v["__tuple__"])
        if "__dict__" in v:
            return {_untag(k): _untag(x) for k, x in v["__dict__"]}
        raise CheckpointError(f"unknown tagged value {v!r:.60}")
    return v


def to_json(value) -> str:
    """Tagged JSON text of ``value`` (exact round trip through :func:`from_json`)."""
    return json.dumps(_tag(value), allow_nan=True, separators=(",", ":"))


def from_json(text: str):
    return _untag(json.loads(text))


# -- encoder ---------------------------------------------------------------------

def _has_array(v) -> bool:
    if isinstance(v, (np.ndarray, CellTable)):
        return True
    if type(v) in (list, tuple):
        return any(_has_array(x) for x in v)
    if type(v) is dict:
        return any(_has_array(x) for x in v.values())
    return False


def _encode(group: h5py.Group, name: str, value, compression: int) -> None:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise CheckpointError(f"cannot checkpoint object array {name!r}")
        kw = {}
        if value.ndim and value.size and compression > 0:
            kw = dict(compression="gzip", compression_opts=compression, shuffle=True)
        group.create_dataset(name, data=value, **kw)
    elif isinstance(value, CellTable):
        sub = group.create_group(name)
        sub.attrs["__type__"] = "CellTable"
        for col, arr in value.columns().items():
            _encode(sub, col, np.ascontiguousarray(arr), compression)
        for k in ("n", "next_id", "capacity"):
            sub.attrs[k] = int(getattr(value, k))
        extra = {k: v for k, v in vars(value).items() if k not in COLUMNS and k not in _TABLE_SPECIAL}
        if extra:
            _encode(sub, "__extra__", extra, compression)
    elif _has_array(value):
        sub = group.create_group(name)
        sub.attrs["__type__"] = type(value).__name__
        items = value.items() if type(value) is dict else enumerate(value)
        keys = []
        for i, (k, v) in enumerate(items):
            keys.append(k)
            _encode(sub, str(i), v, compression)
        sub.attrs["__keys__"] = to_json(keys)
    else:
        ds = group.create_dataset(name, data=to_json(value), dtype=h5py.string_dtype())
        ds.attrs["__type__"] = "json"


def _decode(obj):
    if isinstance(obj, h5py.Dataset):
        if obj.attrs.get("__type__") == "json":
            raw = obj[()]
            return from_json(raw.decode() if isinstance(raw, bytes) else raw)
        return obj[()] if obj.ndim == 0 else obj[...]
    kind = obj.attrs.get("__type__")
    if kind == "CellTable":
        return obj  # restored in place by restore_state
    keys = from_json(obj.attrs["__keys__"])
    values = [_decode(obj[str(i)]) for i in range(len(keys))]
    if kind == "dict":
        return dict(zip(keys, values))
    return tuple(values) if kind == "tuple" else list(values)


def save_state(group: h5py.Group, state, compression: int = 1) -> None:
    """Write every attribute of ``state`` (but those in NOT_STORED) into ``group``."""
    for name, value in vars(state).items():
        if name in NOT_STORED:
            continue
        _encode(group, name, value, compression)


def _restore_table(table: CellTable, g: h5py.Group) -> None:
    cols = {name: g[name][...] for name in COLUMNS}
    table.load_columns(cols, int(g.attrs["next_id"]))
    cap = int(g.attrs["capacity"])
    if cap > table.capacity:
        table.ensure_capacity(cap - table.n)
    if "__extra__" in g:
        for k, v in _decode(g["__extra__"]).items():
            setattr(table, k, v)


def restore_state(group: h5py.Group, state) -> None:
    """Load a checkpoint written by :func:`save_state` into ``state``.

    Arrays are copied into the existing arrays of ``state`` when shape and
    dtype agree, so references a process holds stay valid.
    """
    for name in group:
        obj = group[name]
        if isinstance(obj, h5py.Group) and obj.attrs.get("__type__") == "CellTable":
            _restore_table(getattr(state, name), obj)
            continue
        value = _decode(obj)
        current = getattr(state, name, None)
        if (isinstance(current, np.ndarray) and isinstance(value, np.ndarray)
                and current.shape == value.shape and current.dtype == value.dtype):
            current[...] = value
        else:
            setattr(state, name, value)


# -- checkpoint groups -----------------------------------------------------------

def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{int(step)}"


def list_checkpoints(h5: h5py.File) -> list[int]:
    """Steps of the complete checkpoints in a file, ascending."""
    if "checkpoint" not in h5:
        return []
    steps = []
    for name in h5["checkpoint"]:
        if not name.startswith(PREFIX):
            continue
        try:
            complete = int(h5["checkpoint"][name].attrs.get("complete", 0)) == 1
        except (KeyError, OSError, RuntimeError):   # damaged by a kill while written
            complete = False
        if complete:
            steps.append(int(name[len(PREFIX):]))
    return sorted(steps)


def load_checkpoint(path, step: int | None = None, *, processes=None, config=None):
    """A :class:`~abm.simulation.Simulation` restored from a checkpoint of a file.

    Args:
        path: an output file (``.h5``) or an interrupted one (``.h5.part``).
        step: the checkpoint's step; None for the latest.
        processes: process classes (default: :func:`abm.build.default_processes`).
        config: use this config instead of the one stored in the file (e.g. to
            branch a run with another clinician policy from a given day).

    Returns:
        The simulation at that step, ready to ``run()`` on. No writer is
        attached; use :func:`abm.io.run.run_to_file` with ``resume=True`` to
        continue writing the file itself.
    """
    with open_output(path, "r") as h5:
        if config is None:
            config = config_from_file(h5, path)
        return restore_simulation(h5, path, step, config, processes)[0]


def config_from_file(h5: h5py.File, path):
    """The resolved config stored in an output file's ``config_json`` attribute."""
    try:
        return config_from_dict(json.loads(h5.attrs["config_json"]), file=f"{path}:config_json")
    except KeyError:
        raise CheckpointError(f"{path}: has no config_json attribute") from None


def restore_simulation(h5: h5py.File, path, step, config, processes=None):
    """A simulation of ``config`` restored from checkpoint ``step`` (None: the latest) of an open file.

    Returns:
        ``(sim, group)``: the simulation at that step, and the checkpoint's
        group (whose attributes give the output groups' lengths at that step).
    """
    steps = list_checkpoints(h5)
    if not steps:
        raise CheckpointError(f"{path}: holds no complete checkpoint to restart from")
    if step is None:
        step = steps[-1]
    if step not in steps:
        raise CheckpointError(f"{path}: no checkpoint at step {step} (available: "
                              f"{', '.join(map(str, steps))})")
    g = h5["checkpoint"][checkpoint_name(step)]
    seed = int(g.attrs["seed"])
    sim = build_simulation(config, seed=seed, processes=processes, initialise=False)
    restore_state(g["state"], sim.state)
    if sim.state.step != step:
        raise CheckpointError(f"{path}: checkpoint {checkpoint_name(step)} holds step "
                              f"{sim.state.step}")
    return sim, g


# -- checkpoint files --------------------------------------------------------------

#: Infix of checkpoint file names: ``<run>.h5.ckpt-<step>-<digest>``.
FILE_INFIX = ".ckpt-"
_FILE_RE = re.compile(r"\.ckpt-(\d+)-([0-9a-f]{16})$")
_BLOCK = 1 << 20


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:   # some file systems cannot fsync a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _copy_digest(src: Path, dst: Path, head: bytes | None = None) -> str:
    """Copy ``src`` to ``dst`` (its first bytes replaced by ``head``), fsync; the sha256."""
    h = hashlib.sha256()
    try:
        with open(src, "rb") as fi, open(dst, "wb") as fo:
            first = True
            while True:
                block = fi.read(_BLOCK)
                if not block:
                    break
                if first and head is not None:
                    block = head + block[len(head):]
                first = False
                h.update(block)
                fo.write(block)
            fo.flush()
            os.fsync(fo.fileno())
    except OSError as exc:
        if exc.filename is None:   # a failed write: name the file being written
            raise OSError(exc.errno, exc.strerror, str(dst)) from None
        raise
    return h.hexdigest()


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def checkpoint_files(path) -> list[tuple[int, Path]]:
    """``(step, file)`` of the checkpoint files of the run whose final file is ``path``,
    ascending by step (not verified)."""
    path = Path(path)
    out = []
    for p in path.parent.glob(f"{path.name}{FILE_INFIX}*"):
        m = _FILE_RE.search(p.name)
        if m and p.name == f"{path.name}{FILE_INFIX}{m.group(1)}-{m.group(2)}":
            out.append((int(m.group(1)), p))
    return sorted(out)


def write_checkpoint_file(part: Path, path: Path, step: int) -> Path:
    """Copy the flushed ``part`` into a new checkpoint file of ``path`` at ``step``
    (temporary name, fsync, atomic rename); then remove the older ones."""
    part, path = Path(part), Path(path)
    tmp = path.with_name(f"{path.name}.ckpt.tmp")
    try:
        digest = _copy_digest(part, tmp, cleared_superblock(part))
        final = path.with_name(f"{path.name}{FILE_INFIX}{int(step)}-{digest[:16]}")
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    for _, old in checkpoint_files(path):
        if old != final:
            old.unlink(missing_ok=True)
    return final


def latest_checkpoint_file(path, log=None) -> tuple[int, Path] | None:
    """The newest checkpoint file of ``path`` whose checksum verifies, as ``(step, file)``.

    Files that fail verification (and a temporary copy left by a kill) are
    removed, with a message through ``log``; None if no file verifies.
    """
    path = Path(path)
    path.with_name(f"{path.name}.ckpt.tmp").unlink(missing_ok=True)
    for step, p in reversed(checkpoint_files(path)):
        want = _FILE_RE.search(p.name).group(2)
        try:
            ok = _digest(p)[:16] == want
        except OSError:
            ok = False
        if ok:
            return step, p
        if log is not None:
            log(f"checkpoint file {p.name} is damaged (checksum differs); ignoring it")
        p.unlink(missing_ok=True)
    return None


def restore_part_from(ckpt: Path, part: Path) -> None:
    """Replace ``part`` by a copy of the checkpoint file ``ckpt`` (temporary name, fsync,
    atomic rename): whatever the ``.part`` held after the checkpoint is dropped.

    The old ``.part`` is removed first (it is not trusted, and on a nearly full
    disk its space is needed); a kill meanwhile leaves the checkpoint file.
    """
    tmp = part.with_name(part.name + ".tmp")
    part.unlink(missing_ok=True)
    try:
        _copy_digest(ckpt, tmp)
        os.replace(tmp, part)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(part.parent)


def remove_checkpoint_files(path) -> None:
    """Remove every checkpoint file of ``path`` (the run is finished, or started afresh)."""
    path = Path(path)
    for _, p in checkpoint_files(path):
        p.unlink(missing_ok=True)
    path.with_name(f"{path.name}.ckpt.tmp").unlink(missing_ok=True)
