"""Drive a batch: plan, execute on an executor, record every run in the manifest, resume.

Folder layout (``<out>/<batch name>/``, ``out`` defaulting to the base
config's ``output.dir``)::

    manifest.csv         one row per run (see abm.batch.manifest)
    batch.toml           the resolved batch (loadable; root seed recorded)
    <run_id>.h5          one file per finished run
    <run_id>.h5.part     a run in progress or interrupted (resumable)

Only this process writes the manifest (atomically, at most every 0.5 s while
runs finish, and at the end). A run's outcome is one of:

* ``done``: its file is complete;
* ``failed``: its config did not validate (a bad draw) or it raised; the
  error text is recorded and the batch goes on;
* ``pending`` with error "interrupted ...": Ctrl-C stopped it; its ``.part``
  is kept.

Resume (``resume=True``): runs that are ``done`` with a complete file are
skipped; a complete file whose row is not ``done`` (the batch was killed
after the worker finished) is checked (complete flag, seed, config) and
adopted; every other run is started again, continuing its ``.part`` from the
last checkpoint when there is one. The runs present in the manifest must
still have the same configs (the batch file may only grow, e.g. more
replicates).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from abm.batch.config import BatchConfig, load_batch
from abm.batch.expand import RunSpec, expand_batch
from abm.batch.lock import BatchLock
from abm.batch.manifest import MANIFEST, Manifest, one_line, write_atomic
from abm.batch.tomlio import batch_toml
from abm.errors import AbmError
from abm.io.h5file import storage_error
from abm.logs import Say

_log = logging.getLogger(__name__)

BATCH_TOML = "batch.toml"
#: Config keys that may differ between a run's file and its spec (no effect on results).
_MAY_DIFFER = (("run", "threads"), ("output", "dir"))


@dataclass
class BatchResult:
    """What :func:`run_batch` did.

    Attributes:
        folder: the batch folder; manifest: its manifest file.
        n_runs: runs in the batch.
        done, failed, pending: runs in each state in the manifest now.
        attempted: runs started (or failed validation) in this call.
        skipped: runs already done (resume); adopted: complete files adopted.
        interrupted: Ctrl-C stopped the batch.
        failures: ``(run_id, error)`` of the runs that failed in this call.
        wall_s: wall time of the execution phase.
        finished: runs that completed (done) in this call.
    """

    folder: Path
    manifest: Path
    n_runs: int
    done: int = 0
    failed: int = 0
    pending: int = 0
    attempted: int = 0
    finished: int = 0
    skipped: int = 0
    adopted: int = 0
    interrupted: bool = False
    failures: list = field(default_factory=list)
    wall_s: float = 0.0
    executor: str = ""

    @property
    def runs_per_min(self) -> float:
        return 60.0 * self.finished / self.wall_s if self.wall_s > 0 else 0.0


def _utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def batch_folder(batch: BatchConfig, out=None) -> Path:
    """``<out>/<batch.name>``; ``out`` defaults to the base config's ``output.dir``."""
    base = Path(out) if out is not None else Path(batch.base_config().output.dir)
    return base / batch.name


def _saved_root_seed(folder: Path) -> int | None:
    path = folder / BATCH_TOML
    if not path.exists():
        return None
    try:
        return load_batch(path).params.root_seed
    except AbmError:
        return None


def file_complete(path: Path, seed: int, spec: RunSpec | None = None) -> bool:
    """True if ``path`` is a finished run file of ``seed`` (and, given ``spec``, its config)."""
    import h5py
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as h5:
            a = h5.attrs
            if int(a.get("complete", 0)) != 1 or int(a.get("seed", -1)) != int(seed):
                return False
            if spec is None:
                return True
            stored = json.loads(a["config_json"])
        expected = spec.resolve().to_dict()
        for sec, key in _MAY_DIFFER:
            stored.get(sec, {}).pop(key, None)
            expected.get(sec, {}).pop(key, None)
        return stored == expected
    except Exception:  # noqa: BLE001 - unreadable or foreign file: not complete
        return False


