"""``abm calibrate CONFIG``: history matching of the model to population targets.

Method (docs/calibration.md section 7): waves of design points, each wave an
ordinary batch per arm (``[batch.sweep] method = "list"`` of the points crossed
with the arm's virtual population, common seeds across points) run with
:func:`abm.batch.run_batch`; the runs' endpoints become one summary per
target and point; Gaussian-process emulators of the summaries
(:mod:`abm.studies.emulator`) rule out the implausible part of the parameter
box; the next wave samples what is left. The result is a sample of the NROY
("not ruled out yet") region, reported as the calibration posterior.

Folder ``<out>/<name>/``::

    calibration.toml        the config as given (a resume checks it is unchanged)
    wave<k>/design.csv      the wave's design points (written before its runs)
    wave<k>/wave<k>_<arm>/  the wave's batch folder per arm (abm batch layout)
    wave<k>/endpoints.csv   per-run endpoints; wave<k>/summaries.csv: per point and target
    check_wave<k>/...       the posterior predictive check after wave k (same layout)
    calibration.nc          the dataset (design, summaries, implausibility, samples, ...)
    summary.md, figures/    the report

Resume (``resume=True``): finished waves (their summaries.csv) are re-used, an
unfinished wave continues its batches (done runs are kept); the dataset and
the report are always rebuilt.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from abm.batch.expand import expand_batch
from abm.errors import AbmError, ConfigError
from abm.studies.calibrate_config import CalibrationConfig, load_calibration
from abm.studies.calibrate_targets import ENDPOINTS, run_endpoints, summarise
from abm.studies.emulator import HistoryMatching, Settings
from abm.version import __version__

_log = logging.getLogger(__name__)

CONFIG_COPY = "calibration.toml"
DATASET = "calibration.nc"
SUMMARY_MD = "summary.md"
#: Config keys a resume may change (they do not alter finished waves).
MAY_CHANGE = ("waves", "samples", "check", "description", "candidates", "cutoff", "measure")
#: Seed purposes: the arms' virtual patients in the waves, and in the check.
WAVE_PATIENTS, CHECK_PATIENTS = 1, 2


class CalibrationInterrupted(AbmError):
    """Ctrl-C (or SIGTERM) stopped a wave; ``--resume`` continues."""


@dataclass
class CalibrationResult:
    folder: Path
    dataset: Path
    summary: Path
    waves_done: int = 0
    runs: int = 0
    failed: int = 0
    ran: int = 0
    n_samples: int = 0
    nroy_fraction: float = math.nan
    messages: list = field(default_factory=list)


def arm_seed(seed: int, arm: str, purpose: int) -> int:
    """Root seed of an arm's batches: ``SeedSequence([seed, crc32(arm), purpose])`` -> 63 bits.

    Every wave uses the same one (the same virtual patients at every point of
    every wave: common random numbers); the check uses another.
    """
    s = np.random.SeedSequence([int(seed), zlib.crc32(arm.encode()), int(purpose)])
    return int(s.generate_state(1, np.uint64)[0] >> np.uint64(1))


def git_commit() -> str:
    """The source checkout's commit (``+dirty`` with uncommitted changes), or ""."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def calibration_folder(cfg: CalibrationConfig, out=None) -> Path:
    return Path(out if out is not None else "runs") / cfg.name


# ----------------------------------------------------------------------------
# one wave: batches per arm, endpoints, summaries
# ----------------------------------------------------------------------------


def arm_batch(cfg: CalibrationConfig, arm, name: str, values: np.ndarray, patients: int,
              root_seed: int):
    """The batch of one arm at the design points ``values`` (points, parameters)."""
    from abm.batch.config import load_batch
    overrides = json.loads(json.dumps(cfg.run_tables)) if cfg.run_tables else {}
    sweep = {"method": "list"}
    for j, p in enumerate(cfg.parameters):
        col = values[:, j]
        sweep[p.name] = [int(round(v)) for v in col] if p.integer else [float(v) for v in col]
    b = {"name": name, "root_seed": int(root_seed), "common_seeds": True, "sweep": sweep,
         "description": f"abm calibrate {cfg.name}: arm {arm.name}"}
    if arm.has_population:
        b.update(population={"size": int(patients)}, replicates=1)
    else:
        b["replicates"] = int(patients)
    overrides["batch"] = b
    return load_batch(arm.file, overrides)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([repr(x) if isinstance(x, float) else x for x in r])
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_design(path: Path, cfg: CalibrationConfig, values: np.ndarray) -> None:
    _write_csv(path, ["point"] + cfg.paths, [[i] + [float(v) for v in row]
                                             for i, row in enumerate(values)])


