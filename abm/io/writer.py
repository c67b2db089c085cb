"""Writes one run's HDF5 file incrementally (layout: :mod:`abm.io.schema`).

Lifecycle::

    w = RunWriter(path, sim).create()     # <path>.part, provenance, empty groups
    w.attach()                            # record / snapshot / checkpoint triggers
    sim.run()
    w.finish(timings)                     # endpoints, wall times, complete = 1, rename

or, for an interrupted run, ``w, sim = RunWriter.resume(path)`` (truncates
every group back to the last checkpoint and restores the state).

Crash safety: the file is written as ``<name>.h5.part`` and renamed when the
run completes. Snapshots and checkpoints are flushed when written. Time-series
records are buffered in memory and written in blocks (at every snapshot and
checkpoint, at the end, and whenever ``flush_every_s`` of wall time have
passed): one HDF5 append costs ~0.1 ms per variable, which per record would
cost seconds per run; a block append costs the same as one record.
``flush_every_s=0`` writes and flushes every record.

The file work runs on a writer thread (:class:`_WriterThread`), so the
simulation goes on while snapshots are compressed and checkpoints saved and
copied. The simulation's thread only takes copies, at the step a writer
fires, of what is to be written (the records, new events, the fields and live
cells of a snapshot, the whole state of a checkpoint) and queues them; the
writer thread alone touches the file, in the order the jobs were queued, so the
file holds exactly what a synchronous writer would write. HDF5 releases the
GIL while it compresses and writes. :attr:`RunWriter.h5` waits for the queue
to empty first; an error of a queued job (a full disk) is raised on the
simulation's thread at its next write, wait or close. With
``flush_every_s=0`` every job is waited for (the file is current after every
record). A kill loses what was still queued, which is never more than what
the last checkpoint file (below) does not cover.

A kill (SIGKILL, power cut) in the middle of an HDF5 write can leave the
``.part`` damaged beyond repair, so the ``.part`` is never trusted on resume:
every checkpoint is also copied into a separate checkpoint file, atomically
and with a checksum (:mod:`abm.io.checkpoint`), and a resume rebuilds the
``.part`` from the newest checkpoint file that verifies, then continues. The
copy costs one read and write of the ``.part`` per checkpoint (the final one
excepted); it doubles the disk space a run needs while it runs.
"""

from __future__ import annotations

import copy
import json
import os
import queue
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np

from abm.cells import COLUMNS, DEAD, CellTable
from abm.errors import FileFormatError
from abm.io import checkpoint as ck
from abm.io.h5file import is_disk_full, open_output, open_run_file, part_path, storage_error
from abm.io.provenance import provenance_attrs, utc_now
from abm.io.schema import (GRADE_FILL, SCHEMA_VERSION, TIME_ATTRS, TIME_UNITS, cell_flag_attrs,
                           cf_units, compact_copy, create_coordinate, create_dimension,
                           create_variable, delete_variable, describe, flag_attrs, is_grade)
from abm.model.fields import LONG_NAMES, SPECIES

class DamagedRunError(FileFormatError):
    """An interrupted run's ``.part`` cannot be resumed and no checkpoint file can rebuild it."""


_INT_FILL = np.int64(-9223372036854775806)   # netCDF default int64 fill
_EVENT_FIELDS = ("time", "kind", "kind_code", "grade", "detail")


def _dtype_of(key: str, value) -> np.dtype:
    if is_grade(key) and isinstance(value, (int, float, np.integer, np.floating)):
        return np.dtype(np.int8)
    if isinstance(value, (bool, np.bool_)):
        return np.dtype(np.int8)
    if isinstance(value, (int, np.integer)):
        return np.dtype(np.int64)
    if isinstance(value, (float, np.floating)):
        return np.dtype(np.float64)
    raise TypeError(f"record_row() key {key!r} has a value of type {type(value).__name__}; "
                    "time-series values must be numbers")


def _append(dsid, start: int, values: np.ndarray) -> None:
    """Write ``values`` at ``start`` along axis 0 of a dataset, growing it (low-level API:
    a fraction of the overhead of ``ds.resize`` plus ``ds[...] = values``)."""
    values = np.ascontiguousarray(values)
    dsid.set_extent((start + values.shape[0],) + values.shape[1:])
    fspace = dsid.get_space()
    fspace.select_hyperslab((start,) + (0,) * (values.ndim - 1), values.shape)
    dsid.write(h5py.h5s.create_simple(values.shape), fspace, values)


def _ts_entry(ds: h5py.Dataset):
    return ds.id, ds.dtype, ds.fillvalue


