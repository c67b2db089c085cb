"""The ``[batch]`` section of a TOML file: validated into a frozen :class:`BatchConfig`.

A batch file names the run config the runs start from (``base``, relative to
the batch file) and/or gives run sections inline (``[run]``, ``[lattice]``,
... override the base key by key), plus::

    [batch]
    name = "trial"            # output folder <output.dir>/<name>/ (default: file stem)
    root_seed = 20261121      # every run seed and covariate draw derives from it
    replicates = 2            # runs per parameter set, each with its own seed
    base = "default.toml"     # optional
    common_seeds = false      # true: sweep points share seeds (paired design)

    [batch.sweep]             # optional: method "grid" | "list" | "lhs"
    method = "grid"
    "patient.tumour_burden_cells" = [1e9, 1e10, 1e11]
    "product.preset" = ["cd28", "4-1bb"]

    [batch.population]        # optional: a virtual population
    size = 50
    "tumour.antigen_median_molecules" = {dist = "lognormal", median = 1e4, sigma = 0.5}

    [batch.posterior]         # optional: parameter draws of a calibration
    file = "calibration.nc"   # samples(draw, parameter), relative to the batch file
    draws = 20                # rows used (default: all)
    select = "first"          # "first" rows in file order, or a seeded "random" choice

The runs are sweep points x posterior draws x virtual patients x replicates:
every draw sets its parameters for a whole virtual population (see
:mod:`abm.batch.posterior`).

Parameter paths are checked against the real :class:`~abm.config.Config`
(a misspelt path gets a did-you-mean hint); sweep values and ``choice``
values are checked one by one against the parameter's type and range; every
failure raises :class:`~abm.errors.ConfigError` naming the file and the key
path, e.g. ``configs/b.toml: batch.sweep."patient.tumour_burden_cells"[1] =
-1.0: patient.tumour_burden_cells must be >= 1000000.0 (unit cells)``.

Draws that may fall outside a parameter's allowed range (a ``normal`` on a
bounded parameter, say) are allowed; such a run's config fails validation and
the run is recorded as failed, while the batch goes on. :attr:`BatchConfig.warnings`
lists the covariates for which this can happen.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from abm.config import Config, config_from_dict
from abm.config.files import read_toml
from abm.schema import Section, build, describe, param, walk_params
from abm.errors import ConfigError

#: Paths the batch sets for each run; a sweep or population may not set them.
BATCH_OWNED = {
    "run.name": "is set by the batch to the run id",
    "run.seed": "is derived for each run from batch.root_seed",
    "run.replicate": "is set by the batch from the replicate index",
    "output.dir": "is where the batch folder goes; give it in the base config or with --out",
}

SWEEP_METHODS = ("grid", "list", "lhs")
LHS_SCALES = ("linear", "log")

#: distribution -> (required arguments, optional arguments with defaults)
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], dict[str, object]]] = {
    "uniform": (("low", "high"), {}),
    "loguniform": (("low", "high"), {}),
    "normal": (("mean", "sd"), {}),
    "lognormal": (("median", "sigma"), {"low": None, "high": None}),
    "truncnormal": (("mean", "sd", "low", "high"), {}),
    "beta": (("a", "b"), {"low": 0.0, "high": 1.0}),
    "choice": (("values",), {"weights": None}),
}

#: Most runs of one batch (sweep points x virtual patients x replicates), and so
#: the most LHS samples, patients or replicates. Validation and ``--dry-run``
#: check every run's config (a few ms each), so this bounds them to about a
#: minute; a larger study is several batches.
MAX_RUNS = 20_000

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class BatchParams(Section):
    """The scalar keys of ``[batch]``."""

    name: str = param("batch", unit="-", doc="batch name: the output folder <output.dir>/<name>")
    root_seed: int | None = param(None, unit="-", ge=0, lt=2**63,
                                  doc="root seed of every run seed and covariate draw; "
                                      "drawn and recorded when absent")
    replicates: int = param(1, unit="-", ge=1, le=MAX_RUNS,
                            doc="runs per parameter set (same parameters, different seeds)")
    base: str | None = param(None, unit="-",
                             doc="run config the runs start from, relative to the batch file")
    common_seeds: bool = param(False, unit="-",
                               doc="runs of different sweep points share seeds (paired design)")
    description: str = param("", unit="-", doc="free text")

    def check(self, fail):
        if not _NAME_RE.match(self.name):
            fail("name", f"must be a folder name of letters, digits, '_', '-' and '.' "
                         f"(got {self.name!r})")


@dataclass(frozen=True)
class SweepParam:
    """One swept parameter: ``values`` (grid, list, lhs categorical) or a range (lhs)."""

    path: str
    values: tuple | None = None
    low: float | None = None
    high: float | None = None
    scale: str = "linear"


@dataclass(frozen=True)
class Sweep:
    method: str
    params: tuple[SweepParam, ...]
    samples: int | None = None

    @property
    def n_points(self) -> int:
        if self.method == "lhs":
            return int(self.samples)
        if self.method == "list":
            return len(self.params[0].values)
        n = 1
        for p in self.params:
            n *= len(p.values)
        return n


@dataclass(frozen=True)
class Covariate:
    """One covariate of a virtual population: ``path ~ dist(**args)``."""

    path: str
    dist: str
    args: dict = field(hash=False)


@dataclass(frozen=True)
class Population:
    size: int
    covariates: tuple[Covariate, ...]


@dataclass(frozen=True, eq=False)
class Posterior:
    """Posterior draws: ``values[d][j]`` is parameter ``parameters[j]`` in draw ``d``.

    Attributes:
        file: the calibration file (resolved path; None when the samples were
            given inline only).
        parameters: dotted config paths.
        rows: the file row of each draw.
        values: one tuple per draw (ints for integer parameters).
        select: how the rows were chosen ("first" or "random").
        n_rows: rows in the file (None when given inline).
        source: every row of the file (to choose again when the root seed
            changes; None when given inline).
    """

    file: str | None
    parameters: tuple[str, ...]
    rows: tuple[int, ...]
    values: tuple[tuple, ...]
    select: str = "first"
    n_rows: int | None = None
    source: object = field(default=None, repr=False)

    @property
    def n_draws(self) -> int:
        return len(self.rows)

    def draw(self, d: int) -> dict:
        """``{path: value}`` of draw ``d``."""
        return dict(zip(self.parameters, self.values[d]))


@dataclass(frozen=True, eq=False)
class BatchConfig:
    """A validated batch: its scalar keys, sweep, population and the base run tables.

    Attributes:
        file: the batch file (or None when built from a dict).
        params: ``[batch]`` scalar keys.
        sweep, population, posterior: or None.
        base_data: the run tables every run starts from (base file merged with
            the inline sections), as parsed (unresolved, so a ``product.preset``
            covariate picks its preset's values).
        base_file: the resolved ``base`` path, if any.
        root_seed: ``params.root_seed`` or a drawn one (``root_seed_drawn``).
        warnings: one line per covariate whose draws may fail validation.
    """

    file: str | None
    params: BatchParams
    sweep: Sweep | None
    population: Population | None
    base_data: dict
    base_file: str | None
    root_seed: int
    root_seed_drawn: bool = False
    warnings: tuple[str, ...] = ()
    posterior: Posterior | None = None

    @property
    def name(self) -> str:
        return self.params.name

    @property
    def replicates(self) -> int:
        return self.params.replicates

    @property
    def n_points(self) -> int:
        return self.sweep.n_points if self.sweep else 1

    @property
    def n_members(self) -> int:
        return self.population.size if self.population else 1

    @property
    def n_draws(self) -> int:
        return self.posterior.n_draws if self.posterior else 1

    @property
    def n_runs(self) -> int:
        return self.n_points * self.n_draws * self.n_members * self.replicates

    @property
    def varied(self) -> list[str]:
        """Parameter paths set per run (sweep, then posterior draws, then covariates)."""
        out = [p.path for p in self.sweep.params] if self.sweep else []
        out += list(self.posterior.parameters) if self.posterior else []
        out += [c.path for c in self.population.covariates] if self.population else []
        return out

    def base_config(self) -> Config:
        return config_from_dict(self.base_data, file=self.file)

    def with_root_seed(self, seed: int) -> "BatchConfig":
        posterior = self.posterior
        if posterior is not None and posterior.select == "random" and posterior.source is not None:
            ctx = _Ctx(self.file, self.base_data)   # the rows follow the root seed
            posterior = _take_draws(ctx, posterior, posterior.n_draws, int(seed))
            ctx.check_conflicts(set(self.varied))
        return dataclasses.replace(self, root_seed=int(seed), root_seed_drawn=False,
                                   params=self.params.replace(root_seed=int(seed)),
                                   posterior=posterior)

    def summary(self) -> str:
        parts = []
        if self.sweep:
            parts.append(f"{self.n_points} {self.sweep.method} sweep points")
        if self.posterior:
            parts.append(f"{self.n_draws} posterior draw{'s' if self.n_draws != 1 else ''}")
        if self.population:
            parts.append(f"{self.n_members} virtual patients")
        parts.append(f"{self.replicates} replicate{'s' if self.replicates != 1 else ''}")
        return f"batch {self.name!r}: {self.n_runs} runs ({' x '.join(parts)})"


# ----------------------------------------------------------------------------
# parameter paths
# ----------------------------------------------------------------------------


@lru_cache(maxsize=None)
def param_index() -> dict[str, tuple[dataclasses.Field, object]]:
    """Every leaf parameter path of :class:`Config` -> (field, type)."""
    return {key: (f, tp) for key, f, tp in walk_params(Config)}


@lru_cache(maxsize=None)
def _section_paths() -> frozenset[str]:
    out = set()
    for key in param_index():
        parts = key.split(".")
        for i in range(1, len(parts)):
            out.add(".".join(parts[:i]))
    return frozenset(out)


def param_kind(path: str) -> str:
    """``"float"``, ``"int"``, ``"bool"``, ``"str"`` or ``"tuple"`` for a parameter path."""
    _, tp = param_index()[path]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is tuple:
        return "tuple"
    return {float: "float", int: "int", bool: "bool", str: "str"}[tp]


def qkey(prefix: str, path: str) -> str:
    """Key path text with a dotted parameter path quoted: ``batch.sweep."a.b"``."""
    return f'{prefix}."{path}"'


def set_path(data: dict, path: str, value) -> None:
    """Set ``data[a][b][c] = value`` for ``path = "a.b.c"`` (creating tables)."""
    *heads, last = path.split(".")
    d = data
    for h in heads:
        nxt = d.get(h)
        if not isinstance(nxt, dict):
            nxt = {}
            d[h] = nxt
        d = nxt
    d[last] = value


def not_a_path(path: str) -> str:
    """Why ``path`` is not a parameter: ``is not a parameter path ...; did you mean ...?
    ('abm show-config CONFIG' lists every parameter`` (the caller closes the parenthesis)."""
    close = difflib.get_close_matches(path, list(param_index()), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (f"is not a parameter path of the run config{hint} ('abm show-config CONFIG' lists "
            "every parameter")


class _Ctx:
    def __init__(self, file: str | None, base_data: dict):
        self.file = file
        self.base_data = base_data
        self.warnings: list[str] = []
        self.conflicts: list[tuple] = []

    def fail(self, key: str, message: str):
        raise ConfigError(f"{key} {message}", path=self.file, key=key)

    def paths(self, table: dict, prefix: str, reserved: tuple[str, ...]):
        """Yield ``(path, value, key_text)`` for the parameter-path keys of ``table``.

        Keys may be quoted dotted paths (``"patient.weight_kg" = ...``) or
        nested tables (``[batch.sweep.patient] weight_kg = ...``).
        """
        seen: set[str] = set()

        def walk(t: dict, head: str):
            for k, v in t.items():
                if not head and k in reserved:
                    continue
                path = f"{head}.{k}" if head else k
                key = qkey(prefix, path)
                if path in param_index():
                    if path in BATCH_OWNED:
                        self.fail(key, f"cannot be varied: run config key {path} "
                                       f"{BATCH_OWNED[path]}")
                    if path in seen:
                        self.fail(key, "is given twice")
                    seen.add(path)
                    yield path, v, key
                elif path in _section_paths() and isinstance(v, dict):
                    yield from walk(v, path)
                else:
                    other = f"; the other keys of this table are {', '.join(reserved)}" \
                        if reserved else ""
                    self.fail(key, f"{not_a_path(path)}{other})")

        yield from walk(table, "")

    def check_value(self, path: str, value, key: str, typical: bool = False) -> None:
        """Check ``value`` of ``path`` on top of the base config.

        A type, range or choice error of ``path`` itself fails at once (unless
        ``typical``: a representative draw of a distribution, whose tails may
        legitimately fail per run). An error on another key -- a combination
        with the base -- is kept and raised by :meth:`check_conflicts` unless
        that key is varied too (then only some runs can fail).
        """
        if isinstance(value, dict):
            self.fail(key, f"must be a value of {path}, not a table (got {value!r})")
        data = copy.deepcopy(self.base_data)
        set_path(data, path, value)
        try:
            config_from_dict(data)
        except ConfigError as exc:
            if _concerns(exc.key, path):
                if not typical:
                    self.fail(key, f"= {value!r} is not allowed: {exc}")
                return
            self.conflicts.append((key, value, exc, typical))

    def check_conflicts(self, varied: set[str]) -> None:
        """Fail for a varied value that conflicts with a base key that nothing varies."""
        for key, value, exc, typical in self.conflicts:
            if any(_concerns(exc.key, v) for v in varied):
                continue
            if typical:
                self.fail(key, f"conflicts with the run config (checked with a typical draw, "
                               f"{value!r}): {exc}")
            self.fail(key, f"= {value!r} conflicts with the run config, so its runs would "
                           f"fail: {exc}")


def _concerns(error_key: str | None, path: str) -> bool:
    k = error_key or ""
    return k == path or k.startswith(path + "[") or k.startswith(path + ".")


def _number(ctx: _Ctx, v, key: str) -> float:
    return _finite(ctx.fail, v, key)


def _finite(fail, v, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        fail(key, f"must be a finite number (got {v!r})")
    return float(v)


def parse_bounds(fail, v: dict, key: str) -> tuple[float, float, str]:
    """``(low, high, scale)`` of a range table ``{low, high, scale = "linear" | "log"}``.

    Shared by batch sweeps, sensitivity studies and calibrations, so that the
    three give the same one-line errors; ``fail(key, message)`` raises one.
    """
    for k in ("low", "high"):
        if k not in v:
            fail(f"{key}.{k}", "is required")
    low, high = (_finite(fail, v[k], f"{key}.{k}") for k in ("low", "high"))
    scale = v.get("scale", "linear")
    if scale not in LHS_SCALES:
        fail(f"{key}.scale", f"must be 'linear' or 'log' (got {scale!r})")
    if not low < high:
        fail(f"{key}.high", f"must be > low = {low!r} (got {high!r})")
    if scale == "log" and not low > 0:
        fail(f"{key}.low", f"must be > 0 with scale = 'log' (got {low!r})")
    return low, high, scale


def _check_length(ctx: _Ctx, values: list, key: str) -> None:
    if len(values) > MAX_RUNS:
        ctx.fail(key, f"lists {len(values)} values, more than {MAX_RUNS} (the most runs of "
                      "a batch)")


def _check_keys(ctx: _Ctx, table: dict, key: str, allowed) -> None:
    for k in table:
        if k not in allowed:
            close = difflib.get_close_matches(k, list(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            ctx.fail(f"{key}.{k}", f"is not a known key{hint} (known keys: "
                                   f"{', '.join(allowed)})")


# ----------------------------------------------------------------------------
# sweep and population
# ----------------------------------------------------------------------------


def _parse_sweep(ctx: _Ctx, table) -> Sweep:
    pre = "batch.sweep"
    if not isinstance(table, dict):
        ctx.fail(pre, f"must be a table (got {table!r})")
    method = table.get("method")
    if method is None:
        ctx.fail(f"{pre}.method", f"is required: one of {', '.join(map(repr, SWEEP_METHODS))}")
    if method not in SWEEP_METHODS:
        close = difflib.get_close_matches(str(method), SWEEP_METHODS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        ctx.fail(f"{pre}.method", f"must be one of {', '.join(map(repr, SWEEP_METHODS))} "
                                  f"(got {method!r}){hint}")
    samples = table.get("samples")
    if method == "lhs":
        if samples is None:
            ctx.fail(f"{pre}.samples", "is required for method = 'lhs' (the number of points)")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            ctx.fail(f"{pre}.samples", f"must be an integer >= 1 (got {samples!r})")
        if samples > MAX_RUNS:
            ctx.fail(f"{pre}.samples", f"must be at most {MAX_RUNS} (got {samples!r})")
    elif samples is not None:
        ctx.fail(f"{pre}.samples", f"is only used with method = 'lhs' (method is {method!r})")
    items = list(ctx.paths(table, pre, ("method", "samples")))
    if method != "lhs":   # count the points before checking each value (a few ms each)
        n = 1
        for _, v, key in items:
            if isinstance(v, list):
                _check_length(ctx, v, key)
                n = max(n, len(v)) if method == "list" else n * max(1, len(v))
        if n > MAX_RUNS:
            ctx.fail(pre, f"gives {n} sweep points, more than {MAX_RUNS} runs in all")
    params = []
    for path, v, key in items:
        if method == "lhs":
            params.append(_parse_lhs_param(ctx, path, v, key))
            continue
        if not isinstance(v, list) or not v:
            ctx.fail(key, f"must be a non-empty array of values for method = {method!r} "
                          f"(got {v!r})")
        for i, x in enumerate(v):
            ctx.check_value(path, x, f"{key}[{i}]")
        params.append(SweepParam(path, values=tuple(_freeze(x) for x in v)))
    if not params:
        ctx.fail(pre, "lists no parameter to sweep (add e.g. "
                      "\"patient.tumour_burden_cells\" = [1e9, 1e10])")
    if method == "list":
        lengths = {p.path: len(p.values) for p in params}
        if len(set(lengths.values())) > 1:
            ctx.fail(pre, "method = 'list' needs arrays of equal length (got "
                          + ", ".join(f"{k}: {n}" for k, n in lengths.items()) + ")")
    return Sweep(method, tuple(params), samples if method == "lhs" else None)


def _parse_lhs_param(ctx: _Ctx, path: str, v, key: str) -> SweepParam:
    if not isinstance(v, dict):
        ctx.fail(key, "must be a table {low, high, scale = 'linear' | 'log'} or {values = [...]} "
                      f"for method = 'lhs' (got {v!r})")
    if "values" in v:
        _check_keys(ctx, v, key, ("values",))
        vals = v["values"]
        if not isinstance(vals, list) or not vals:
            ctx.fail(f"{key}.values", f"must be a non-empty array (got {vals!r})")
        _check_length(ctx, vals, f"{key}.values")
        for i, x in enumerate(vals):
            ctx.check_value(path, x, f"{key}.values[{i}]")
        return SweepParam(path, values=tuple(_freeze(x) for x in vals))
    _check_keys(ctx, v, key, ("low", "high", "scale"))
    if param_kind(path) not in ("float", "int"):
        ctx.fail(key, f"is a {param_kind(path)} parameter: give {{values = [...]}} to sample it")
    low, high, scale = parse_bounds(ctx.fail, v, key)
    for k, x in (("low", low), ("high", high)):
        ctx.check_value(path, int(round(x)) if param_kind(path) == "int" else x, f"{key}.{k}")
    return SweepParam(path, low=low, high=high, scale=scale)


def _parse_population(ctx: _Ctx, table) -> Population:
    pre = "batch.population"
    if not isinstance(table, dict):
        ctx.fail(pre, f"must be a table (got {table!r})")
    size = table.get("size")
    if size is None:
        ctx.fail(f"{pre}.size", "is required (the number of virtual patients)")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        ctx.fail(f"{pre}.size", f"must be an integer >= 1 (got {size!r})")
    if size > MAX_RUNS:
        ctx.fail(f"{pre}.size", f"must be at most {MAX_RUNS} (got {size!r})")
    covs = [_parse_covariate(ctx, path, v, key) for path, v, key in ctx.paths(table, pre, ("size",))]
    return Population(size, tuple(covs))


def _parse_covariate(ctx: _Ctx, path: str, v, key: str) -> Covariate:
    if not isinstance(v, dict):
        ctx.fail(key, f"must be a distribution table, e.g. {{dist = \"uniform\", low = 0, "
                      f"high = 1}} (got {v!r})")
    dist = v.get("dist")
    if dist is None:
        ctx.fail(f"{key}.dist", f"is required: one of {', '.join(DISTRIBUTIONS)}")
    if dist not in DISTRIBUTIONS:
        close = difflib.get_close_matches(str(dist), list(DISTRIBUTIONS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        ctx.fail(f"{key}.dist", f"must be one of {', '.join(DISTRIBUTIONS)} (got {dist!r}){hint}")
    required, optional = DISTRIBUTIONS[dist]
    _check_keys(ctx, v, key, ("dist", *required, *optional))
    for k in required:
        if k not in v:
            ctx.fail(f"{key}.{k}", f"is required for dist = {dist!r} (arguments: "
                                   f"{', '.join(required + tuple(optional))})")
    kind = param_kind(path)
    if dist == "choice":
        vals = v["values"]
        if not isinstance(vals, list) or not vals:
            ctx.fail(f"{key}.values", f"must be a non-empty array (got {vals!r})")
        _check_length(ctx, vals, f"{key}.values")
        for i, x in enumerate(vals):
            ctx.check_value(path, x, f"{key}.values[{i}]")
        weights = v.get("weights")
        if weights is not None:
            if not isinstance(weights, list) or len(weights) != len(vals):
                ctx.fail(f"{key}.weights", f"must be an array of {len(vals)} numbers, one per "
                                           f"value (got {weights!r})")
            w = [_number(ctx, x, f"{key}.weights[{i}]") for i, x in enumerate(weights)]
            if min(w) < 0 or sum(w) <= 0:
                ctx.fail(f"{key}.weights", f"must be >= 0 with a positive sum (got {weights!r})")
            weights = tuple(w)
        return Covariate(path, dist, {"values": tuple(_freeze(x) for x in vals),
                                      "weights": weights})
    if kind not in ("float", "int"):
        ctx.fail(f"{key}.dist", f"{dist!r} draws numbers but {path} is a {kind} parameter; "
                                "use dist = \"choice\"")
    args = {k: _number(ctx, v.get(k, optional.get(k)), f"{key}.{k}")
            for k in (*required, *optional) if k in v or optional.get(k) is not None}
    if dist in ("uniform", "loguniform", "truncnormal", "beta") and not args["low"] < args["high"]:
        ctx.fail(f"{key}.high", f"must be > low = {args['low']!r} (got {args['high']!r})")
    if dist == "loguniform" and not args["low"] > 0:
        ctx.fail(f"{key}.low", f"must be > 0 for dist = 'loguniform' (got {args['low']!r})")
    for k in ("sd", "sigma"):
        if k in args and args[k] < 0:
            ctx.fail(f"{key}.{k}", f"must be >= 0 (got {args[k]!r})")
    if dist == "truncnormal" and not args["sd"] > 0:
        ctx.fail(f"{key}.sd", f"must be > 0 for dist = 'truncnormal' (got {args['sd']!r})")
    if dist == "lognormal" and not args["median"] > 0:
        ctx.fail(f"{key}.median", f"must be > 0 (got {args['median']!r})")
    if dist == "lognormal":
        lo, hi = args.get("low", 0.0), args.get("high", math.inf)
        if not 0 <= lo < hi:
            ctx.fail(f"{key}.high", f"must be > low = {lo!r} >= 0 (got {hi!r})")
        if not lo <= args["median"] <= hi:
            ctx.fail(f"{key}.median", f"must lie in [low, high] = [{lo!r}, {hi!r}] (got {args['median']!r})")
    if dist == "beta":
        for k in ("a", "b"):
            if not args[k] > 0:
                ctx.fail(f"{key}.{k}", f"must be > 0 (got {args[k]!r})")
    support = {
        "uniform": (args.get("low"), args.get("high")),
        "loguniform": (args.get("low"), args.get("high")),
        "truncnormal": (args.get("low"), args.get("high")),
        "beta": (args.get("low"), args.get("high")),
        "normal": (-math.inf, math.inf) if args.get("sd", 0) > 0 else (args.get("mean"),) * 2,
        "lognormal": (max(math.nextafter(0.0, 1.0), args.get("low", 0.0)), args.get("high", math.inf))
        if args.get("sigma", 0) > 0 else (args.get("median"),) * 2,
    }[dist]
    ctx.check_value(path, _cast_int(path, _typical(dist, args)), key, typical=True)
    if not _inside(path, support):
        ctx.warnings.append(f"{key}: {dist} draws can fall outside the allowed range of "
                            f"{path} ({describe(param_index()[path][0])}); runs with such "
                            "draws will fail")
    return Covariate(path, dist, args)


def _typical(dist: str, a: dict) -> float:
    """A central value of a distribution (to check it against the base config)."""
    if dist == "uniform":
        return 0.5 * (a["low"] + a["high"])
    if dist == "loguniform":
        return math.sqrt(a["low"] * a["high"])
    if dist == "normal":
        return a["mean"]
    if dist == "lognormal":
        return a["median"]
    if dist == "truncnormal":
        return min(max(a["mean"], a["low"]), a["high"])
    return a["low"] + (a["high"] - a["low"]) * a["a"] / (a["a"] + a["b"])   # beta


def _cast_int(path: str, x: float):
    return int(math.floor(x + 0.5)) if param_kind(path) == "int" else x


def _inside(path: str, support: tuple[float, float]) -> bool:
    """True if the closed interval ``support`` lies inside the allowed range of ``path``."""
    f, _ = param_index()[path]
    m = f.metadata
    a, b = support
    ok = True
    if m.get("ge") is not None:
        ok &= a >= m["ge"]
    if m.get("gt") is not None:
        ok &= a > m["gt"]
    if m.get("le") is not None:
        ok &= b <= m["le"]
    if m.get("lt") is not None:
        ok &= b < m["lt"]
    return bool(ok)


def _freeze(x):
    return tuple(_freeze(y) for y in x) if isinstance(x, list) else x


# ----------------------------------------------------------------------------
# posterior draws
# ----------------------------------------------------------------------------

POSTERIOR_KEYS = ("file", "draws", "select", "rows", "samples")


def _parse_posterior(ctx: _Ctx, table, root, root_seed: int) -> Posterior:
    """``[batch.posterior]``: a calibration file (``file``, ``draws``, ``select``), or the
    draws themselves (``samples``, ``rows``: the form a resolved ``batch.toml`` records)."""
    from abm.batch.posterior import SELECT, read_samples
    pre = "batch.posterior"
    if not isinstance(table, dict):
        ctx.fail(pre, f"must be a table (got {table!r})")
    _check_keys(ctx, table, pre, POSTERIOR_KEYS)
    file = table.get("file")
    if file is not None and (not isinstance(file, str) or not file.strip()):
        ctx.fail(f"{pre}.file", f"must be a file name, relative to the batch file (got {file!r})")
    select = table.get("select", "first")
    if select not in SELECT:
        ctx.fail(f"{pre}.select", f"must be one of {', '.join(map(repr, SELECT))} (got "
                                  f"{select!r})")
    draws = table.get("draws")
    if draws is not None:
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
            ctx.fail(f"{pre}.draws", f"must be an integer >= 1 (got {draws!r})")
        if draws > MAX_RUNS:
            ctx.fail(f"{pre}.draws", f"must be at most {MAX_RUNS} (got {draws!r})")
    if "samples" in table:
        return _inline_posterior(ctx, table, file, select, draws, root)
    if "rows" in table:
        ctx.fail(f"{pre}.rows", "is only used with batch.posterior.samples (draws given "
                                "inline); with a file, give draws and select")
    if file is None:
        ctx.fail(f"{pre}.file", "is required: the calibration file holding samples(draw, "
                                "parameter), relative to the batch file")
    path = Path(root or ".") / file
    key = f"{pre}.file"
    names, values = read_samples(path, key=key, owner=ctx.file)
    _check_posterior_paths(ctx, names, key, lambda name: f"= {file!r}: parameter {name!r}")
    n_rows = int(values.shape[0])
    if draws is None:
        draws = n_rows
    elif draws > n_rows:
        ctx.fail(f"{pre}.draws", f"= {draws} is more than the {n_rows} draws in {file}")
    post = Posterior(file=str(path.resolve()), parameters=names, rows=(), values=(),
                     select=select, n_rows=n_rows, source=values)
    return _take_draws(ctx, post, draws, root_seed)


def _check_posterior_paths(ctx: _Ctx, names, key: str, what) -> None:
    seen: set[str] = set()
    for name in names:
        if name not in param_index():
            ctx.fail(key, f"{what(name)} {not_a_path(name)})")
        if name in BATCH_OWNED:
            ctx.fail(key, f"{what(name)} cannot be varied: run config key {name} "
                          f"{BATCH_OWNED[name]}")
        if name in seen:
            ctx.fail(key, f"{what(name)} is given twice")
        seen.add(name)
        kind = param_kind(name)
        if kind not in ("float", "int"):
            ctx.fail(key, f"{what(name)} is a {kind} parameter; posterior draws set numbers "
                          "only (vary it in [batch.sweep] or [batch.population])")


def _take_draws(ctx: _Ctx, post: Posterior, draws: int, root_seed: int) -> Posterior:
    """``post`` with the rows of ``draws`` draws chosen from its file rows and checked."""
    from abm.batch.posterior import select_rows
    rows = select_rows(post.n_rows, draws, post.select, root_seed)
    name = Path(post.file).name
    values = []
    for d, r in enumerate(rows):
        where = f"batch.posterior.file = {name!r}, row {r} (draw {d})"
        values.append(_draw_values(ctx, post.parameters, post.source[r], "batch.posterior.file",
                                   lambda j, where=where: where,
                                   f"batch.posterior (draw {d}: row {r} of {name})"))
    return dataclasses.replace(post, rows=rows, values=tuple(values))


def _inline_posterior(ctx: _Ctx, table: dict, file, select: str, draws, root) -> Posterior:
    pre = "batch.posterior.samples"
    samples = table["samples"]
    if not isinstance(samples, dict):
        ctx.fail(pre, "must be a table of parameter paths, each with one value per draw "
                      f"(got {samples!r})")
    items = list(ctx.paths(samples, pre, ()))
    if not items:
        ctx.fail(pre, "lists no parameter")
    n = None
    for path, v, key in items:
        if not isinstance(v, list) or not v:
            ctx.fail(key, f"must be a non-empty array, one value per draw (got {v!r})")
        _check_length(ctx, v, key)
        if n is not None and len(v) != n:
            ctx.fail(key, f"has {len(v)} values but {items[0][2]} has {n}; give one value per "
                          "draw for every parameter")
        n = len(v)
    names = tuple(path for path, _, _ in items)
    _check_posterior_paths(ctx, names, pre, lambda name: f"parameter {name!r}")
    if draws is not None and draws != n:
        ctx.fail("batch.posterior.draws", f"= {draws} but {pre} holds {n} draws")
    rows = table.get("rows", list(range(n)))
    if not isinstance(rows, list) or len(rows) != n or any(
            isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in rows):
        ctx.fail("batch.posterior.rows", f"must be an array of {n} integers >= 0, the file row "
                                         f"of each draw (got {rows!r})")
    if len(set(rows)) != n:
        ctx.fail("batch.posterior.rows", f"lists a row twice (got {rows!r})")
    values = []
    for d in range(n):
        row = [items[j][1][d] for j in range(len(items))]
        values.append(_draw_values(ctx, names, row, pre,
                                   lambda j, d=d: qkey(pre, names[j]) + f"[{d}]",
                                   f"batch.posterior (draw {d})"))
    resolved = None
    if file is not None:
        resolved = str(Path(file) if Path(file).is_absolute() else (Path(root or ".") / file))
    return Posterior(file=resolved, parameters=names, rows=tuple(rows), values=tuple(values),
                     select=select)


def _fail_at(ctx: _Ctx, key: str, message: str):
    raise ConfigError(message, path=ctx.file, key=key)


def _draw_values(ctx: _Ctx, names, row, key: str, where, label: str) -> tuple:
    """One draw's values, cast to each parameter's type and checked on top of the base.

    ``where(j)`` is the text naming value ``j`` at the start of a message (``key``
    is the error's key);
    ``label`` names the draw when it conflicts with a base key.
    """
    out = []
    for j, (name, v) in enumerate(zip(names, row)):
        here = where(j)
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                or not math.isfinite(float(v)):
            _fail_at(ctx, key, f"{here}: {name} = {v!r} is not a finite number")
        v = float(v)
        if param_kind(name) == "int":
            if v != math.floor(v):
                _fail_at(ctx, key, f"{here}: {name} = {v!r} must be a whole number (an "
                                   "integer parameter)")
            v = int(v)
        out.append(v)
    data = copy.deepcopy(ctx.base_data)
    for name, v in zip(names, out):
        set_path(data, name, v)
    try:
        config_from_dict(data)
    except ConfigError as exc:
        for j, name in enumerate(names):
            if _concerns(exc.key, name):
                _fail_at(ctx, key, f"{where(j)}: {name} = {out[j]!r} is not allowed: {exc}")
        ctx.conflicts.append((label, dict(zip(names, out)), exc, False))
    return tuple(out)


# ----------------------------------------------------------------------------
# loaders
# ----------------------------------------------------------------------------


def _read_toml(path: Path, key: str | None = None, owner: str | None = None) -> dict:
    return read_toml(path, key=key, owner=owner)


def is_batch_file(path) -> bool:
    """True if ``path`` is a readable TOML file with a top-level ``[batch]`` table."""
    try:
        return isinstance(_read_toml(Path(path)).get("batch"), dict)
    except ConfigError:
        return False


def load_batch(path, overrides: dict | None = None) -> BatchConfig:
    """Read and validate a batch file (its ``[batch]`` table, base and inline sections).

    Args:
        path: the TOML file.
        overrides: nested dict deep-merged into the file's tables first
            (e.g. ``{"batch": {"replicates": 3}}``).
    """
    from abm.config import apply_overrides
    path = Path(path)
    data = _read_toml(path)
    if overrides:
        data = apply_overrides(data, overrides)
    return batch_from_dict(data, file=str(path), root=path.parent)


def batch_from_dict(data: dict, *, file: str | None = None, root=None) -> BatchConfig:
    """Validate a parsed batch file into a :class:`BatchConfig`.

    Args:
        data: the parsed TOML (``batch`` table plus optional inline run sections).
        file: the file name used in error messages.
        root: folder ``batch.base`` is relative to (default: the working directory).
    """
    from abm.config import apply_overrides
    import secrets

    if "batch" not in data:
        raise ConfigError("has no [batch] table; it is not a batch file (use 'abm run' for a "
                          "single run)", path=file, key="batch")
    table = data["batch"]
    if not isinstance(table, dict):
        raise ConfigError(f"batch must be a table (got {table!r})", path=file, key="batch")
    tables = ("sweep", "population", "posterior")
    scalars = {k: v for k, v in table.items() if k not in tables}
    known = [f.name for f in dataclasses.fields(BatchParams)] + list(tables)
    for k in scalars:
        if k not in known:
            close = difflib.get_close_matches(k, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"batch.{k} is not a known key{hint} (known keys in [batch]: "
                              f"{', '.join(sorted(known))})", path=file, key=f"batch.{k}")
    if "name" not in scalars and file is not None:
        scalars["name"] = Path(file).stem
    params = build(BatchParams, scalars, file=file, prefix="batch")

    inline = {k: v for k, v in data.items() if k != "batch"}
    base_file = None
    if params.base is not None:
        base_path = Path(root or ".") / params.base
        base_data = _read_toml(base_path, key="batch.base", owner=file)
        if "batch" in base_data:
            raise ConfigError(f"batch.base names a batch file ({base_path}); it must name a run "
                              "config", path=file, key="batch.base")
        config_from_dict(base_data, file=str(base_path))  # errors name the base file
        base_file = str(base_path)
        base_data = apply_overrides(base_data, inline) if inline else base_data
    else:
        base_data = inline
    config_from_dict(base_data, file=file)

    drawn = params.root_seed is None
    root_seed = int(secrets.randbits(63) if drawn else params.root_seed)
    ctx = _Ctx(file, base_data)
    sweep = _parse_sweep(ctx, table["sweep"]) if "sweep" in table else None
    population = _parse_population(ctx, table["population"]) if "population" in table else None
    if sweep and population:
        both = set(p.path for p in sweep.params) & set(c.path for c in population.covariates)
        if both:
            p = sorted(both)[0]
            ctx.fail(qkey("batch.population", p), f"is also swept in [batch.sweep]; vary a "
                                                  "parameter in one of them only")
    posterior = _parse_posterior(ctx, table["posterior"], root, root_seed) \
        if "posterior" in table else None
    if posterior:
        for other, paths in (("swept in [batch.sweep]", [p.path for p in sweep.params]
                              if sweep else []),
                             ("a covariate of [batch.population]",
                              [c.path for c in population.covariates] if population else [])):
            both = sorted(set(posterior.parameters) & set(paths))
            if both:
                ctx.fail("batch.posterior", f"sets {both[0]}, which is also {other}; vary a "
                                            "parameter in one place only")
    varied = set(p.path for p in sweep.params) if sweep else set()
    varied |= set(c.path for c in population.covariates) if population else set()
    varied |= set(posterior.parameters) if posterior else set()
    ctx.check_conflicts(varied)
    n_runs = (sweep.n_points if sweep else 1) * (posterior.n_draws if posterior else 1) \
        * (population.size if population else 1) * params.replicates
    if n_runs > MAX_RUNS:
        raise ConfigError(f"batch has {n_runs} runs (sweep points x posterior draws x virtual "
                          f"patients x replicates), more than {MAX_RUNS}; split it into several "
                          "batches", path=file, key="batch")
    return BatchConfig(file=file, params=params, sweep=sweep, population=population,
                       base_data=base_data, base_file=base_file, root_seed=root_seed,
                       root_seed_drawn=drawn, warnings=tuple(ctx.warnings), posterior=posterior)


__all__ = ["BatchConfig", "BatchParams", "Sweep", "SweepParam", "Population", "Covariate",
           "Posterior", "POSTERIOR_KEYS", "not_a_path",
           "DISTRIBUTIONS", "SWEEP_METHODS", "BATCH_OWNED", "MAX_RUNS", "load_batch", "batch_from_dict",
           "is_batch_file", "param_index", "param_kind", "set_path", "qkey"]