def read_design(path: Path, cfg: CalibrationConfig) -> np.ndarray:
    rows = _read_csv(path)
    try:
        vals = np.array([[float(r[p]) for p in cfg.paths] for r in rows], float)
    except (KeyError, ValueError) as exc:
        raise AbmError(f"{path}: not a design of this calibration ({exc}); delete the folder "
                       "to start again") from None
    return vals.reshape(len(rows), len(cfg.paths))


def run_points(cfg: CalibrationConfig, folder: Path, tag: str, values: np.ndarray, *,
               purpose: int, patients: dict | None = None, executor, progress, verbose, say
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Simulate every arm at the points ``values``; summaries per point and target.

    Returns ``(y, v, n, stats)``: summaries (points, targets) on the emulated
    scale, their sampling variances, the runs behind each, and run counts.
    The per-run endpoints go to ``folder/endpoints.csv``, the summaries to
    ``folder/summaries.csv`` (the wave's completion mark).
    """
    from abm.batch.runner import run_batch
    folder.mkdir(parents=True, exist_ok=True)
    n_points = len(values)
    stats = {"runs": 0, "failed": 0, "ran": 0, "seeds": {}}
    ep_rows, per_arm = [], {}
    for arm in cfg.arms:
        n_pat = (patients or {}).get(arm.name, arm.patients)
        seed = arm_seed(cfg.seed, arm.name, purpose)
        stats["seeds"][arm.name] = seed
        batch = arm_batch(cfg, arm, f"{tag}_{arm.name}", values, n_pat, seed)
        say(f"{tag}: arm {arm.name}: {batch.n_runs} runs ({n_points} points x {n_pat} "
            f"patients), root seed {seed}")
        res = run_batch(batch, out=folder, executor=executor, resume=True, progress=progress,
                        verbose=verbose)
        if res.interrupted:
            raise CalibrationInterrupted(f"{tag}: arm {arm.name} interrupted")
        stats["ran"] += res.finished + len(res.failures)
        specs = expand_batch(batch, validate=False)
        eps = [dict.fromkeys(ENDPOINTS, math.nan) for _ in specs]
        status = []
        for i, spec in enumerate(specs):
            path = spec.file(res.folder)
            try:
                eps[i] = run_endpoints(path)
                status.append("done")
            except AbmError:
                status.append("failed")
            member = spec.member if arm.has_population else spec.replicate
            ep_rows.append([arm.name, spec.sweep_point, member, spec.run_id, status[-1]]
                           + [eps[i][k] for k in ENDPOINTS])
        stats["runs"] += len(specs)
        bad = status.count("failed")
        stats["failed"] += bad
        if bad:
            say(f"{tag}: arm {arm.name}: {bad} of {len(specs)} runs failed or unreadable "
                f"(left out of the summaries; errors in {res.folder / 'manifest.csv'})",
                warning=True)
        per_arm[arm.name] = (specs, eps)
    _write_csv(folder / "endpoints.csv", ["arm", "point", "member", "run_id", "status"]
               + list(ENDPOINTS), ep_rows)
    y, v, n = summaries(cfg, per_arm, n_points)
    rows = [[p, t.name, float(y[p, j]), float(v[p, j]), int(n[p, j])]
            for p in range(n_points) for j, t in enumerate(cfg.targets)]
    _write_csv(folder / "summaries.csv", ["point", "target", "value", "variance", "n"], rows)
    return y, v, n, stats


def summaries(cfg: CalibrationConfig, per_arm: dict, n_points: int):
    """Summaries (points, targets), variances and counts from each arm's (specs, endpoints)."""
    t_n = len(cfg.targets)
    y = np.full((n_points, t_n), np.nan)
    v = np.full((n_points, t_n), np.nan)
    n = np.zeros((n_points, t_n), int)
    rng = np.random.default_rng([cfg.seed, 7])
    for j, t in enumerate(cfg.targets):
        specs, eps = per_arm[t.arm]
        for p in range(n_points):
            vals = [e[t.summary.endpoint] for s, e in zip(specs, eps) if s.sweep_point == p]
            y[p, j], v[p, j], n[p, j] = summarise(t.summary, vals, rng=rng)
    return y, v, n


def read_summaries(path: Path, cfg: CalibrationConfig, n_points: int):
    rows = _read_csv(path)
    names = [t.name for t in cfg.targets]
    y = np.full((n_points, len(names)), np.nan)
    v = np.full_like(y, np.nan)
    n = np.zeros(y.shape, int)
    for r in rows:
        if r["target"] not in names or int(r["point"]) >= n_points:
            raise AbmError(f"{path}: does not match the config's targets or design; delete "
                           f"{path} to recompute it") from None
        p, j = int(r["point"]), names.index(r["target"])
        y[p, j], v[p, j], n[p, j] = float(r["value"]), float(r["variance"]), int(r["n"])
    return y, v, n


# ----------------------------------------------------------------------------
# the whole calibration
# ----------------------------------------------------------------------------


def _compare_configs(cfg: CalibrationConfig, saved_path: Path) -> None:
    """Refuse a resume whose config changed beyond :data:`MAY_CHANGE`."""
    import tomllib
    try:
        saved = tomllib.loads(saved_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AbmError(f"{saved_path}: cannot be read ({exc}); delete the folder to start "
                       "again") from None
    now = json.loads(json.dumps(cfg.data))
    for d in (saved, now):
        for k in MAY_CHANGE:
            d.get("calibration", {}).pop(k, None)
    if saved != now:
        keys = sorted(set(_flat(saved)) ^ set(_flat(now))
                      | {k for k in set(_flat(saved)) & set(_flat(now))
                         if _flat(saved)[k] != _flat(now)[k]})
        raise ConfigError(f"differs from the calibration in {saved_path.parent} (first "
                          f"difference: {keys[0] if keys else '?'}); only "
                          f"{', '.join('calibration.' + k for k in MAY_CHANGE)} may change on "
                          "--resume: give another calibration.name or --out", path=cfg.file)


def _flat(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.update(_flat(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = d
    return out


class _Say:
    def __init__(self, log=None):
        self.log = log

    def __call__(self, msg: str, warning: bool = False) -> None:
        if self.log is not None:
            self.log(f"abm: {msg}")
        elif warning:
            _log.warning(msg)
        else:
            _log.info(msg)


def calibrate(config, *, out=None, executor=None, resume: bool = False,
              progress: bool | str = False, verbose: bool = False, log=None,
              figures: bool = True) -> CalibrationResult:
    """Run (or resume) a calibration; write calibration.nc, figures and summary.md.

    Args:
        config: a calibration file or a loaded :class:`CalibrationConfig`.
        out: parent folder of the calibration folder (default ``runs``).
        executor: an executor of :mod:`abm.batch.executors` (left open), or
            None for a local pool on all cores (closed at the end).
        resume: continue the calibration in its folder.
        progress, verbose: as for :func:`abm.batch.run_batch`.
        log: callable for one-line messages (default: this module's logger).
    """
    cfg = config if isinstance(config, CalibrationConfig) else load_calibration(config)
    say = _Say(log)
    folder = calibration_folder(cfg, out)
    saved = folder / CONFIG_COPY
    if saved.exists():
        if not resume:
            raise AbmError(f"{folder} already holds a calibration ({CONFIG_COPY}); continue it "
                           "with --resume, or delete the folder to start again")
        _compare_configs(cfg, saved)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = saved.with_suffix(".toml.tmp")
    tmp.write_text(cfg.text or _dump(cfg.data), encoding="utf-8")
    os.replace(tmp, saved)

    own = executor is None
    held = [executor]

    def get_executor():
        if held[0] is None:
            held[0] = _default_executor(cfg)
        return held[0]

    result = CalibrationResult(folder=folder, dataset=folder / DATASET,
                               summary=folder / SUMMARY_MD)
    hm = HistoryMatching(cfg.parameters, [t.target(cfg.arm(t.arm).patients) for t in cfg.targets],
                         Settings(cutoff=cfg.cutoff, measure=cfg.measure,
                                  candidates=cfg.candidates, seed=cfg.seed))
    waves, seeds = [], {}
    try:
        for w in range(1, cfg.waves + 1):
            wdir = folder / f"wave{w}"
            dpath = wdir / "design.csv"
            if dpath.exists():
                values = read_design(dpath, cfg)
            else:
                u = hm.design(cfg.points_of(w))
                if len(u) == 0:
                    msg = (f"wave {w}: every candidate was ruled out after wave {w - 1}; no "
                           "further wave (the targets cannot be met within the ranges, or "
                           "their variances are too small)")
                    say(msg, warning=True)
                    result.messages.append(msg)
                    break
                values = hm.values(u)
                wdir.mkdir(parents=True, exist_ok=True)
                write_design(dpath, cfg, values)
            spath = wdir / "summaries.csv"
            if spath.exists():
                y, v, n = read_summaries(spath, cfg, len(values))
                seeds[w] = {a.name: arm_seed(cfg.seed, a.name, WAVE_PATIENTS) for a in cfg.arms}
                say(f"wave {w}: {len(values)} points simulated before (re-used)")
                result.runs += len(values) * sum(a.patients for a in cfg.arms)
            else:
                say(f"wave {w} of {cfg.waves}: {len(values)} points x "
                    f"{' + '.join(f'{a.patients} {a.name}' for a in cfg.arms)} patients")
                y, v, n, st = run_points(cfg, wdir, f"wave{w}", values, purpose=WAVE_PATIENTS,
                                         executor=get_executor(), progress=progress,
                                         verbose=verbose, say=say)
                seeds[w] = st["seeds"]
                result.runs += st["runs"]
                result.failed += st["failed"]
                result.ran += st["ran"]
            wave = hm.add_wave(hm.units(values), y, v)
            waves.append({"values": values, "y": y, "v": v, "n": n})
            say(f"wave {w}: NROY {100 * wave.nroy_fraction:.3g} % of the parameter box "
                f"(emulators on {wave.trained_on} points)")
            result.waves_done = w
        samples, frac = hm.nroy_sample(cfg.samples) if hm.waves else (
            np.zeros((0, len(cfg.parameters))), math.nan)
        result.n_samples, result.nroy_fraction = len(samples), frac
        if hm.waves and len(samples) < cfg.samples:
            msg = (f"the NROY sample has {len(samples)} of the {cfg.samples} draws asked for"
                   + (": every candidate was ruled out" if len(samples) == 0 else
                      " (the region is small; raise calibration.candidates for more)"))
            say(msg, warning=True)
            result.messages.append(msg)
        check = None
        if cfg.check is not None and len(samples):
            check = _run_check(cfg, folder, samples, get_executor=get_executor,
                               progress=progress, verbose=verbose, say=say, result=result)
        elif cfg.check is not None:
            result.messages.append("no posterior predictive check: the NROY sample is empty")
    finally:
        if own and held[0] is not None:
            try:
                held[0].close()
            except Exception:  # noqa: BLE001 - closed after Ctrl-C already
                pass
    from abm.studies.calibrate_output import build_dataset, write_dataset
    ds = build_dataset(cfg, hm, waves, samples, frac, check=check, seeds=seeds,
                       messages=result.messages, git=git_commit())
    write_dataset(ds, result.dataset)
    if figures:
        from abm.studies.calibrate_report import write_figures, write_summary
        figs = write_figures(ds, folder / "figures")
        write_summary(ds, result.summary, figs, folder=folder)
    say(f"wrote {result.dataset}")
    return result


def _default_executor(cfg):
    from abm.batch.executors import LocalPool
    return LocalPool(workers=max(1, min(os.cpu_count() or 1, max(cfg.runs_per_wave))))


def _run_check(cfg, folder, samples, *, get_executor, progress, verbose, say, result) -> dict:
    """Re-simulate the first ``check.draws`` NROY draws with fresh virtual patients."""
    k = min(cfg.check.draws, len(samples))
    values = samples[:k]
    cdir = folder / f"check_wave{result.waves_done}"
    dpath = cdir / "design.csv"
    if dpath.exists():
        old = read_design(dpath, cfg)
        if old.shape != values.shape or not np.allclose(old, values, rtol=1e-12, atol=0):
            raise AbmError(f"{dpath}: the check's draws differ from this calibration's NROY "
                           f"sample (cutoff, measure or candidates changed); delete {cdir} to "
                           "re-run the check")
    else:
        cdir.mkdir(parents=True, exist_ok=True)
        write_design(dpath, cfg, values)
    spath = cdir / "summaries.csv"
    if spath.exists():
        y, v, n = read_summaries(spath, cfg, k)
        say(f"check: {k} draws simulated before (re-used)")
        result.runs += k * sum(cfg.check.patients.values())
        seeds = {a.name: arm_seed(cfg.seed, a.name, CHECK_PATIENTS) for a in cfg.arms}
    else:
        say(f"check: {k} NROY draws x {' + '.join(f'{cfg.check.patients[a.name]} {a.name}' for a in cfg.arms)} "
            "patients")
        y, v, n, st = run_points(cfg, cdir, "check", values, purpose=CHECK_PATIENTS,
                                 patients=cfg.check.patients, executor=get_executor(),
                                 progress=progress, verbose=verbose, say=say)
        result.runs += st["runs"]
        result.failed += st["failed"]
        result.ran += st["ran"]
        seeds = st["seeds"]
    return {"values": values, "y": y, "v": v, "n": n, "seeds": seeds}


def _dump(data: dict) -> str:
    from abm.batch.tomlio import tables
    return "\n".join(tables(data)) + "\n"


__all__ = ["calibrate", "CalibrationResult", "CalibrationInterrupted", "arm_batch", "arm_seed",
           "calibration_folder", "run_points", "git_commit"]
