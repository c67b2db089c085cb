"""The TOML file of ``abm calibrate``: validated into a frozen :class:`CalibrationConfig`.

::

    [calibration]
    name = "trials"              # folder <out>/<name>/ (default: the file's stem)
    seed = 20260101              # designs, candidates and the virtual patients derive from it
    waves = 1                    # history-matching waves
    points = 20                  # design points per wave (or one number per wave)
    cutoff = 3.0                 # rule out a point whose implausibility measure exceeds it
    measure = "max"              # "max" | "second_max" | "third_max" over the targets
    samples = 1000               # NROY draws written to calibration.nc
    candidates = 100000          # candidates per round when sampling the NROY region

    [calibration.parameters]     # dotted config paths, ranges
    "kinetics.lymphoid_death_per_day" = {low = 0.05, high = 0.6, scale = "log"}
    "product.max_divisions" = {low = 10, high = 22}

    [calibration.arms.cd28]      # each arm: a batch file (its population) and its size
    batch = "trial_cd28.toml"    # relative to this file
    patients = 10

    [[calibration.targets]]
    arm = "cd28"
    summary = "crs_any"          # abm.studies.calibrate_targets.SUMMARIES
    observed = 0.93              # default: docs/model.md 11 for the arm's costimulation
    n = 101                      # a rate's trial size: Var_obs = p (1 - p) / n (or sd)
    discrepancy_sd = 0.08        # model discrepancy (a fraction; log10 units for kinetics)

    [calibration.check]          # optional: posterior predictive check
    draws = 5                    # NROY draws re-simulated
    patients = 10                # per arm (default: the arm's patients)

    [run]                        # optional run tables for every run of every arm
    end_day = 28.0

Every failure is a one-line :class:`~abm.errors.ConfigError` naming the file
and the key, e.g. ``configs/c.toml: calibration.parameters."product.homing_per_day".low
= -1.0 is not allowed: product.homing_per_day must be >= 0 (unit 1/day)``.
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path

from abm.batch.config import (BATCH_OWNED, BatchConfig, load_batch, param_index, param_kind,
                              parse_bounds, set_path)
from abm.batch.expand import expand_batch
from abm.config import config_from_dict
from abm.config.files import read_toml
from abm.errors import ConfigError
from abm.studies.calibrate_targets import SUMMARIES, Summary, default_target, to_scale
from abm.studies.emulator import MEASURES, Parameter, Target

KEYS = ("name", "description", "seed", "waves", "points", "cutoff", "measure", "samples",
        "candidates", "parameters", "arms", "targets", "check")
ARM_KEYS = ("batch", "patients")
TARGET_KEYS = ("arm", "summary", "name", "observed", "n", "sd", "discrepancy_sd", "source")
CHECK_KEYS = ("draws", "patients")
PARAM_KEYS = ("low", "high", "scale")
MAX_WAVES = 20
MAX_POINTS = 2000


@dataclass(frozen=True, eq=False)
class Arm:
    """One arm: a batch file whose population is simulated at every design point."""

    name: str
    file: str
    patients: int
    batch: BatchConfig            # as loaded with the calibration's run tables
    costimulation: str | None
    has_population: bool


@dataclass(frozen=True)
class TargetSpec:
    """One target: an arm's summary, its observed value and variances (on the summary's scale)."""

    name: str
    arm: str
    summary: Summary
    observed: float               # natural units (a fraction, cells/uL, day)
    obs_sd: float                 # on the emulated scale (fraction, log10)
    disc_sd: float
    n: int | None = None
    source: str = ""

    def target(self, patients: int) -> Target:
        """The engine's :class:`~abm.studies.emulator.Target` (a rate over ``patients`` runs)."""
        return Target(self.name, to_scale(self.summary, self.observed), self.obs_sd ** 2,
                      self.disc_sd ** 2, rate_n=patients if self.summary.kind == "rate" else None)


@dataclass(frozen=True)
class CheckSpec:
    draws: int
    patients: dict = field(hash=False)