def select_runs(only, specs: list[RunSpec]) -> set[int]:
    """Run indices from ``only``: ints, run ids, or text like ``"3,5,8-11,trial_00002"``."""
    if only is None:
        return None
    items = only.split(",") if isinstance(only, str) else list(only)
    by_id = {s.run_id: s.index for s in specs}
    n = len(specs)
    out: set[int] = set()
    for item in items:
        tok = str(item).strip()
        if not tok:
            continue
        m = re.fullmatch(r"(\d+)-(\d+)", tok)
        if isinstance(item, int) or tok.isdigit():
            idx = [int(tok)]
        elif m:
            idx = list(range(int(m.group(1)), int(m.group(2)) + 1))
        elif tok in by_id:
            idx = [by_id[tok]]
        else:
            raise AbmError(f"--only {tok!r}: not a run index (0 to {n - 1}) or run id of this "
                           f"batch (e.g. {specs[0].run_id})")
        for i in idx:
            if not 0 <= i < n:
                raise AbmError(f"--only {tok}: run index out of range (the batch has {n} runs, "
                               f"0 to {n - 1})")
        out.update(idx)
    return out


def _merge_existing(manifest: Manifest, old: Manifest, specs: list[RunSpec], folder: Path):
    if len(old.rows) > len(specs):
        raise AbmError(f"{folder / MANIFEST} has {len(old.rows)} runs but the batch config now "
                       f"gives {len(specs)}; a batch may grow (e.g. more replicates) but not "
                       "shrink: use a new batch name or delete the folder")
    for spec in specs:
        row = old.rows.get(spec.index)
        if row is None:
            continue
        if row.get("config_hash") != spec.config_hash or int(row.get("seed", -1)) != spec.seed:
            raise AbmError(f"the batch config changed since {folder} was started: run "
                           f"{spec.run_id} now has a different config or seed; resume with the "
                           "same batch file, use a new batch name, or delete the folder")
        new = manifest.rows[spec.index]
        for k in ("status", "attempts", "error", "duration_s", "cpu_s", "started", "finished",
                  "worker"):
            if k in row:
                new[k] = row[k]
        if new["status"] == "running":   # the batch that ran it was killed
            new["status"] = "pending"
            new["error"] = new["error"] or "interrupted (the batch process was killed)"


def run_batch(batch: BatchConfig, *, out=None, executor=None, resume: bool = False,
              only=None, progress: bool | str = False, verbose: bool = False, log=None,
              grace_s: float = 30.0) -> BatchResult:
    """Run (or resume) a batch; return a :class:`BatchResult`.

    Args:
        batch: from :func:`abm.batch.load_batch`.
        out: parent of the batch folder (default: the base config's ``output.dir``).
        executor: a :class:`~abm.batch.executors.LocalPool` or
            :class:`~abm.batch.executors.DaskExecutor` (default: a local pool
            on all cores, closed at the end; a given one is left open).
        resume: continue the batch in the folder (skip done runs, adopt
            complete files, re-run failed and interrupted ones).
        only: run just these runs (indices, run ids, or ``"3,5,8-11"``);
            without ``resume`` they are re-run even if done.
        progress: report progress (runs done / failed / pending, rate, time
            left): a tqdm bar on a terminal, else a log line every 10 % of the
            runs or 30 s; ``"lines"``: log lines only (see :mod:`abm.progress`).
        verbose: one line per finished run (when there is no bar).
        log: callable for one-line messages (default: the ``abm.batch.runner``
            logger; failures are warnings, the rest info).
        grace_s: on Ctrl-C, how long to wait for running runs to close their files.

    Ctrl-C (KeyboardInterrupt) is caught: running runs are stopped cleanly,
    the manifest is saved, and the result has ``interrupted = True``.

    One batch per folder: the folder is locked (:mod:`abm.batch.lock`) while
    this runs; another batch on it raises a one-line error. A failed write of
    the manifest (disk full, ...) raises a one-line
    :class:`~abm.io.h5file.StorageError`.
    """
    say = Say(_log, log)
    folder = batch_folder(batch, out)
    with BatchLock(folder, log=say.warning):
        try:
            return _run_locked(batch, folder, out=out, executor=executor, resume=resume,
                               only=only, progress=progress, verbose=verbose, say=say,
                               grace_s=grace_s)
        except OSError as exc:
            raise storage_error(exc, exc.filename or folder / MANIFEST) from None


