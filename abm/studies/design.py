"""Shared helpers of the studies: parameter ranges, the base, design batches, provenance.

A study (``abm sensitivity``, ``abm calibrate``) picks parameter points, runs
each point as part of one ordinary batch (sweep ``method = "list"``, crossed
with a virtual population when there is one) and summarises the endpoints
per point. This module holds what every study needs and nothing about any
one method:

* :class:`Range` and :func:`parse_ranges`: ``"path" = [low, high]`` or
  ``{low, high, scale = "log"}`` tables, checked against the run config
  schema (a misspelt path is a one-line error with a did-you-mean; ``low``
  and ``high`` are checked as values of the parameter on top of the base);
  :meth:`Range.value` maps the unit interval onto the range (integer
  parameters rounded).
* :class:`Base` and :func:`load_base`: the ``base`` of a study, a run config
  or a batch file (whose ``[batch.population]`` a study can reuse), plus the
  study file's own inline run tables.
* :func:`design_batch`: the batch of a design (list sweep x population x
  replicates, common seeds by default: a paired design).
* :func:`point_endpoints`: the simulator's ``/endpoints`` of every finished
  run of a design batch, with its design point, and the runs each point
  lacks (failed, pending, unreadable).
* :func:`provenance`: version, git commit and environment attributes for a
  study's output file.
* :func:`add_executor_options`, :func:`executor_from_args`,
  :func:`run_design`: the ``abm batch`` executor options (local pool, Dask)
  and a batch run that turns SIGTERM into a clean stop, for a study command.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import math
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from abm.batch.options import sigterm_as_interrupt
from abm.batch.config import (MAX_RUNS, BatchConfig, Sweep, SweepParam, _Ctx,
                              batch_from_dict, load_batch, param_kind, parse_bounds)
from abm.config import apply_overrides, config_from_dict
from abm.config.files import read_toml
from abm.errors import AbmError, ConfigError

_log = logging.getLogger(__name__)

SCALES = ("linear", "log")
#: Name of the batch (and its folder inside the study folder) that runs a design.
DESIGN_BATCH = "design"


# ----------------------------------------------------------------------------
# parameter ranges
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """One varied parameter: ``path`` over ``[low, high]`` on a linear or log scale.

    ``path`` is a dotted run config path (or any name, for a study of a plain
    Python function). ``integer``: values are rounded to the nearest integer.
    """

    path: str
    low: float
    high: float
    scale: str = "linear"
    integer: bool = False

    def value(self, u):
        """Values for unit coordinates ``u`` in [0, 1] (array or scalar)."""
        u = np.asarray(u, float)
        if self.scale == "log":
            x = np.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            x = self.low + u * (self.high - self.low)
        return np.floor(x + 0.5) if self.integer else x

    def unit(self, x):
        """Inverse of :meth:`value` (before rounding)."""
        x = np.asarray(x, float)
        if self.scale == "log":
            return (np.log(x) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (x - self.low) / (self.high - self.low)

    def values_list(self, u) -> list:
        """Plain Python values for a batch sweep (ints for integer parameters)."""
        v = self.value(u)
        return [int(x) for x in v] if self.integer else [float(x) for x in v]

    def describe(self) -> str:
        s = f"{self.low:g} .. {self.high:g}"
        return s + (" (log)" if self.scale == "log" else "")


def parse_ranges(table, *, prefix: str, file: str | None, base_data: dict,
                 reserved: tuple[str, ...] = ()) -> tuple[Range, ...]:
    """Parameter ranges of a study file's table (``[sensitivity.parameters]``, say).

    Each key is a dotted run config path (quoted, or as nested tables) whose
    value is ``[low, high]`` or ``{low, high, scale = "linear" | "log"}``.
    Numbers only (float or int parameters); ``low < high``; ``low > 0`` on a
    log scale; ``low`` and ``high`` must be allowed values of the parameter on
    top of ``base_data``. Every error is a one-line :class:`ConfigError`
    naming ``file`` and the key, e.g. ``s.toml: sensitivity.parameters."a.b"
    is not a parameter path of the run config; did you mean 'a.c'?``.
    """
    ctx = _Ctx(file, base_data)
    if not isinstance(table, dict):
        ctx.fail(prefix, f"must be a table of parameter paths and ranges (got {table!r})")
    out = []
    for path, v, key in ctx.paths(table, prefix, reserved):
        out.append(_parse_range(ctx, path, v, key))
    if not out:
        ctx.fail(prefix, 'lists no parameter (add e.g. "product.kill_rate_per_h" = '
                         '{low = 0.5, high = 3.0, scale = "log"})')
    ctx.check_conflicts({r.path for r in out})
    return tuple(out)


def _parse_range(ctx: _Ctx, path: str, v, key: str) -> Range:
    kind = param_kind(path)
    if kind not in ("float", "int"):
        ctx.fail(key, f"is a {kind} parameter; a study varies numbers over a range")
    if isinstance(v, list):
        if len(v) != 2:
            ctx.fail(key, f"must be [low, high] or {{low, high, scale}} (got {v!r})")
        v = {"low": v[0], "high": v[1]}
    if not isinstance(v, dict):
        ctx.fail(key, f"must be [low, high] or {{low, high, scale = 'linear' | 'log'}} "
                      f"(got {v!r})")
    for k in v:
        if k not in ("low", "high", "scale"):
            ctx.fail(f"{key}.{k}", "is not a known key (known keys: low, high, scale)")
    low, high, scale = parse_bounds(ctx.fail, v, key)
    integer = kind == "int"
    for k, x in (("low", low), ("high", high)):
        ctx.check_value(path, int(math.floor(x + 0.5)) if integer else x, f"{key}.{k}")
    return Range(path, low, high, scale, integer)


# ----------------------------------------------------------------------------
# the base of a study
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    """What a study's runs start from.

    Attributes:
        file: the base file (as resolved from the study file).
        run_data: the run tables (the base run config, or a batch file's base
            merged with its inline tables, then the study file's inline tables).
        population: a batch base's ``[batch.population]`` table as written
            (None for a run config or a batch without one).
        is_batch: the base is a batch file.
    """

    file: str
    run_data: dict
    population: dict | None
    is_batch: bool

    @property
    def covariates(self) -> list[str]:
        """Parameter paths the base population draws."""
        if not self.population:
            return []
        out = []

        def walk(t, head):
            for k, v in t.items():
                if not head and k == "size":
                    continue
                p = f"{head}.{k}" if head else k
                if isinstance(v, dict) and "dist" not in v:
                    walk(v, p)
                else:
                    out.append(p)
        walk(self.population, "")
        return out

    def without_covariates(self, paths) -> "Base":
        """This base with the covariates at ``paths`` removed from its population."""
        if not self.population:
            return self
        pop = copy.deepcopy(self.population)
        for p in paths:
            pop.pop(p, None)
            head, _, last = p.rpartition(".")
            t = pop
            for part in head.split(".") if head else []:
                t = t.get(part) if isinstance(t, dict) else None
            if isinstance(t, dict):
                t.pop(last, None)
        return dataclasses.replace(self, population=pop)


def load_base(rel: str, *, owner: str | None, root=None, key: str = "base",
              inline: dict | None = None) -> Base:
    """Read a study's base: a run config or a batch file, relative to ``root``.

    Args:
        rel: the ``base`` value of the study file.
        owner: the study file (named in error messages), key: its key path.
        root: folder ``rel`` is relative to (default: the working directory).
        inline: the study file's own run tables, merged over the base's.

    A batch base must name no sweep (a study makes its own); its root seed,
    replicates and seed pairing are the study's to set.
    """
    path = Path(root or ".") / rel
    data = read_toml(path, key=key, owner=owner)
    population = None
    if isinstance(data.get("batch"), dict):
        batch = load_batch(path)       # errors name the base file
        if batch.sweep is not None:
            raise ConfigError(f"{key} names a batch file with a [batch.sweep] ({path}); a study "
                              "makes its own sweep: name a run config or a batch with a "
                              "population only", path=owner, key=key)
        run_data = batch.base_data
        population = copy.deepcopy(data["batch"].get("population"))
        is_batch = True
    else:
        config_from_dict(data, file=str(path))
        run_data, is_batch = data, False
    if inline:
        run_data = apply_overrides(run_data, inline)
        config_from_dict(run_data, file=owner)
    return Base(file=str(path), run_data=run_data, population=population, is_batch=is_batch)


# ----------------------------------------------------------------------------
# the batch of a design
# ----------------------------------------------------------------------------


def design_batch(base: Base, ranges, unit_points, *, root_seed: int,
                 population_size: int | None = None, replicates: int = 1,
                 common_seeds: bool = True, name: str = DESIGN_BATCH,
                 file: str | None = None, description: str = "") -> BatchConfig:
    """The batch that runs every design point of ``unit_points`` on ``base``.

    Args:
        base: from :func:`load_base`.
        ranges: the :class:`Range` of each column of ``unit_points``.
        unit_points: array (points, parameters) of unit coordinates in [0, 1].
        root_seed: the batch root seed (run seeds and covariate draws).
        population_size: run the base's virtual population (its
            ``[batch.population]`` with this size; None: no population, one
            patient per point and replicate, the base run config's own).
        replicates: runs per (point, patient), each with its own seed.
        common_seeds: every design point sees the same patients and random
            numbers (run seeds and covariate draws shared across points: a
            paired design, so a difference between points is the parameters'
            doing, not sampling noise).
        name: batch name (its folder name), file: named in error messages.

    The batch's structure (population, conflicts with the base) is validated
    with :func:`abm.batch.batch_from_dict` on the first point; the ranges are
    checked at both ends by :func:`parse_ranges`, so every value inside is
    valid too, and the full list sweep is put in without checking each value
    again (a Sobol design has thousands).
    """
    u = np.asarray(unit_points, float)
    if u.ndim != 2 or u.shape[1] != len(ranges) or u.shape[0] < 1:
        raise ValueError(f"unit_points must be (points, {len(ranges)}), got {u.shape}")
    members = population_size if population_size else 1
    n_runs = u.shape[0] * members * replicates
    if n_runs > MAX_RUNS:
        raise ConfigError(f"the design has {n_runs} runs ({u.shape[0]} points x {members} "
                          f"patients x {replicates} replicates), more than {MAX_RUNS}; use "
                          "fewer samples or a smaller population", path=file)
    values = {r.path: r.values_list(u[:, j]) for j, r in enumerate(ranges)}
    table: dict = {"name": name, "root_seed": int(root_seed), "replicates": int(replicates),
                   "common_seeds": bool(common_seeds), "description": description,
                   "sweep": {"method": "list", **{p: v[:1] for p, v in values.items()}}}
    if population_size:
        if not base.population:
            raise ConfigError(f"a population needs a base batch file with a "
                              f"[batch.population] ({base.file} has none)", path=file)
        pop = copy.deepcopy(base.population)
        pop["size"] = int(population_size)
        table["population"] = pop
    data = {**copy.deepcopy(base.run_data), "batch": table}
    batch = batch_from_dict(data, file=file)
    sweep = Sweep("list", tuple(SweepParam(p, values=tuple(v)) for p, v in values.items()))
    return dataclasses.replace(batch, sweep=sweep)


# ----------------------------------------------------------------------------
# results per design point
# ----------------------------------------------------------------------------


@dataclass
class PointRuns:
    """The finished runs of a design batch, by design point.

    Attributes:
        endpoints: {endpoint name: array (run,)} of the simulator's ``/endpoints``.
        point: array (run,) of each run's design point (sweep point).
        run_ids: array (run,) of run ids.
        expected: runs each point should have (array (points,)).
        missing: {point: [(run_id, status, reason), ...]} of the runs a point lacks.
    """

    endpoints: dict
    point: np.ndarray
    run_ids: np.ndarray
    expected: np.ndarray
    missing: dict

    @property
    def done(self) -> np.ndarray:
        return np.bincount(self.point, minlength=self.expected.size)


def point_endpoints(folder, n_points: int) -> PointRuns:
    """The simulator's endpoints of the finished runs of the design batch in ``folder``."""
    from abm.batch.manifest import Manifest
    from analysis.batch import close_files, open_batch
    from abm.errors import FileFormatError

    folder = Path(folder)
    manifest = Manifest.load(folder)
    rows = manifest.rows
    point_of = {r["run_id"]: int(r.get("sweep_point") or 0) for r in rows.values()}
    expected = np.bincount(np.array(list(point_of.values()), dtype=int), minlength=n_points)
    try:
        ds = open_batch(folder, variables=[], progress=False)
    except FileFormatError:
        ds = None
    endpoints: dict = {}
    run_ids = np.array([], dtype=object)
    if ds is not None:
        run_ids = np.asarray(ds["run"].values, dtype=object)
        endpoints = {k[len("endpoint_"):]: np.asarray(ds[k].values, float)
                     for k in ds.data_vars if k.startswith("endpoint_")}
        close_files()
    loaded = set(run_ids.tolist())
    missing: dict = {}
    for run_id, r in sorted(rows.items(), key=lambda kv: int(kv[1]["index"])):
        rid = r["run_id"]
        if rid in loaded:
            continue
        status = r.get("status") or "?"
        reason = (r.get("error") or "").strip() or {"pending": "not run yet",
                                                     "done": "file missing or unreadable"
                                                     }.get(status, status)
        missing.setdefault(point_of[rid], []).append((rid, status, reason))
    point = np.array([point_of.get(str(r), -1) for r in run_ids], dtype=int)
    keep = point >= 0    # files not in the manifest: not part of the design
    return PointRuns(endpoints={k: v[keep] for k, v in endpoints.items()}, point=point[keep],
                     run_ids=run_ids[keep], expected=expected, missing=missing)


# ----------------------------------------------------------------------------
# provenance
# ----------------------------------------------------------------------------


def _git(*args) -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def provenance(**extra) -> dict:
    """Root attributes of a study's output: software, version, git, environment, time.

    ``git_commit`` is the commit of the source checkout abm runs from (empty
    for an installed package); ``git_dirty`` 1 if tracked files differ from
    it. ``extra`` keys are added as they are (text or numbers).
    """
    from abm.version import __version__
    commit = _git("rev-parse", "HEAD")
    attrs = {
        "software": "abm",
        "software_version": __version__,
        "git_commit": commit,
        "git_dirty": int(bool(commit) and bool(_git("status", "--porcelain",
                                                       "--untracked-files=no"))),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "env_python": platform.python_version(),
        "env_numpy": np.__version__,
        "env_platform": platform.platform(),
    }
    attrs.update(extra)
    return attrs


# ----------------------------------------------------------------------------
# executors and running a design (for a study's command)
# ----------------------------------------------------------------------------


def check_start(folder, resume: bool) -> None:
    """A one-line error if the design batch ``folder`` already holds runs and not ``resume``."""
    from abm.batch.manifest import MANIFEST
    folder = Path(folder)
    if (folder / MANIFEST).exists() and not resume:
        raise AbmError(f"{folder.parent} already holds this study's runs ({folder / MANIFEST}); "
                       "continue it with --resume, or delete the folder to start again")


def run_design(batch: BatchConfig, out, *, executor=None, resume: bool = False,
               progress: bool | str = False, verbose: bool = False, log=None):
    """Run (or resume) a design batch under ``out``; returns ``(BatchResult, terminated)``.

    SIGTERM (a cluster stopping the job) stops the batch as Ctrl-C does
    (``terminated`` True then); a folder that already holds the batch needs
    ``resume`` (a one-line error otherwise).
    """
    from abm.batch.runner import batch_folder, run_batch
    check_start(batch_folder(batch, out), resume)
    with sigterm_as_interrupt() as terminated:
        res = run_batch(batch, out=out, executor=executor, resume=resume, progress=progress,
                        verbose=verbose, log=log)
    return res, bool(terminated)


__all__ = ["Range", "parse_ranges", "Base", "load_base", "design_batch", "PointRuns",
           "point_endpoints", "provenance", "check_start", "run_design", "DESIGN_BATCH", "SCALES"]