@dataclass(frozen=True, eq=False)
class CalibrationConfig:
    file: str
    text: str
    data: dict
    name: str
    description: str
    seed: int
    waves: int
    points: tuple[int, ...]
    cutoff: float
    measure: str
    samples: int
    candidates: int
    parameters: tuple[Parameter, ...]
    arms: tuple[Arm, ...]
    targets: tuple[TargetSpec, ...]
    check: CheckSpec | None
    run_tables: dict

    @property
    def paths(self) -> list[str]:
        return [p.name for p in self.parameters]

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def points_of(self, wave: int) -> int:
        """Design points of wave ``wave`` (1-based)."""
        return self.points[min(wave, len(self.points)) - 1]

    @property
    def runs_per_wave(self) -> list[int]:
        per_point = sum(a.patients for a in self.arms)
        return [self.points_of(w) * per_point for w in range(1, self.waves + 1)]

    @property
    def check_runs(self) -> int:
        if self.check is None:
            return 0
        return self.check.draws * sum(self.check.patients[a.name] for a in self.arms)

    def summary(self) -> str:
        runs = self.runs_per_wave
        text = (f"calibration {self.name!r}: {len(self.parameters)} parameters, "
                f"{len(self.targets)} targets, {len(self.arms)} arm{'s' if len(self.arms) != 1 else ''}"
                f", {self.waves} wave{'s' if self.waves != 1 else ''} of "
                f"{'/'.join(str(self.points_of(w)) for w in range(1, self.waves + 1))} points: "
                f"{sum(runs)} runs")
        if self.check:
            text += f" + {self.check_runs} for the check"
        return text


def _fail(file, key, message):
    raise ConfigError(f"{key} {message}", path=file, key=key)