def _run_locked(batch, folder, *, out, executor, resume, only, progress, verbose, say,
                grace_s) -> BatchResult:
    mpath = folder / MANIFEST
    old = Manifest.load(folder) if mpath.exists() else None
    if old is not None and not resume and only is None:
        raise AbmError(f"{folder} already holds a batch ({MANIFEST}); continue it with --resume, "
                       "re-run single runs with --only, or delete the folder to start again")
    if batch.root_seed_drawn:
        saved = _saved_root_seed(folder)
        if saved is not None:
            batch = batch.with_root_seed(saved)
        elif old is not None:
            raise AbmError(f"{folder} has no readable {BATCH_TOML} to take the root seed from; "
                           "set batch.root_seed")
    specs = expand_batch(batch, validate=False)
    manifest = Manifest.from_specs(folder, specs, batch.varied)
    if old is not None:
        _merge_existing(manifest, old, specs, folder)
    chosen = select_runs(only, specs)
    folder.mkdir(parents=True, exist_ok=True)
    header = (f"Batch {batch.name!r} resolved by abm from {batch.file or 'a dict'} on {_utc()}.\n"
              f"Continue it with: abm batch {folder / BATCH_TOML} --resume"
              + (f" --out {folder.parent}" if out is not None else ""))
    write_atomic(folder / BATCH_TOML, batch_toml(batch, header))

    result = BatchResult(folder=folder, manifest=mpath, n_runs=len(specs))
    todo: list[RunSpec] = []
    for spec in specs:
        if chosen is not None and spec.index not in chosen:
            continue
        row = manifest.rows[spec.index]
        path = spec.file(folder)
        if resume:
            if row["status"] == "done" and file_complete(path, spec.seed):
                result.skipped += 1
                continue
            if file_complete(path, spec.seed, spec):
                manifest.update(spec.index, status="done", error="",
                                finished=row.get("finished") or _utc())
                result.adopted += 1
                continue
        if row["status"] in ("done", "running"):
            manifest.update(spec.index, status="pending")
        todo.append(spec)
    manifest.save()
    if not todo:
        _tally(result, manifest)
        return result

    own = executor is None
    if own:
        from abm.batch.executors import LocalPool
        executor = LocalPool(workers=min(len(todo), _cores()))
    result.executor = executor.describe()
    state = {"done": 0, "failed": 0, "stop": False}
    prog = None
    if progress:
        from abm.progress import Progress, format_eta

        def line(p) -> str:
            rate = p.rate_per_s * 60.0
            pending = len(todo) - state["done"] - state["failed"]
            return (f"batch {batch.name!r}: {state['done']} done, {state['failed']} failed, "
                    f"{pending} pending of {len(todo)} runs, "
                    f"{'?' if rate != rate else f'{rate:.1f}'} runs/min, "
                    f"ETA {format_eta(p.eta_s)}")

        prog = Progress(len(todo), describe=line, logger=_log, desc=batch.name, unit="run",
                        bar=False if progress == "lines" else None)
    t0 = time.perf_counter()
    inflight: dict = {}

    def finish(spec: RunSpec, res: dict) -> None:
        status = res.get("status", "failed")
        fields = {k: res.get(k, "") for k in ("duration_s", "cpu_s", "started", "finished",
                                              "worker")}
        for msg in res.get("messages") or ():   # notes of the worker (e.g. a .part restarted)
            say.info(f"{spec.run_id}: {msg.removeprefix('abm: ')}")
        if status == "done":
            manifest.update(spec.index, status="done", error="", **fields)
            state["done"] += 1
            result.finished += 1
        elif status == "interrupted":   # Ctrl-C reached the worker: stop the batch too
            manifest.update(spec.index, status="pending", error=res.get("error") or "interrupted",
                            **fields)
            state["stop"] = True
            return
        else:
            manifest.update(spec.index, status="failed", error=res.get("error") or "failed",
                            **fields)
            state["failed"] += 1
            result.failures.append((spec.run_id, manifest.rows[spec.index]["error"]))
            say.warning(f"{spec.run_id} failed: {manifest.rows[spec.index]['error']}")
        if verbose and status == "done" and (prog is None or prog.bar is None):
            k = state["done"] + state["failed"]
            how = (f" (resumed from step {res['resumed_from']})"
                   if res.get("resumed_from") is not None else "")
            say.info(f"[{k}/{len(todo)}] {spec.run_id} done in "
                     f"{float(res.get('duration_s') or 0):.1f} s{how}")
        if prog is not None:
            prog.update(1, postfix=f"done {state['done']}, failed {state['failed']}")

    queue = deque(todo)
    failing = False
    try:
        while queue or inflight:
            if state["stop"]:
                raise KeyboardInterrupt
            while queue and len(inflight) < executor.capacity:
                spec = queue.popleft()
                attempts = int(manifest.rows[spec.index].get("attempts") or 0) + 1
                result.attempted += 1
                err = spec.validate()
                if err:
                    now = _utc()
                    manifest.update(spec.index, attempts=attempts)
                    finish(spec, {"status": "failed", "error": err, "duration_s": 0.0,
                                  "started": now, "finished": now, "worker": ""})
                    continue
                task = spec.task(folder, resume=resume, threads=executor.threads)
                manifest.update(spec.index, status="running", attempts=attempts, error="",
                                started=_utc(), finished="", worker="", duration_s="", cpu_s="")
                inflight[_submit(executor, task)] = spec
            manifest.maybe_save()
            if prog is not None:
                prog.tick()   # a line every 30 s even while no run finishes
            if inflight:
                for fut in executor.wait(inflight, timeout=0.5):
                    spec = inflight.pop(fut)
                    finish(spec, _result(executor, fut))
    except KeyboardInterrupt:
        result.interrupted = True
        if prog is not None:
            prog.close()
            prog = None
        say.warning("interrupted; stopping the running runs (Ctrl-C again to kill them)")
        _stop(executor, inflight, finish, grace_s, own)
        for spec in inflight.values():
            manifest.update(spec.index, status="pending",
                            error="interrupted; 'abm batch CONFIG --resume' continues it")
        own = False  # closed by _stop
    except BaseException as exc:   # e.g. the manifest cannot be written (disk full)
        failing = True
        for spec in inflight.values():
            manifest.update(spec.index, status="pending",
                            error=f"the batch stopped ({one_line(f'{type(exc).__name__}: {exc}')})")
        raise
    finally:
        result.wall_s = time.perf_counter() - t0
        if prog is not None:
            prog.close()
        if own:
            executor.close(kill=bool(inflight))
        try:
            manifest.save()
        except OSError:
            if not failing:
                raise   # else the error in flight says more
    _tally(result, manifest)
    return result