def _as_grades(key: str, values) -> np.ndarray:
    """Grades (numbers, NaN: not recorded) as int8 with :data:`GRADE_FILL`; a grade that is
    not a whole number from 0 to 5 is an error, not a silent truncation."""
    v = np.asarray(values, dtype=np.float64)
    missing = np.isnan(v)
    ok = v[~missing]
    if ok.size and (np.any(ok != np.round(ok)) or ok.min() < 0 or ok.max() > 5):
        raise TypeError(f"record key {key!r} is a grade but has values outside 0..5 "
                        "or not whole numbers")
    return np.where(missing, GRADE_FILL, v).astype(np.int8)


def _fill_for(key: str, dtype: np.dtype):
    if dtype.kind == "f":
        return np.nan
    return GRADE_FILL if is_grade(key) else _INT_FILL.astype(dtype)


def _process_meta(sim) -> dict:
    meta: dict = {}
    for p in sim.processes:
        meta.update(getattr(p, "meta", {}) or {})
    return meta


#: Types whose values cannot change (a copy may share them).
_IMMUTABLE = (int, float, str, bool, type(None), np.generic)


def _frozen(value):
    """A copy of ``value`` that later changes of the simulation do not reach."""
    if isinstance(value, _IMMUTABLE):
        return value
    if isinstance(value, np.ndarray):
        return value.copy()
    if type(value) is dict and all(isinstance(v, _IMMUTABLE) for v in value.values()):
        return dict(value)   # (the scalars: ~20x faster than deepcopy)
    if type(value) is list and all(type(v) is tuple and all(isinstance(x, _IMMUTABLE) for x in v)
                                   for v in value):
        return list(value)   # (the event log)
    if isinstance(value, CellTable):
        table = CellTable.__new__(CellTable)
        for k, v in vars(value).items():
            if k in COLUMNS:
                setattr(table, k, v[: value.n].copy())
            elif k != "occ":   # occupancy is rebuilt on restore, never stored
                setattr(table, k, copy.deepcopy(v))
        return table
    return copy.deepcopy(value)


def frozen_state(state) -> SimpleNamespace:
    """What :func:`abm.io.checkpoint.save_state` stores of ``state``, copied now."""
    return SimpleNamespace(**{name: _frozen(value) for name, value in vars(state).items()
                              if name not in ck.NOT_STORED})


class _WriterThread:
    """Runs a writer's file jobs in order on one background thread.

    At most ``max_pending`` jobs wait in the queue (a job holds copies of
    arrays: a writer thread that falls behind makes the simulation wait
    instead of filling memory). The first error of a job is kept and raised
    by :meth:`submit`, :meth:`wait` and :meth:`check`; later jobs are skipped.
    """

    def __init__(self, max_pending: int = 8, inline: bool = False):
        #: run each job at once on the caller's thread instead (no thread is started)
        self.inline = bool(inline)
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        #: wall seconds the thread spent running jobs
        self.busy_s = 0.0

    def submit(self, fn, *args) -> None:
        self.check()
        if self.inline:   # errors are raised here, as a plain call's are
            t0 = time.perf_counter()
            fn(*args)
            self.busy_s += time.perf_counter() - t0
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="abm-writer", daemon=True)
            self._thread.start()
        self._queue.put((fn, args))

    def wait(self) -> None:
        """Block until every queued job has run; raise the error of a failed one."""
        if self._thread is not None:
            self._queue.join()
        self.check()

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Let the queued jobs run, then end the thread (a later submit starts a new one)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    t0 = time.perf_counter()
                    fn, args = item
                    fn(*args)
                    self.busy_s += time.perf_counter() - t0
            except BaseException as exc:  # noqa: BLE001 - raised on the simulation's thread
                self._error = exc
            finally:
                self._queue.task_done()