def _check_keys(file, table: dict, key: str, allowed) -> None:
    for k in table:
        if k not in allowed:
            close = difflib.get_close_matches(str(k), list(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            _fail(file, f"{key}.{k}" if key else k,
                  f"is not a known key{hint} (known keys: {', '.join(allowed)})")


def _int(file, v, key, lo=None, hi=None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        _fail(file, key, f"must be an integer (got {v!r})")
    if lo is not None and v < lo:
        _fail(file, key, f"must be >= {lo} (got {v!r})")
    if hi is not None and v > hi:
        _fail(file, key, f"must be <= {hi} (got {v!r})")
    return int(v)


def _float(file, v, key, *, ge=None, gt=None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        _fail(file, key, f"must be a finite number (got {v!r})")
    if ge is not None and v < ge:
        _fail(file, key, f"must be >= {ge} (got {v!r})")
    if gt is not None and not v > gt:
        _fail(file, key, f"must be > {gt} (got {v!r})")
    return float(v)


def _table(file, v, key) -> dict:
    if not isinstance(v, dict):
        _fail(file, key, f"must be a table (got {v!r})")
    return v


def is_calibration_file(path) -> bool:
    """True if ``path`` is a readable TOML file with a top-level ``[calibration]`` table."""
    try:
        return isinstance(read_toml(Path(path)).get("calibration"), dict)
    except ConfigError:
        return False


def load_calibration(path) -> CalibrationConfig:
    """Read and validate a calibration file (its arms' batch files included)."""
    path = Path(path)
    data = read_toml(path)
    text = path.read_text(encoding="utf-8")
    return calibration_from_dict(data, file=str(path), root=path.parent, text=text)


def calibration_from_dict(data: dict, *, file: str = "calibration", root=None,
                          text: str = "") -> CalibrationConfig:
    root = Path(root or ".")
    if "calibration" not in data:
        raise ConfigError("has no [calibration] table; it is not a calibration file",
                          path=file, key="calibration")
    if "batch" in data:
        _fail(file, "batch", "is not allowed in a calibration file: each arm names its own "
                             "batch file (calibration.arms.<arm>.batch)")
    cal = _table(file, data["calibration"], "calibration")
    _check_keys(file, cal, "calibration", KEYS)
    run_tables = {k: v for k, v in data.items() if k != "calibration"}

    name = cal.get("name", Path(file).stem)
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-." for c in name) \
            or name.startswith("."):
        _fail(file, "calibration.name", f"must be a folder name of letters, digits, '_', '-' "
                                        f"and '.' (got {name!r})")
    if "seed" not in cal:
        _fail(file, "calibration.seed", "is required (designs and virtual patients derive from "
                                        "it), e.g. seed = 1")
    seed = _int(file, cal["seed"], "calibration.seed", 0, 2**63 - 1)
    waves = _int(file, cal.get("waves", 1), "calibration.waves", 1, MAX_WAVES)
    pts = cal.get("points", 20)
    if isinstance(pts, list):
        if not pts:
            _fail(file, "calibration.points", "must be a number or a non-empty array")
        points = tuple(_int(file, p, f"calibration.points[{i}]", 2, MAX_POINTS)
                       for i, p in enumerate(pts))
    else:
        points = (_int(file, pts, "calibration.points", 2, MAX_POINTS),)
    cutoff = _float(file, cal.get("cutoff", 3.0), "calibration.cutoff", gt=0)
    measure = cal.get("measure", "max")
    if measure not in MEASURES:
        _fail(file, "calibration.measure", f"must be one of {', '.join(map(repr, MEASURES))} "
                                           f"(got {measure!r})")
    samples = _int(file, cal.get("samples", 1000), "calibration.samples", 1, 1_000_000)
    candidates = _int(file, cal.get("candidates", 100_000), "calibration.candidates", 1000,
                      10_000_000)
    description = cal.get("description", "")
    if not isinstance(description, str):
        _fail(file, "calibration.description", f"must be text (got {description!r})")

    arms = _arms(file, cal, root, run_tables)
    params = _parameters(file, cal, arms)
    targets = _targets(file, cal, arms)
    check = _check(file, cal, arms)
    return CalibrationConfig(file=file, text=text, data=copy.deepcopy(data), name=name,
                             description=description, seed=seed, waves=waves, points=points,
                             cutoff=cutoff, measure=measure, samples=samples,
                             candidates=candidates, parameters=tuple(params), arms=tuple(arms),
                             targets=tuple(targets), check=check, run_tables=run_tables)


def _arms(file, cal, root: Path, run_tables: dict) -> list[Arm]:
    table = _table(file, cal.get("arms", {}), "calibration.arms")
    if not table:
        _fail(file, "calibration.arms", "lists no arm; add e.g. [calibration.arms.cd28] with "
                                        "batch = \"trial_cd28.toml\" and patients = 10")
    arms = []
    for name, a in table.items():
        key = f"calibration.arms.{name}"
        if not all(c.isalnum() or c in "_-." for c in name):
            _fail(file, key, "must be named with letters, digits, '_', '-' and '.'")
        a = _table(file, a, key)
        _check_keys(file, a, key, ARM_KEYS)
        if "batch" not in a or not isinstance(a["batch"], str):
            _fail(file, f"{key}.batch", "is required: the batch file of the arm's virtual "
                                        "population, relative to this file")
        patients = _int(file, a.get("patients"), f"{key}.patients", 1, 20_000) \
            if "patients" in a else _fail(file, f"{key}.patients", "is required (virtual "
                                                                   "patients per design point)")
        bpath = root / a["batch"]
        try:
            read_toml(bpath, key=f"{key}.batch", owner=file)
        except ConfigError:
            raise
        batch = load_batch(bpath, copy.deepcopy(run_tables) if run_tables else None)
        if batch.sweep is not None:
            _fail(file, f"{key}.batch", f"names a batch with a [batch.sweep] ({bpath}); the "
                                        "calibration sweeps its own design points: remove it")
        try:
            spec = expand_batch(batch, [0])[0]
            costim = spec.resolve().product.costimulation
        except ConfigError:
            costim = batch.base_config().product.costimulation
        arms.append(Arm(name=name, file=str(bpath), patients=patients, batch=batch,
                        costimulation=costim, has_population=batch.population is not None))
    return arms


def _parameters(file, cal, arms: list[Arm]) -> list[Parameter]:
    table = _table(file, cal.get("parameters", {}), "calibration.parameters")
    out = []

    def walk(t: dict, head: str):
        for k, v in t.items():
            path = f"{head}.{k}" if head else k
            if path in param_index():
                yield path, v
            elif isinstance(v, dict) and not set(v) <= set(PARAM_KEYS) and \
                    any(p.startswith(path + ".") for p in param_index()):
                yield from walk(v, path)
            else:
                close = difflib.get_close_matches(path, list(param_index()), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                _fail(file, f'calibration.parameters."{path}"',
                      f"is not a parameter path of the run config{hint} ('abm show-config "
                      "CONFIG' lists every parameter)")

    for path, v in walk(table, ""):
        key = f'calibration.parameters."{path}"'
        if path in BATCH_OWNED:
            _fail(file, key, f"cannot be calibrated: {path} {BATCH_OWNED[path]}")
        kind = param_kind(path)
        if kind not in ("float", "int"):
            _fail(file, key, f"is a {kind} parameter; only numbers can be calibrated")
        v = _table(file, v, key)
        _check_keys(file, v, key, PARAM_KEYS)
        low, high, scale = parse_bounds(lambda k, m: _fail(file, k, m), v, key)
        if kind == "int" and round(high) - round(low) < 1:
            _fail(file, f"{key}.high", "must leave at least two integers in the range")
        for arm in arms:
            if arm.batch.population and any(c.path == path for c in arm.batch.population.covariates):
                _fail(file, key, f"is a covariate of arm {arm.name}'s population ({arm.file}); "
                                 "calibrate a parameter or draw it, not both")
            for k, x in (("low", low), ("high", high)):
                value = int(round(x)) if kind == "int" else x
                d = copy.deepcopy(arm.batch.base_data)
                set_path(d, path, value)
                try:
                    config_from_dict(d)
                except ConfigError as exc:
                    _fail(file, f"{key}.{k}", f"= {x!r} is not allowed (arm {arm.name}): {exc}")
        out.append(Parameter(path, low, high, scale, integer=kind == "int"))
    if not out:
        _fail(file, "calibration.parameters", "lists no parameter; add e.g. "
                                              "\"kinetics.lymphoid_death_per_day\" = {low = 0.05, "
                                              "high = 0.6, scale = \"log\"}")
    return out


def _targets(file, cal, arms: list[Arm]) -> list[TargetSpec]:
    items = cal.get("targets", [])
    if not isinstance(items, list) or not items:
        _fail(file, "calibration.targets", "lists no target; add [[calibration.targets]] tables "
                                           "(arm, summary, observed, n or sd, discrepancy_sd)")
    names = {a.name: a for a in arms}
    out, seen = [], set()
    for i, t in enumerate(items):
        key = f"calibration.targets[{i}]"
        t = _table(file, t, key)
        _check_keys(file, t, key, TARGET_KEYS)
        arm = t.get("arm")
        if arm not in names:
            _fail(file, f"{key}.arm", f"must name an arm ({', '.join(names)}) (got {arm!r})")
        sname = t.get("summary")
        if sname not in SUMMARIES:
            close = difflib.get_close_matches(str(sname), list(SUMMARIES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            _fail(file, f"{key}.summary", f"must be one of {', '.join(SUMMARIES)} "
                                          f"(got {sname!r}){hint}")
        summ = SUMMARIES[sname]
        name = t.get("name", f"{arm}.{sname}")
        if not isinstance(name, str) or not name:
            _fail(file, f"{key}.name", f"must be text (got {name!r})")
        if name in seen:
            _fail(file, f"{key}.name", f"{name!r} is given twice (set name = ... to tell two "
                                       "targets of the same summary apart)")
        seen.add(name)
        default = default_target(names[arm].costimulation, sname) or {}
        if "observed" in t:
            observed = _float(file, t["observed"], f"{key}.observed")
        elif default:
            observed = default["observed"]
        else:
            _fail(file, f"{key}.observed", f"is required: docs/model.md 11 gives no {sname} for "
                                           f"arm {arm} (costimulation {names[arm].costimulation})")
        if summ.kind == "rate" and not 0 <= observed <= 1:
            _fail(file, f"{key}.observed", f"must be a fraction in [0, 1] for a rate "
                                           f"(got {observed!r})")
        if summ.kind != "rate" and not observed > 0:
            _fail(file, f"{key}.observed", f"must be > 0 (compared on the log10 scale; got "
                                           f"{observed!r})")
        if "n" in t and "sd" in t:
            _fail(file, f"{key}.sd", "give n (a rate's trial size) or sd, not both")
        n = None
        if "sd" in t:
            sd = _float(file, t["sd"], f"{key}.sd", ge=0)
        elif summ.kind == "rate" and ("n" in t or default.get("n")):
            n = _int(file, t["n"], f"{key}.n", 1) if "n" in t else int(default["n"])
            sd = math.sqrt(observed * (1 - observed) / n)
        else:
            what = "n (trial size) or sd" if summ.kind == "rate" else "sd (log10 units)"
            _fail(file, f"{key}.sd" if summ.kind != "rate" else f"{key}.n",
                  f"is required: the observation's uncertainty, {what}")
        if "n" in t and summ.kind != "rate":
            _fail(file, f"{key}.n", f"is for rates only; give sd (log10 units) for {sname}")
        if "discrepancy_sd" not in t:
            _fail(file, f"{key}.discrepancy_sd", "is required: the model discrepancy sd (a "
                                                 "fraction for rates, log10 units for kinetics)")
        disc = _float(file, t["discrepancy_sd"], f"{key}.discrepancy_sd", ge=0)
        if sd == 0 and disc == 0:
            _fail(file, f"{key}.discrepancy_sd", "and the observation sd are both 0: give the "
                                                 "target some uncertainty")
        source = t.get("source", "" if "observed" in t else default.get("source", ""))
        out.append(TargetSpec(name=name, arm=arm, summary=summ, observed=observed, obs_sd=sd,
                              disc_sd=disc, n=n, source=str(source)))
    return out


def _check(file, cal, arms: list[Arm]) -> CheckSpec | None:
    if "check" not in cal:
        return None
    t = _table(file, cal["check"], "calibration.check")
    _check_keys(file, t, "calibration.check", CHECK_KEYS)
    if "draws" not in t:
        _fail(file, "calibration.check.draws", "is required (NROY draws to re-simulate)")
    draws = _int(file, t["draws"], "calibration.check.draws", 1, 1000)
    p = t.get("patients")
    per = {a.name: (a.patients if p is None else
                    _int(file, p, "calibration.check.patients", 1, 20_000)) for a in arms}
    return CheckSpec(draws=draws, patients=per)


__all__ = ["Arm", "TargetSpec", "CheckSpec", "CalibrationConfig", "is_calibration_file",
           "load_calibration",
           "calibration_from_dict"]