def _cores() -> int:
    from abm.batch.executors import usable_cores
    return usable_cores()


def _submit(executor, task):
    from concurrent.futures.process import BrokenProcessPool
    try:
        return executor.submit(task)
    except BrokenProcessPool:
        executor.restart()
        return executor.submit(task)


def _result(executor, fut) -> dict:
    from concurrent.futures import CancelledError
    try:
        return executor.result(fut)
    except KeyboardInterrupt:
        return {"status": "interrupted", "error": "interrupted"}
    except CancelledError:
        return {"status": "interrupted", "error": "cancelled"}
    except BaseException as exc:  # noqa: BLE001 - a dead worker fails its run only
        text = one_line(f"{type(exc).__name__}: {exc}")
        return {"status": "failed", "error": f"the worker running it died ({text})"}


def _stop(executor, inflight: dict, finish, grace_s: float, own: bool) -> None:
    """Stop running runs cleanly; record those that still report back."""
    try:
        executor.interrupt()
        if executor.kind == "dask":   # running tasks cannot be stopped: cancel and leave
            executor.close(futures=list(inflight)) if own else \
                executor.client.cancel(list(inflight))
            return
        deadline = time.monotonic() + grace_s
        while inflight and time.monotonic() < deadline:
            for fut in executor.wait(inflight, timeout=0.25):
                finish(inflight.pop(fut), _result(executor, fut))
        if own or inflight:
            executor.close(kill=bool(inflight))
        if not own and hasattr(executor, "restart"):
            executor.restart()   # the caller's pool stays usable (its workers saw Ctrl-C)
    except KeyboardInterrupt:
        try:
            executor.close(kill=True) if executor.kind == "local" else executor.close()
        except Exception:  # noqa: BLE001 - best effort on a second Ctrl-C
            pass


def _tally(result: BatchResult, manifest: Manifest) -> None:
    c = manifest.counts()
    result.done, result.failed = c["done"], c["failed"]
    result.pending = c["pending"] + c["running"]


__all__ = ["run_batch", "BatchResult", "batch_folder", "file_complete", "select_runs",
           "BATCH_TOML"]
