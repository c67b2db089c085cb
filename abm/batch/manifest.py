"""The batch manifest: ``<batch folder>/manifest.csv``, one row per run.

Written only by the process that drives the batch, always atomically (a
temporary file in the same folder, fsync, rename), so a kill at any moment
leaves either the previous or the new manifest, never a torn one.

Columns (then one column per varied parameter path, e.g.
``patient.tumour_burden_cells``; lists as JSON text):

=============== ===========================================================
run_id          ``<batch>_<index>``; the file is ``<run_id>.h5``
index           run index (0-based)
sweep_point     sweep point index (0 without a sweep)
member          virtual patient index (0 without a population)
draw            posterior draw index (only in batches with ``[batch.posterior]``;
                written after ``member``)
replicate       replicate index
seed            run seed
status          pending, running, done or failed
attempts        how many times the run was started
error           one line: why it failed (or was interrupted)
duration_s      wall seconds of the last attempt
cpu_s           CPU seconds of the worker process during the run (all its threads)
file            file name (relative to the batch folder)
started         UTC time the last attempt started (ISO 8601)
finished        UTC time it ended
worker          host:pid of the worker that ran it
config_hash     hash of the run's config tables (changes if the batch file does)
=============== ===========================================================
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import time
from pathlib import Path

from abm.errors import AbmError

MANIFEST = "manifest.csv"
STATUSES = ("pending", "running", "done", "failed")
COLUMNS = ("run_id", "index", "sweep_point", "member", "replicate", "seed", "status",
           "attempts", "error", "duration_s", "cpu_s", "file", "started", "finished", "worker",
           "config_hash")
#: Column of the posterior draw, present only when the batch has posterior draws.
DRAW = "draw"
_INT = ("index", "sweep_point", "member", DRAW, "replicate", "seed", "attempts")
_REQUIRED = ("run_id", "index", "seed", "status", "config_hash")


class ManifestError(AbmError):
    """A batch manifest cannot be read (not CSV, columns missing, bad values)."""


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return str(v)


def one_line(text: str, limit: int = 500) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


class Manifest:
    """Rows by run index, with atomic save.

    Args:
        folder: the batch folder.
        params: varied parameter paths (extra columns).
        draws: write the ``draw`` column (a batch with posterior draws).
    """

    def __init__(self, folder, params=(), draws: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST
        self.params = list(params)
        self.draws = bool(draws)
        self.rows: dict[int, dict] = {}
        self._saved_at = 0.0
        self._save_cost = 0.0
        self._dirty = False

    @classmethod
    def from_specs(cls, folder, specs, params) -> "Manifest":
        specs = list(specs)
        m = cls(folder, params, draws=any(getattr(s, "draw", None) is not None for s in specs))
        for s in specs:
            m.add(s)
        return m

    def add(self, spec) -> None:
        row = {"run_id": spec.run_id, "index": spec.index, "sweep_point": spec.sweep_point,
               "member": spec.member, "replicate": spec.replicate, "seed": spec.seed,
               "status": "pending", "attempts": 0, "error": "", "duration_s": "", "cpu_s": "",
               "file": f"{spec.run_id}.h5", "started": "", "finished": "", "worker": "",
               "config_hash": spec.config_hash}
        if self.draws:
            row[DRAW] = spec.draw
        for p in self.params:
            row[p] = spec.params.get(p, "")
        self.rows[spec.index] = row
        self._dirty = True

    @classmethod
    def load(cls, folder) -> "Manifest":
        """Read ``folder/manifest.csv`` (integers typed, the rest as text).

        Raises:
            ManifestError: one line naming the file and what is wrong with it.
        """
        m = cls(folder)

        def bad(what: str) -> ManifestError:
            return ManifestError(f"{m.path}: {what}; restore it, or delete it and resume "
                                 "(finished run files are adopted)")

        try:
            with open(m.path, newline="", encoding="utf-8") as fh:
                text = fh.read()
        except UnicodeDecodeError as exc:
            raise bad(f"not a text CSV file (undecodable byte at offset {exc.start})") from None
        except OSError as exc:
            raise ManifestError(f"{m.path}: cannot be read ({exc.strerror or exc})") from None
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            names = reader.fieldnames or []
            missing = [c for c in _REQUIRED if c not in names]
            if missing:
                raise bad(f"no {', '.join(missing)} column{'s' if len(missing) > 1 else ''} "
                          "(not a manifest written by abm batch, or damaged)")
            m.params = [c for c in names if c not in COLUMNS and c != DRAW]
            m.draws = DRAW in names
            for raw in reader:
                line = reader.line_num
                row = dict(raw)
                for k in _INT:
                    if row.get(k) not in (None, ""):
                        try:
                            row[k] = int(row[k])
                        except (TypeError, ValueError):
                            raise bad(f"line {line}: {k} {row[k]!r} is not an integer") from None
                for k in ("duration_s", "cpu_s"):
                    if row.get(k):
                        try:
                            row[k] = float(row[k])
                        except (TypeError, ValueError):
                            raise bad(f"line {line}: {k} {row[k]!r} is not a number") from None
                if row.get("index") in (None, ""):
                    raise bad(f"line {line}: no run index")
                if row.get("status") not in STATUSES:
                    raise bad(f"line {line}: status {row.get('status')!r} is not one of "
                              f"{', '.join(STATUSES)}")
                if row["index"] in m.rows:
                    raise bad(f"line {line}: run index {row['index']} appears twice")
                m.rows[row["index"]] = row
        except csv.Error as exc:
            raise bad(f"not a valid CSV file ({exc})") from None
        return m

    def update(self, index: int, **fields) -> None:
        row = self.rows[index]
        for k, v in fields.items():
            row[k] = one_line(v) if k == "error" and v else v
        self._dirty = True

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for r in self.rows.values():
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    @property
    def columns(self) -> list[str]:
        cols = list(COLUMNS)
        if self.draws:
            cols.insert(cols.index("member") + 1, DRAW)
        return cols + self.params

    def text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        cols = self.columns
        w.writerow(cols)
        for i in sorted(self.rows):
            row = self.rows[i]
            w.writerow([_cell(row.get(c)) for c in cols])
        return buf.getvalue()

    def save(self) -> Path:
        """Write atomically: ``.manifest.csv.tmp`` + fsync + rename.

        On a full disk (no room for the copy) the manifest is rewritten in
        place instead, in the blocks it already has, so that it never keeps
        saying ``running`` for runs that ended.
        """
        t0 = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{MANIFEST}.tmp"
        text = self.text()
        try:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)   # a full disk keeps no half-written copy
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not self._save_in_place(text):
                raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        now = time.monotonic()
        self._save_cost = now - t0
        self._saved_at = now
        self._dirty = False
        return self.path

    def _save_in_place(self, text: str) -> bool:
        try:
            with open(self.path, "r+", encoding="utf-8", newline="") as fh:
                fh.write(text)
                fh.truncate()
                fh.flush()
                os.fsync(fh.fileno())
            return True
        except OSError:
            return False

    def maybe_save(self, min_interval_s: float = 0.5) -> None:
        """Save if something changed and the last save is older than ``min_interval_s``
        (or 20 times the last save's duration, so a huge manifest costs <= 5 %)."""
        interval = max(min_interval_s, 20.0 * self._save_cost)
        if self._dirty and time.monotonic() - self._saved_at >= interval:
            self.save()


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["Manifest", "ManifestError", "MANIFEST", "COLUMNS", "DRAW", "STATUSES", "one_line",
           "write_atomic"]