class RunWriter:
    """Writes one run's HDF5 file.

    Args:
        path: final file name (``.h5``); it is written as ``<path>.part``.
        sim: the simulation.
        keep_checkpoints: keep every checkpoint (any of them can be restarted
            from later) instead of only the latest.
        flush_every_s: wall seconds between time-series block writes (0:
            write and flush every record).
        write_thread: write on a writer thread (True), or on the simulation's
            thread (False: no gain in wall time where no core is free, e.g. a
            batch with one worker per core, and no cost for handing over).
    """

    def __init__(self, path, sim, *, keep_checkpoints: bool = False, flush_every_s: float = 10.0,
                 write_thread: bool = True):
        self.path = Path(path)
        self.tmp = part_path(self.path)
        self.sim = sim
        self.keep_checkpoints = bool(keep_checkpoints)
        self.flush_every_s = float(flush_every_s)
        self._h5: h5py.File | None = None
        self._io = _WriterThread(inline=not write_thread)
        self.level = int(sim.config.output.compression)
        self.meta = _process_meta(sim)
        self.n_time = 0          # time-series rows on disk
        self.n_snapshots = 0     # snapshots taken
        self.n_obs = 0           # cell rows on disk
        self.n_events = 0        # events on disk
        self._rows: list[dict] = []
        self._events_taken = 0   # events handed to the writer thread
        self._ts: dict | None = None
        self._ids: dict = {}
        self._last_flush = time.perf_counter()
        self._write_s = 0.0
        self.record_s = 0.0      # wall seconds in Simulation.record_row (model, not I/O)

    @property
    def h5(self) -> h5py.File | None:
        """The open file, once the writer thread has written everything queued."""
        self._io.wait()
        return self._h5

    @h5.setter
    def h5(self, value: h5py.File | None) -> None:
        self._io.wait()
        self._h5 = value

    # -- create ---------------------------------------------------------------
    def create(self) -> "RunWriter":
        """Start ``<path>.part`` (overwriting one left by an earlier run)."""
        t0 = time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ck.remove_checkpoint_files(self.path)   # of an earlier run of the same name
        try:
            # file format 1.10 (readable by HDF5 >= 1.10, netCDF-C included): compact
            # chunk indexes, ~5x less metadata per variable than the 1.8 format
            self.h5 = h5py.File(self.tmp, "w", libver=("v110", "v110"))
        except OSError as exc:
            if is_disk_full(exc):
                raise storage_error(exc, self.tmp) from None
            raise FileFormatError(f"{self.tmp}: cannot be created ({exc})") from None
        sim, h5 = self.sim, self.h5
        for k, v in provenance_attrs(sim.config, sim.seed).items():
            h5.attrs[k] = v
        h5.attrs["keep_checkpoints"] = np.int8(self.keep_checkpoints)
        self._create_timeseries(h5.create_group("timeseries"))
        self._create_fields(h5.create_group("fields"))
        self._create_cells(h5.create_group("cells"))
        self._create_events(h5.create_group("events"))
        g = h5.create_group("endpoints")
        g.attrs["description"] = "per-run endpoints (written when the run completes)"
        g = h5.create_group("checkpoint")
        g.attrs["description"] = ("complete simulation state at step N in step_<N> "
                                  "(abm.io.checkpoint); restart with 'abm run --resume'")
        h5.flush()
        self._write_s += time.perf_counter() - t0
        return self

    def _create_timeseries(self, g):
        g.attrs["description"] = "one record every run.record_every_min (Simulation.record_row)"
        create_coordinate(g, "time", dtype=np.float64, growable=True, maxlen=self._n_records(),
                          chunk=1024, compression=self.level, units=TIME_UNITS,
                          long_name=describe("time")[1], axis="T", **TIME_ATTRS)

    def _n_records(self) -> int:
        """Records of the whole run (bounds the time dimension: see create_dimension)."""
        r = self.sim.config.run
        return r.n_steps // r.every_steps(r.record_every_min) + 1

    def _n_snapshot_max(self) -> int:
        r = self.sim.config.run
        return r.n_steps // r.every_steps(r.snapshot_every_h * 60.0) + 1

    def _spatial(self, g):
        lat = self.sim.state.lattice
        dims = lat.axis_names
        # no axis attribute: a tissue patch has no Earth axes (CF tools read X/Y as lon/lat)
        for name, n in zip(dims, lat.shape):
            if name == "patch":
                create_coordinate(g, name, np.arange(n), dtype=np.int32, units="1",
                                  long_name="index of the independent tissue patch")
                continue
            create_coordinate(g, name, (np.arange(n) + 0.5) * lat.h_um, dtype=np.float64,
                              units="um", long_name=f"{name} position of the site centre")
        return dims

    def _snapshot_coords(self, g):
        create_dimension(g, "snapshot", 0, maxlen=self._n_snapshot_max(), chunk=64)
        create_variable(g, "snapshot_time", ("snapshot",), np.float64, chunks=(64,),
                        units=TIME_UNITS, long_name="time of the snapshot (day relative to infusion)",
                        **TIME_ATTRS)
        create_variable(g, "snapshot_step", ("snapshot",), np.int64, chunks=(64,),
                        units="1", long_name="simulation step of the snapshot")

    def _create_fields(self, g):
        g.attrs["description"] = "cytokine fields every run.snapshot_every_h"
        dims = self._spatial(g)
        self._snapshot_coords(g)
        shape = self.sim.state.lattice.shape
        for name in SPECIES:
            create_variable(g, name, ("snapshot",) + dims, np.float32, chunks=(1,) + shape,
                            compression=self.level, units="pg/mL", long_name=LONG_NAMES[name],
                            coordinates="snapshot_time snapshot_step")

    def _create_cells(self, g):
        g.attrs["description"] = ("live cells every run.snapshot_every_h as CF contiguous ragged "
                                  "arrays: snapshot i holds obs rows sum(count[:i]) .. "
                                  "sum(count[:i+1])")
        n0 = int(np.count_nonzero(self.sim.state.cells.kind[: self.sim.state.cells.n] != DEAD))
        chunk = int(min(1 << 20, max(1024, 1 << max(0, n0 - 1).bit_length())))
        self._snapshot_coords(g)
        create_variable(g, "count", ("snapshot",), np.int64, chunks=(64,), units="1",
                        long_name="number of cells in the snapshot", sample_dimension="obs",
                        coordinates="snapshot_time snapshot_step")
        create_dimension(g, "obs", 0, chunk=chunk)
        flags = cell_flag_attrs()
        for name, (dtype, _, unit, doc) in COLUMNS.items():
            create_variable(g, name, ("obs",), dtype, chunks=(chunk,), compression=self.level,
                            units=cf_units(unit), long_name=doc, **flags.get(name, {}))
        lat = self.sim.state.lattice
        for name in lat.axis_names:
            if name == "patch":
                create_variable(g, name, ("obs",), np.int32, chunks=(chunk,),
                                compression=self.level, units="1",
                                long_name="index of the tissue patch holding the cell")
                continue
            create_variable(g, name, ("obs",), np.float32, chunks=(chunk,),
                            compression=self.level, units="um",
                            long_name=f"{name} position of the centre of the cell's site")

    def _create_events(self, g):
        g.attrs["description"] = "event log (clinical events, grades, interventions)"
        create_dimension(g, "event", 0, chunk=256)
        s = h5py.string_dtype()
        spec = [("time", np.float64, TIME_UNITS, "time of the event (day relative to infusion)",
                 TIME_ATTRS),
                ("kind", s, "1", "kind of event", {}),
                # flag_values/flag_meanings are added with the first event of each kind
                ("kind_code", np.int16, "1", "kind of event as a code (see flag_meanings)", {}),
                ("grade", np.int16, "1", "grade (ASTCT for CRS/ICANS; -1 if not graded)",
                 {"valid_min": np.int16(-1), "valid_max": np.int16(5)}),
                ("detail", s, "1", "free-text detail", {})]
        for name, dtype, units, long_name, attrs in spec:
            create_variable(g, name, ("event",), dtype, chunks=(256,), units=units,
                            long_name=long_name, **attrs)

    # -- triggers -------------------------------------------------------------
    def attach(self) -> "RunWriter":
        """Register record, snapshot and checkpoint writers on the simulation, in that order."""
        r = self.sim.config.run
        self.sim.add_writer(r.every_steps(r.record_every_min), self.record)
        self.sim.add_writer(r.every_steps(r.snapshot_every_h * 60.0), self.snapshot)
        self.sim.add_writer(r.every_steps(r.checkpoint_every_h * 60.0), self.checkpoint)
        return self

    # -- time series and events -------------------------------------------------
    def record(self, sim) -> None:
        """Buffer one time-series record; write the buffer when it is due."""
        t0 = time.perf_counter()
        self._rows.append(sim.record_row())
        self.record_s += time.perf_counter() - t0
        if self.flush_every_s <= 0 or time.perf_counter() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Write buffered records and new events, update progress attributes, flush."""
        t0 = time.perf_counter()
        self._submit(self._flush_job, *self._take_pending())
        self._last_flush = time.perf_counter()
        self._write_s += self._last_flush - t0

    def _submit(self, fn, *args) -> None:
        self._io.submit(fn, *args)
        if self.flush_every_s <= 0:
            self._io.wait()

    def _take_pending(self) -> tuple[list, list, int]:
        """The buffered records, the events not yet handed over, and the step (handed over now)."""
        rows, self._rows = self._rows, []
        st = self.sim.state
        events = getattr(st, "events", None) or []
        new = list(events[self._events_taken:])
        self._events_taken += len(new)
        return rows, new, int(st.step)

    def _flush_job(self, rows: list, events: list, step: int) -> None:
        self._write_rows(rows)
        self._write_events(events)
        self._update_progress(step)
        self._h5.flush()

    def _update_progress(self, step: int) -> None:
        self._h5.attrs["steps_done"] = np.int64(step)
        self._h5.attrs["days_simulated"] = step * self.sim.config.run.dt_min / 1440.0

    def _write_rows(self, rows: list) -> None:
        if not rows:
            return
        g = self._h5["timeseries"]
        if self._ts is None:   # (dataset id, dtype, fill) per variable, in file order
            self._ts = {k: _ts_entry(g[k]) for k in g}
        n, m = self.n_time, len(rows)
        for row in rows:
            for key in row:
                if key not in self._ts:
                    dtype = _dtype_of(key, row[key])
                    units, long_name = describe(key, self.meta)
                    fill = _fill_for(key, dtype)
                    ds = create_variable(g, key, ("time",), dtype, chunks=(1024,),
                                         compression=self.level, units=units,
                                         long_name=long_name, fillvalue=fill)
                    if is_grade(key):   # grades: a documented fill (floats get theirs)
                        ds.attrs["_FillValue"] = GRADE_FILL
                    ds.resize((n,))
                    self._ts[key] = _ts_entry(ds)
        # low-level writes: ~3x less overhead per variable than ds[n:] = values
        for key, (dsid, dtype, fill) in self._ts.items():
            values = np.array([row.get(key, fill) for row in rows])
            if is_grade(key) and dtype == np.int8:
                values = _as_grades(key, values)
            if values.dtype.kind not in ("fiub" if dtype.kind == "f" else "iub"):
                raise TypeError(f"record_row() key {key!r} has values of type {values.dtype}; "
                                f"its file variable is {dtype}")
            _append(dsid, n, values.astype(dtype))
        self.n_time = n + m

    def _write_events(self, new: list) -> None:
        if not new:
            return
        g = self._h5["events"]
        n, m = self.n_events, len(new)
        cols = list(zip(*[tuple(ev) for ev in new]))
        if len(cols) != 4:
            raise TypeError("state.events entries must be (time_day, kind, grade, detail) tuples")
        cols.insert(2, self._kind_codes(g["kind_code"], [str(k) for k in cols[1]]))
        g["event"].resize((n + m,))
        for name, values in zip(_EVENT_FIELDS, cols):
            ds = g[name]
            ds.resize((n + m,))
            if name in ("kind", "detail"):
                values = [str(v) for v in values]
                ds[n:] = np.array(values, dtype=object)
            else:
                ds[n:] = np.asarray(values, dtype=ds.dtype)
        self.n_events = n + m

    @staticmethod
    def _kind_codes(ds: h5py.Dataset, kinds: list[str]) -> list[int]:
        """Codes of event kinds, adding new kinds to the variable's flag table (codes in
        order of first occurrence; the table is read back from the file on resume)."""
        meanings = str(ds.attrs.get("flag_meanings", "")).split()
        codes = {m: i for i, m in enumerate(meanings)}
        for k in kinds:
            word = "_".join(k.split()) or "unnamed"
            if word not in codes:
                codes[word] = len(codes)
        if len(codes) != len(meanings):
            for k, v in flag_attrs(codes, np.int16).items():
                ds.attrs[k] = v
        return [codes["_".join(k.split()) or "unnamed"] for k in kinds]

    # -- snapshots ---------------------------------------------------------------
    def snapshot(self, sim) -> None:
        """Write the fields and live cells of the current step, then flush."""
        t0 = time.perf_counter()
        st, out = sim.state, sim.config.output
        snap = {"time": st.time_day, "step": st.step}
        if out.fields:
            snap["fields"] = st.fields.astype(np.float32)
        if out.cells:
            cells = st.cells
            live = np.flatnonzero(cells.kind[: cells.n] != DEAD)
            # (fancy indexing copies: later steps do not change them)
            snap["cells"] = {name: getattr(cells, name)[live].astype(dtype, copy=False)
                             for name, (dtype, *_) in COLUMNS.items()}
        self._submit(self._snapshot_job, snap)
        self._write_s += time.perf_counter() - t0
        self.flush()

    def _snapshot_job(self, snap: dict) -> None:
        i = self.n_snapshots
        if "fields" in snap:
            self._append_snapshot_coords("fields", i, snap)
            for k, name in enumerate(SPECIES):
                _append(self._id(f"fields/{name}"), i, snap["fields"][k][None])
        if "cells" in snap:
            self._append_snapshot_coords("cells", i, snap)
            cols = snap["cells"]
            m, n = len(cols["id"]), self.n_obs
            _append(self._id("cells/count"), i, np.array([m], dtype=np.int64))
            self._id("cells/obs").set_extent((n + m,))
            for name in COLUMNS:
                _append(self._id(f"cells/{name}"), n, cols[name])
            lat = self.sim.state.lattice   # geometry: never changes during a run
            zyx = lat.coords(cols["site"])
            names = lat.axis_names
            for j, name in enumerate(names, start=3 - len(names)):
                pos = zyx[:, j].astype(np.int32) if name == "patch" else \
                    ((zyx[:, j] + 0.5) * lat.h_um).astype(np.float32)
                _append(self._id(f"cells/{name}"), n, pos)
            self.n_obs = n + m
        self.n_snapshots = i + 1

    def _id(self, path: str):
        """Low-level id of a dataset (cached)."""
        dsid = self._ids.get(path)
        if dsid is None:
            dsid = self._ids[path] = self._h5[path].id
        return dsid

    def _append_snapshot_coords(self, group: str, i: int, snap: dict) -> None:
        self._id(f"{group}/snapshot").set_extent((i + 1,))
        _append(self._id(f"{group}/snapshot_time"), i, np.array([snap["time"]], dtype=np.float64))
        _append(self._id(f"{group}/snapshot_step"), i, np.array([snap["step"]], dtype=np.int64))

    # -- checkpoints ---------------------------------------------------------------
    def checkpoint(self, sim, *, final: bool = False, interrupt: bool = False) -> None:
        """Write ``/checkpoint/step_<N>`` (complete state), then drop older ones unless kept;
        then copy the ``.part`` into a checkpoint file (but for the run's last step).

        ``interrupt``: a checkpoint taken because the run was stopped (SIGINT,
        SIGTERM) off the checkpoint schedule; a resume removes it from the
        file after restoring it, so the finished file equals an uninterrupted one.

        A checkpoint that stays in the finished file (``final``, or all of them
        with ``keep_checkpoints``) is gzip-compressed (level 1); the others are
        written raw: they are replaced a day later, and compressing ~3 MB of
        state costs ~25 ms against ~5 ms raw (default 128x128 patch).
        """
        t0 = time.perf_counter()
        rows, events, step = self._take_pending()
        st = sim.state
        info = {"step": step, "seed": int(sim.seed), "time_day": st.time_day,
                "kept": final or self.keep_checkpoints or step >= sim.n_steps,
                "file": not final and step < sim.n_steps, "interrupt": interrupt}
        self._submit(self._checkpoint_job, rows, events, frozen_state(st), info)
        if interrupt:   # the run stops here: its errors belong to this call
            self._io.wait()
        self._last_flush = time.perf_counter()
        self._write_s += self._last_flush - t0

    def _checkpoint_job(self, rows: list, events: list, state, info: dict) -> None:
        self._write_rows(rows)
        self._write_events(events)
        h5, step = self._h5, info["step"]
        ckg = h5["checkpoint"]
        name = ck.checkpoint_name(step)
        if name in ckg:
            del ckg[name]
        g = ckg.create_group(name)
        g.attrs.update({
            "step": np.int64(step), "seed": np.int64(info["seed"]), "time_day": info["time_day"],
            "schema_version": np.int32(SCHEMA_VERSION),
            "n_time": np.int64(self.n_time), "n_snapshots": np.int64(self.n_snapshots),
            "n_obs": np.int64(self.n_obs), "n_events": np.int64(self.n_events),
            "timeseries_keys": json.dumps(list(h5["timeseries"])),
            "created": utc_now(),
        })
        ck.save_state(g.create_group("state"), state,
                      compression=1 if info["kept"] and self.level else 0)
        self._update_progress(step)
        h5.flush()                      # the data are on disk before they are marked
        g.attrs["complete"] = np.int8(1)
        if info["interrupt"]:
            g.attrs["interrupt"] = np.int8(1)
        if not self.keep_checkpoints:
            for other in [k for k in ckg if k != name]:
                del ckg[other]
        h5.flush()
        if info["file"]:
            ck.write_checkpoint_file(self.tmp, self.path, step)

    # -- finish ----------------------------------------------------------------------
    def finish(self, timings: dict | None = None) -> Path:
        """Write endpoints, wall times and ``complete = 1``; compact into ``path``.

        The ``.part`` is closed complete, then copied into a compact file (no
        space left over from replaced checkpoints and rewritten chunks; chunks
        are copied as stored, not recompressed), which is renamed to ``path``;
        the ``.part`` is removed last.
        """
        t0 = time.perf_counter()
        sim = self.sim
        self.flush()
        if ck.checkpoint_name(sim.state.step) not in self.h5["checkpoint"]:
            self.checkpoint(sim, final=True)
        self._io.wait()
        self._io.stop()
        self._write_endpoints()
        h5, self._h5 = self._h5, None
        a = h5.attrs
        a["finished"] = utc_now()
        a["complete"] = np.int8(1)
        h5.close()
        tmp2 = self.path.with_name(self.path.name + ".compact")
        compact_copy(self.tmp, tmp2)
        timings = dict(timings or {})
        dt = time.perf_counter() - t0
        for k in ("wall_write_s", "wall_total_s"):
            if k in timings:
                timings[k] += dt
        with h5py.File(tmp2, "r+") as f:
            for k, v in timings.items():
                f.attrs[k] = v
        os.replace(tmp2, self.path)
        self.tmp.unlink()
        ck.remove_checkpoint_files(self.path)
        return self.path

    def _write_endpoints(self) -> None:
        g = self.h5["endpoints"]
        for k in list(g):
            del g[k]
        sim = self.sim
        values = sim.endpoints() if hasattr(sim, "endpoints") else {
            f"final_n_{k}": v for k, v in sim.state.counts().items()}
        for key, v in values.items():
            units, long_name = describe(key, self.meta)
            if isinstance(v, str):
                ds = g.create_dataset(key, data=v, dtype=h5py.string_dtype())
            elif is_grade(key) and _dtype_of(key, v) == np.int8:
                ds = g.create_dataset(key, data=_as_grades(key, v), fillvalue=GRADE_FILL)
                ds.attrs["_FillValue"] = GRADE_FILL
            else:
                ds = g.create_dataset(key, data=np.asarray(v, dtype=_dtype_of(key, v)))
            ds.attrs["units"] = units
            ds.attrs["long_name"] = long_name

    def close(self, *, quiet: bool = False) -> None:
        """Close without completing (the ``.part`` stays, resumable); queued writes are
        finished first.

        ``quiet``: ignore an error while closing (after a failed write, e.g. a
        full disk; the checkpoint files, not the ``.part``, are what a resume uses).
        """
        error = None
        try:
            self._io.wait()
        except BaseException as exc:  # noqa: BLE001 - raised below unless quiet
            error = exc
        self._io.stop()
        if self._h5 is not None:
            h5, self._h5 = self._h5, None
            try:
                h5.close()
            except Exception as exc:  # noqa: BLE001
                error = error or exc
        if error is not None and not quiet:
            raise error

    @property
    def write_s(self) -> float:
        """Wall seconds the simulation's thread spent writing (creation, handing over blocks,
        snapshots and checkpoints, waiting for the writer thread, the final write)."""
        return self._write_s

    @property
    def background_s(self) -> float:
        """Wall seconds the writer thread spent on the file while the simulation ran (0 with
        ``write_thread=False``: that time is then part of :attr:`write_s`)."""
        return 0.0 if self._io.inline else self._io.busy_s

    # -- resume ------------------------------------------------------------------------
    @classmethod
    def resume(cls, path, *, from_step: int | None = None, processes=None,
               flush_every_s: float = 10.0, check_config=None, log=None, write_thread: bool = True):
        """Rebuild an interrupted run's ``<path>.part`` and continue from a checkpoint.

        The ``.part`` is rebuilt from the newest checkpoint file that verifies
        (see :mod:`abm.io.checkpoint`); whatever it held after that checkpoint
        is dropped. Without a checkpoint file (a file of an older abm) the
        ``.part`` itself is used. If there is neither but the completed
        ``path`` exists, it is copied to ``.part`` first, so a finished run can
        be re-run from any of its checkpoints (with ``keep_checkpoints`` all
        are kept).

        Every group is truncated to its length at the checkpoint, checkpoints
        after it and the endpoints are removed, and the state is restored.

        ``check_config(stored_config, part_path)`` may refuse (raise) before
        anything is changed. ``log``: callable for one-line notes.

        Raises:
            DamagedRunError: the ``.part`` cannot be resumed and there is no
                checkpoint file to rebuild it from.

        Returns:
            ``(writer, sim)``; ``sim`` is at the checkpoint's step with the
            writer not yet attached.
        """
        path = Path(path)
        tmp = part_path(path)
        found = ck.latest_checkpoint_file(path, log)
        if found is not None and from_step is not None and from_step > found[0]:
            found = None   # a later checkpoint kept in the .part (keep_checkpoints)
        copied = False
        if found is not None:
            source = found[1]
            if check_config is not None:   # refuse before the .part is replaced
                with open_output(source, "r") as h5:
                    check_config(ck.config_from_file(h5, source), tmp)
            ck.restore_part_from(source, tmp)
        elif not tmp.exists():
            if not path.exists():
                raise FileFormatError(f"{tmp}: no interrupted run to resume (and no {path.name})")
            shutil.copyfile(path, tmp)
            copied = True
        h5 = None
        try:
            try:
                h5 = open_run_file(tmp, "r+")
                config = ck.config_from_file(h5, tmp)
            except FileFormatError as exc:
                if "corrupted" in str(exc) or "not closed cleanly" in str(exc):
                    raise DamagedRunError(str(exc)) from None
                raise
            except (RuntimeError, KeyError, ValueError, OSError) as exc:
                # HDF5 errors of a .part killed in the middle of its first writes (its root
                # object header or the stored config): nothing in it can be trusted
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise DamagedRunError(f"{tmp}: cannot be opened ({first[:160]})") from None
            if check_config is not None:
                check_config(config, tmp)
            try:
                sim, g = ck.restore_simulation(h5, tmp, from_step, config, processes)
                writer = cls(path, sim, keep_checkpoints=bool(h5.attrs.get("keep_checkpoints", 0)),
                             flush_every_s=flush_every_s, write_thread=write_thread)
                writer.h5 = h5
                writer._truncate_to(g)
            except (RuntimeError, KeyError, ValueError, OSError, ck.CheckpointError) as exc:
                # HDF5 errors of a file damaged by a kill in the middle of a write, or a
                # .part killed before its first checkpoint
                if isinstance(exc, ck.CheckpointError) and (found is not None
                                                            or from_step is not None):
                    raise
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise DamagedRunError(f"{tmp}: cannot be resumed and there is no checkpoint "
                                      f"file to rebuild it from ({first[:160]})") from None
        except BaseException:
            if h5 is not None:
                try:
                    h5.close()
                except Exception:  # noqa: BLE001 - already failing
                    pass
            if copied:
                tmp.unlink(missing_ok=True)
            raise
        return writer, sim

    def _truncate_to(self, g: h5py.Group) -> None:
        step = int(g.attrs["step"])
        h5 = self.h5
        if step == 0:   # the writers fire again at step 0
            sizes = dict(n_time=0, n_snapshots=0, n_obs=0, n_events=0)
            keys = list(h5["timeseries"])
        else:
            sizes = {k: int(g.attrs[k]) for k in ("n_time", "n_snapshots", "n_obs", "n_events")}
            keys = json.loads(g.attrs["timeseries_keys"])
        self.n_time, self.n_snapshots = sizes["n_time"], sizes["n_snapshots"]
        self.n_obs, self.n_events = sizes["n_obs"], sizes["n_events"]
        self._events_taken = self.n_events
        ts = h5["timeseries"]
        for k in [k for k in ts if k not in keys]:
            delete_variable(ts, k)
        _resize_dims(ts, {"time": self.n_time})
        _resize_dims(h5["fields"], {"snapshot": self.n_snapshots if self.sim.config.output.fields
                                    else 0})
        _resize_dims(h5["cells"], {"snapshot": self.n_snapshots if self.sim.config.output.cells
                                   else 0, "obs": self.n_obs})
        _resize_dims(h5["events"], {"event": self.n_events})
        ckg = h5["checkpoint"]
        for name in list(ckg):
            later = not name.startswith(ck.PREFIX) or int(name[len(ck.PREFIX):]) > step
            # an interrupt checkpoint is off the schedule: its checkpoint file holds it
            if (later or step == 0 or int(ckg[name].attrs.get("complete", 0)) != 1
                    or int(ckg[name].attrs.get("interrupt", 0)) == 1):
                del ckg[name]
        for k in list(h5["endpoints"]):
            del h5["endpoints"][k]
        restarts = json.loads(h5.attrs.get("restarts", "[]"))
        restarts.append({"from_step": step, "at": utc_now()})
        h5.attrs["restarts"] = json.dumps(restarts)
        if "history" in h5.attrs:
            h5.attrs["history"] = f"{h5.attrs['history']}\n{restarts[-1]['at']} resumed from step {step}"
        h5.attrs["complete"] = np.int8(0)
        h5.attrs["finished"] = ""
        h5.attrs["steps_done"] = np.int64(step)
        h5.attrs["days_simulated"] = step * self.sim.config.run.dt_min / 1440.0
        h5.flush()


def _resize_dims(g: h5py.Group, sizes: dict[str, int]) -> None:
    """Resize every dataset of ``g`` along each axis whose dimension is in ``sizes``."""
    for name, ds in g.items():
        if not isinstance(ds, h5py.Dataset):
            continue
        if name in sizes:
            ds.resize((sizes[name],))
            continue
        for axis in range(ds.ndim):
            scales = ds.dims[axis].values()
            dim = scales[0].name.rsplit("/", 1)[-1] if scales else None
            if dim in sizes:
                ds.resize(sizes[dim], axis=axis)
