"""Global sensitivity analysis (Morris screening, Sobol indices) of the model with SALib.

A study file (``abm sensitivity CONFIG``; docs/sensitivity.md)::

    [sensitivity]
    name = "sens_risk"           # output folder <out>/<name>/ (default: file stem)
    base = "trial_cd28.toml"     # a run config, or a batch file with a population
    method = "morris"            # "morris" | "sobol"
    seed = 2024                  # design sample, bootstrap and batch root seed
    trajectories = 5             # Morris: trajectories r (r (k + 1) points)
    levels = 4                   # Morris: grid levels p (even)
    # samples = 256              # Sobol: base samples N, a power of 2 (N (k + 2) points)
    # second_order = false       # Sobol: also S2 (N (2k + 2) points)
    mode = "population"          # or "patient" (default: population if the base has one)
    population_size = 8          # population mode: the base population's size per point
    replicates = 1               # runs per (point, patient)
    common_seeds = true          # paired design: same patients and seeds at every point

    [sensitivity.parameters]     # dotted run config paths and ranges
    "product.kill_rate_per_h" = {low = 0.6, high = 2.4, scale = "log"}
    "myeloid.il6_secretion_fg_per_h" = [0.25, 1.0]

    [sensitivity.outputs]        # name = expression over the simulator's /endpoints
    crs3 = "crs_max_grade >= 3"  # a condition: the share of the point's runs (a risk)
    il6 = "mean(il6_peak)"       # mean(...), median(...), gmean(...); a bare name: mean

    [run]                        # optional: run tables over the base's (any section)
    end_day = 28.0

Each design point is one sweep point of an ordinary batch (``<out>/<name>/design/``,
sweep ``method = "list"``, crossed with the base's virtual population in
population mode, common seeds across points), run with
:func:`abm.batch.run_batch`; then the outputs are computed per point from the
runs' ``/endpoints`` and analysed with ``SALib.analyze.morris`` (bootstrap
interval of mu*) or ``SALib.analyze.sobol`` (bootstrap intervals of S1, ST).

Parameters are sampled on the unit hypercube and mapped onto their ranges
(log scale: uniform in the logarithm), so Morris elementary effects are
output changes per whole range of a parameter (on its scale): mu* of the
parameters of one output can be compared directly.

The analysis core takes any evaluator: :func:`analyse_function` runs a study
(:class:`Study`) on a Python function of the design matrix, which is how the
tests check it against the Ishigami function.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from abm.errors import AbmError, ConfigError
from abm.schema import Section, build, param
from abm.studies.design import (DESIGN_BATCH, Base, Range, design_batch, load_base,
                                parse_ranges, point_endpoints, provenance)

_log = logging.getLogger(__name__)

METHODS = ("morris", "sobol")
MODES = ("population", "patient")
DATASET = "sensitivity.nc"
SUMMARY = "summary.md"

#: Endpoint names the simulator writes in each run file's ``/endpoints`` group
#: (tests/studies check this list against a real run).
ENDPOINTS = (
    "anakinra_doses", "anakinra_total_mg", "best_response_code", "blood_cart_peak_day",
    "blood_cart_peak_per_ul", "brain_barrier_activation_max",
    "brain_endothelial_activation_max", "brain_jv_max_ml_h", "brain_water_excess_max_ml",
    "consciousness_max", "crs_duration_days", "crs_episodes", "crs_max_grade",
    "crs_onset_day", "crs_resolved", "crs_resolved_day", "csf_il6_peak",
    "dexamethasone_doses", "dexamethasone_total_mg", "final_b_cells", "final_n_cart",
    "final_n_endothelial", "final_n_myeloid", "final_n_tumour", "final_tumour_cells",
    "fluids_total_ml", "icans_after_crs_days", "icans_duration_days", "icans_episodes",
    "icans_max_grade", "icans_onset_day", "icans_resolved", "icans_resolved_day", "ice_min",
    "icp_max_mmhg", "il6_myeloid_fraction", "infusion_reaction",
    "infusion_reaction_onset_day", "map_min_mmhg", "methylprednisolone_doses",
    "methylprednisolone_total_mg", "motor_weakness_any", "neuroinflammation_max",
    "oedema_diffuse_any", "oedema_focal_any", "oxygen_rung_max", "plasma_ifng_peak_pg_ml",
    "plasma_il6_peak_pg_ml", "q_alb_max", "response_eval_code", "seizures",
    "seizures_prolonged", "spo2_min_pct", "temperature_max_c", "tls_lab_any",
    "tls_max_criteria", "tls_onset_day", "tocilizumab_doses", "tocilizumab_total_mg",
    "tumour_baseline_cells", "tumour_lysed_patient_cells", "vasopressors_max",
)
#: Short names of the endpoints studies ask for most.
ALIASES = {
    "il6_peak": "plasma_il6_peak_pg_ml",          # plasma IL-6 peak, pg/mL
    "ifng_peak": "plasma_ifng_peak_pg_ml",        # plasma IFN-gamma peak, pg/mL
    "cart_cmax": "blood_cart_peak_per_ul",        # blood CAR-T expansion peak, cells/uL
    "cart_tmax": "blood_cart_peak_day",           # its day
    "response": "best_response_code",             # 0 PD, 1 SD, 2 PR, 3 CR (>= 2: ORR)
}
REDUCTIONS = ("mean", "median", "gmean")
_OPS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less,
        "==": np.equal, "!=": np.not_equal}
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_EXPR = re.compile(rf"^\s*(?:(?P<fn>\w+)\s*\(\s*(?P<arg>\w+)\s*\)|(?P<name>\w+)"
                   rf"(?:\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<num>{_NUM}))?)\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


# ----------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """One output of a study: a reduction of one endpoint over a design point's runs.

    ``reduce`` is ``"share"`` (the fraction of runs where ``endpoint op
    threshold`` holds: a risk in a population; 0 or 1 for a single run),
    ``"mean"``, ``"median"`` or ``"gmean"`` (geometric mean). Runs whose
    endpoint is NaN (undefined: no onset, say) count as not meeting a
    condition and are left out of the other reductions; ``gmean`` also
    leaves out values <= 0.
    """

    name: str
    expr: str
    endpoint: str
    reduce: str = "mean"
    op: str | None = None
    threshold: float | None = None

    def __call__(self, values) -> float:
        x = np.asarray(values, float)
        if x.size == 0:
            return math.nan
        if self.reduce == "share":
            with np.errstate(invalid="ignore"):
                return float(np.mean(_OPS[self.op](x, self.threshold) & np.isfinite(x)))
        x = x[np.isfinite(x)]
        if self.reduce == "gmean":
            x = x[x > 0]
            return float(np.exp(np.mean(np.log(x)))) if x.size else math.nan
        if x.size == 0:
            return math.nan
        return float(np.median(x) if self.reduce == "median" else np.mean(x))

    @property
    def long_name(self) -> str:
        if self.reduce == "share":
            return f"share of runs with {self.endpoint} {self.op} {self.threshold:g}"
        return f"{self.reduce} of {self.endpoint}"


def parse_output(name: str, expr, *, key: str, file: str | None = None) -> Output:
    """An output from its expression; a one-line ConfigError for a bad one.

    Syntax: ``ENDPOINT OP NUMBER`` (OP one of >= > <= < == !=: the share of
    runs meeting it), ``mean(ENDPOINT)``, ``median(ENDPOINT)``,
    ``gmean(ENDPOINT)``, or ``ENDPOINT`` alone (the mean). ENDPOINT is a name
    of :data:`ENDPOINTS` or :data:`ALIASES`.
    """
    def fail(msg):
        raise ConfigError(f"{key} {msg}", path=file, key=key)

    if not isinstance(expr, str):
        fail(f"must be an expression text such as \"crs_max_grade >= 3\" or "
             f"\"mean(il6_peak)\" (got {expr!r})")
    m = _EXPR.match(expr)
    if not m:
        fail(f"= {expr!r} is not an output expression: write ENDPOINT OP NUMBER (a share of "
             "runs, e.g. \"crs_max_grade >= 3\"), mean(ENDPOINT), median(ENDPOINT), "
             "gmean(ENDPOINT) or ENDPOINT")
    fn = m.group("fn")
    if fn is not None and fn not in REDUCTIONS:
        close = difflib.get_close_matches(fn, REDUCTIONS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        fail(f"= {expr!r}: unknown reduction {fn!r}{hint} (one of {', '.join(REDUCTIONS)})")
    ep = m.group("arg") if fn else m.group("name")
    known = list(ENDPOINTS) + list(ALIASES)
    if ep not in known:
        close = difflib.get_close_matches(ep, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        fail(f"= {expr!r}: unknown endpoint {ep!r}{hint} (the simulator's /endpoints, e.g. "
             f"crs_max_grade, icans_max_grade, or an alias: {', '.join(ALIASES)})")
    endpoint = ALIASES.get(ep, ep)
    if m.group("op"):
        return Output(name, expr.strip(), endpoint, "share", m.group("op"),
                      float(m.group("num")))
    return Output(name, expr.strip(), endpoint, fn or "mean")


def output_name(expr: str) -> str:
    """A variable-friendly name for an output given by its expression alone."""
    s = expr.strip()
    for op, word in ((">=", "ge"), ("<=", "le"), ("==", "eq"), ("!=", "ne"), (">", "gt"),
                     ("<", "lt")):
        s = s.replace(op, f" {word} ")
    return re.sub(r"[^A-Za-z0-9.]+", "_", s).strip("_")


def parse_outputs(table, *, file: str | None, prefix: str = "sensitivity.outputs"):
    """Outputs of a ``{name = expression}`` table or a list of expressions."""
    if isinstance(table, list):
        items = [(output_name(str(e)), e, f"{prefix}[{i}]") for i, e in enumerate(table)]
    elif isinstance(table, dict):
        items = [(k, v, f"{prefix}.{k}") for k, v in table.items()]
    else:
        raise ConfigError(f"{prefix} must be a table of name = \"expression\" (or a list of "
                          f"expressions) (got {table!r})", path=file, key=prefix)
    if not items:
        raise ConfigError(f"{prefix} lists no output (add e.g. crs3 = \"crs_max_grade >= 3\")",
                          path=file, key=prefix)
    out, seen = [], set()
    for name, expr, key in items:
        if not _NAME.match(name):
            raise ConfigError(f"{key}: output name {name!r} must start with a letter and hold "
                              "letters, digits, '_', '-' and '.'", path=file, key=key)
        if name in seen:
            raise ConfigError(f"{key}: output {name!r} is given twice", path=file, key=key)
        seen.add(name)
        out.append(parse_output(name, expr, key=key, file=file))
    return tuple(out)


# ----------------------------------------------------------------------------
# the study: design and analysis (no simulator)
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Study:
    """A sensitivity design and its analysis, independent of what evaluates the points.

    Attributes:
        method: ``"morris"`` or ``"sobol"``.
        ranges: the parameters (:class:`~abm.studies.design.Range`).
        outputs: output names (the columns of the evaluations).
        seed: of the design sample and the bootstrap.
        trajectories, levels: Morris sizes (r trajectories on a p-level grid).
        samples, second_order: Sobol sizes (N base samples; S2 too).
        confidence: level of the bootstrap intervals; bootstrap: resamples.
    """

    method: str
    ranges: tuple[Range, ...]
    outputs: tuple[str, ...]
    seed: int = 0
    trajectories: int = 10
    levels: int = 4
    samples: int = 256
    second_order: bool = False
    confidence: float = 0.95
    bootstrap: int = 1000

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS} (got {self.method!r})")

    @property
    def names(self) -> list[str]:
        return [r.path for r in self.ranges]

    @property
    def k(self) -> int:
        return len(self.ranges)

    @property
    def n_points(self) -> int:
        if self.method == "morris":
            return self.trajectories * (self.k + 1)
        return self.samples * (2 * self.k + 2 if self.second_order else self.k + 2)

    def sizes(self) -> dict:
        if self.method == "morris":
            return {"trajectories": self.trajectories, "levels": self.levels}
        return {"samples": self.samples, "second_order": int(self.second_order)}

    def problem(self) -> dict:
        """SALib's problem on the unit hypercube (values are mapped by the ranges)."""
        return {"num_vars": self.k, "names": self.names, "bounds": [[0.0, 1.0]] * self.k}

    def unit_sample(self) -> np.ndarray:
        """The design on the unit hypercube, (n_points, k); deterministic in ``seed``."""
        if self.method == "morris":
            from SALib.sample import morris
            u = morris.sample(self.problem(), self.trajectories, num_levels=self.levels,
                              seed=self.seed)
        else:
            from SALib.sample import sobol
            u = sobol.sample(self.problem(), self.samples, calc_second_order=self.second_order,
                             scramble=True, seed=self.seed)
        assert u.shape == (self.n_points, self.k)
        return np.asarray(u, float)

    def values(self, u) -> np.ndarray:
        """Parameter values of unit points, (n_points, k)."""
        u = np.asarray(u, float)
        return np.column_stack([r.value(u[:, j]) for j, r in enumerate(self.ranges)])

    def analyse(self, u, y, *, notes=None) -> "xr.Dataset":  # noqa: F821
        """Indices of every output from the evaluations ``y`` (n_points, n_outputs).

        A Morris trajectory with a NaN output is left out of that output's
        indices (``trajectories_used``, and a note); a Sobol output with a
        NaN gets NaN indices (and a note). ``notes`` (a list) collects these.
        """
        import xarray as xr
        u = np.asarray(u, float)
        y = np.asarray(y, float).reshape(self.n_points, len(self.outputs))
        notes = [] if notes is None else notes
        vals = self.values(u)
        ds = xr.Dataset(coords={
            "parameter": ("parameter", np.array(self.names, dtype=str)),
            "output": ("output", np.array(self.outputs, dtype=str)),
            "point": ("point", np.arange(self.n_points)),
            "low": ("parameter", np.array([r.low for r in self.ranges])),
            "high": ("parameter", np.array([r.high for r in self.ranges])),
            "scale": ("parameter", np.array([r.scale for r in self.ranges], dtype=str)),
        })
        ds["design"] = (("point", "parameter"), vals,
                        {"long_name": "parameter values of each design point"})
        ds["design_unit"] = (("point", "parameter"), u,
                             {"long_name": "design point on the unit hypercube (log scale: "
                                           "of the logarithm)"})
        ds["value"] = (("point", "output"), y, {"long_name": "output at each design point"})
        if self.method == "morris":
            self._morris(ds, u, y, notes)
        else:
            self._sobol(ds, y, notes)
        ds.attrs.update({"method": self.method, "seed": int(self.seed),
                         "confidence": float(self.confidence), "bootstrap": int(self.bootstrap),
                         "n_points": int(self.n_points),
                         **{k: int(v) for k, v in self.sizes().items()}})
        return ds

    def _morris(self, ds, u, y, notes):
        from SALib.analyze import morris
        k, r = self.k, self.trajectories
        shape = (len(self.outputs), k)
        res = {n: np.full(shape, np.nan) for n in ("mu", "mu_star", "sigma", "mu_star_conf")}
        used = np.zeros(len(self.outputs), dtype=int)
        ds["trajectory"] = ("point", np.repeat(np.arange(r), k + 1),
                            {"long_name": "Morris trajectory of each design point"})
        for o, name in enumerate(self.outputs):
            ok = np.isfinite(y[:, o]).reshape(r, k + 1).all(axis=1)
            used[o] = int(ok.sum())
            if not ok.all():
                notes.append(f"output {name}: {r - used[o]} of {r} Morris trajectories left out "
                             f"(a point without a value: trajectories "
                             f"{', '.join(str(t) for t in np.flatnonzero(~ok))})")
            if used[o] < 1:
                continue
            rows = np.repeat(ok, k + 1)
            with warnings.catch_warnings():   # one trajectory: sigma is NaN, not a warning
                warnings.simplefilter("ignore", RuntimeWarning)
                si = morris.analyze(self.problem(), u[rows], np.ascontiguousarray(y[rows, o]),
                                    num_resamples=self.bootstrap, conf_level=self.confidence,
                                    num_levels=self.levels, seed=self.seed)
            for n in res:
                res[n][o] = np.asarray(si[n], float)
        dims = ("output", "parameter")
        conf = f"{self.confidence:.0%}"
        ds["mu"] = (dims, res["mu"], {"long_name": "Morris mu: mean elementary effect "
                                                   "(output change per whole range)"})
        ds["mu_star"] = (dims, res["mu_star"], {"long_name": "Morris mu*: mean absolute "
                                                             "elementary effect"})
        ds["sigma"] = (dims, res["sigma"], {"long_name": "Morris sigma: SD of the elementary "
                                                         "effects (interactions, non-linearity)"})
        ds["mu_star_conf"] = (dims, res["mu_star_conf"],
                              {"long_name": f"half-width of the {conf} bootstrap interval of mu*"})
        ds["mu_star_low"] = (dims, res["mu_star"] - res["mu_star_conf"],
                             {"long_name": f"{conf} interval of mu*, lower end"})
        ds["mu_star_high"] = (dims, res["mu_star"] + res["mu_star_conf"],
                              {"long_name": f"{conf} interval of mu*, upper end"})
        ds["trajectories_used"] = ("output", used)
        ds["rank"] = (dims, _ranks(res["mu_star"]),
                      {"long_name": "rank by mu* (1: most influential)"})

    def _sobol(self, ds, y, notes):
        from SALib.analyze import sobol
        k, n_out = self.k, len(self.outputs)
        res = {n: np.full((n_out, k), np.nan) for n in ("S1", "S1_conf", "ST", "ST_conf")}
        s2 = np.full((n_out, k, k), np.nan)
        s2c = np.full((n_out, k, k), np.nan)
        for o, name in enumerate(self.outputs):
            yo = np.ascontiguousarray(y[:, o])
            if not np.isfinite(yo).all():
                notes.append(f"output {name}: {int((~np.isfinite(yo)).sum())} design points "
                             "without a value; its Sobol indices are not computed (NaN)")
                continue
            if np.ptp(yo) == 0:
                notes.append(f"output {name}: constant over the design; its Sobol indices are "
                             "undefined (NaN)")
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                si = sobol.analyze(self.problem(), yo, calc_second_order=self.second_order,
                                   num_resamples=self.bootstrap, conf_level=self.confidence,
                                   seed=self.seed)
            for n in res:
                res[n][o] = np.asarray(si[n], float)
            if self.second_order:
                s2[o] = np.asarray(si["S2"], float)
                s2c[o] = np.asarray(si["S2_conf"], float)
        dims = ("output", "parameter")
        conf = f"{self.confidence:.0%}"
        for n, what in (("S1", "first-order"), ("ST", "total")):
            ds[n] = (dims, res[n], {"long_name": f"Sobol {what} index"})
            ds[f"{n}_conf"] = (dims, res[f"{n}_conf"],
                               {"long_name": f"half-width of the {conf} bootstrap interval of {n}"})
            ds[f"{n}_low"] = (dims, res[n] - res[f"{n}_conf"])
            ds[f"{n}_high"] = (dims, res[n] + res[f"{n}_conf"])
        if self.second_order:
            ds.coords["parameter_2"] = ("parameter_2", np.array(self.names, dtype=str))
            ds["S2"] = (("output", "parameter", "parameter_2"), s2,
                        {"long_name": "Sobol second-order index (upper triangle)"})
            ds["S2_conf"] = (("output", "parameter", "parameter_2"), s2c)
        ds["rank"] = (dims, _ranks(res["ST"]), {"long_name": "rank by ST (1: most influential)"})


def _ranks(x: np.ndarray) -> np.ndarray:
    """Rank of each column per row (1 = largest; NaN last)."""
    out = np.zeros(x.shape, dtype=int)
    for i, row in enumerate(x):
        order = np.argsort(np.where(np.isfinite(row), -row, np.inf), kind="stable")
        out[i, order] = np.arange(1, row.size + 1)
    return out


def analyse_function(study: Study, fn, *, notes=None):
    """Run ``study`` on a Python function: ``fn(values (n, k)) -> (n,) or (n, n_outputs)``.

    The evaluator of the tests (Ishigami, inert inputs) and of quick
    experiments: the same design and analysis path as the simulator's.
    """
    u = study.unit_sample()
    y = np.asarray(fn(study.values(u)), float)
    return study.analyse(u, y.reshape(study.n_points, len(study.outputs)), notes=notes)


# ----------------------------------------------------------------------------
# the study file
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SensitivityParams(Section):
    """The scalar keys of ``[sensitivity]``."""

    name: str = param("sensitivity", unit="-",
                      doc="study name: the output folder <out>/<name>/")
    base: str = param("", unit="-", doc="run config or batch file (with a population), "
                                        "relative to this file")
    method: str = param("morris", unit="-", choices=METHODS, doc="morris or sobol")
    seed: int = param(0, unit="-", ge=0, lt=2**63,
                      doc="seed of the design sample, the bootstrap and the runs")
    mode: str | None = param(None, unit="-", choices=MODES + (None,),
                             doc="population (the base's virtual population at every point) "
                                 "or patient (the base patient); default: population when "
                                 "the base has one")
    population_size: int | None = param(None, unit="-", ge=1, le=20_000,
                                        doc="patients per design point (population mode; "
                                            "default: the base's size)")
    replicates: int = param(1, unit="-", ge=1, le=1000, doc="runs per (point, patient)")
    common_seeds: bool = param(True, unit="-",
                               doc="the same patients and seeds at every point (paired)")
    trajectories: int | None = param(None, unit="-", ge=2, le=1000,
                                     doc="Morris: trajectories r (default 10)")
    levels: int | None = param(None, unit="-", ge=2, le=100,
                               doc="Morris: grid levels p, even (default 4)")
    samples: int | None = param(None, unit="-", ge=2, le=2**16,
                                doc="Sobol: base samples N, a power of 2 (default 256)")
    second_order: bool | None = param(None, unit="-",
                                      doc="Sobol: second-order indices too (default false)")
    confidence: float = param(0.95, unit="1", gt=0, lt=1, doc="level of the intervals")
    bootstrap: int = param(1000, unit="-", ge=10, le=100_000, doc="bootstrap resamples")
    description: str = param("", unit="-", doc="free text")

    def check(self, fail):
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", self.name):
            fail("name", f"must be a folder name of letters, digits, '_', '-' and '.' "
                         f"(got {self.name!r})")
        if not self.base:
            fail("base", "is required: the run config or batch file the runs start from")
        morris_keys = [k for k in ("trajectories", "levels") if getattr(self, k) is not None]
        sobol_keys = [k for k in ("samples", "second_order") if getattr(self, k) is not None]
        if self.method == "morris" and sobol_keys:
            fail(sobol_keys[0], "is a Sobol size; method is 'morris' (use trajectories, levels)")
        if self.method == "sobol" and morris_keys:
            fail(morris_keys[0], "is a Morris size; method is 'sobol' (use samples, "
                                 "second_order)")
        if self.levels is not None and self.levels % 2:
            fail("levels", f"must be even (got {self.levels}): an odd grid makes the Morris "
                           "steps uneven")
        if self.samples is not None and self.samples & (self.samples - 1):
            fail("samples", f"must be a power of 2 (got {self.samples}; the Sobol' sequence "
                            "is balanced only then)")


@dataclass(frozen=True, eq=False)
class SensitivityConfig:
    """A validated study file.

    Attributes:
        file, text: the study file and its text.
        params: ``[sensitivity]``'s scalar keys; study: the design and analysis;
        outputs: the :class:`Output` of each name in ``study.outputs``;
        base: the base (population reduced by the varied covariates);
        mode, population_size: how each point is run.
        notes: one line each about choices made for the user.
    """

    file: str | None
    text: str
    params: SensitivityParams
    study: Study
    outputs: tuple[Output, ...]
    base: Base
    mode: str
    population_size: int | None
    notes: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.params.name

    @property
    def runs_per_point(self) -> int:
        return (self.population_size or 1) * self.params.replicates

    @property
    def n_runs(self) -> int:
        return self.study.n_points * self.runs_per_point

    def batch(self, unit_points=None):
        """The design batch (name ``design``; see :func:`abm.studies.design.design_batch`)."""
        u = self.study.unit_sample() if unit_points is None else unit_points
        return design_batch(self.base, self.study.ranges, u, root_seed=self.params.seed,
                            population_size=self.population_size,
                            replicates=self.params.replicates,
                            common_seeds=self.params.common_seeds, file=self.file,
                            description=f"design of the {self.study.method} study "
                                        f"{self.name!r}")

    def summary(self) -> str:
        s = self.study
        sizes = ", ".join(f"{k} {v}" for k, v in s.sizes().items())
        who = (f"a population of {self.population_size}" if self.mode == "population"
               else "the base patient")
        reps = self.params.replicates
        return (f"{s.method} study {self.name!r}: {s.k} parameters, {len(self.outputs)} "
                f"outputs, {s.n_points} design points ({sizes}) x {who}"
                + (f" x {reps} replicates" if reps > 1 else "")
                + f" = {self.n_runs} runs")


_TOP_KEYS = ("parameters", "outputs")


def load_sensitivity(path) -> SensitivityConfig:
    """Read and validate a study file (one-line :class:`ConfigError` on any problem)."""
    from abm.config.files import read_toml
    path = Path(path)
    data = read_toml(path)
    text = path.read_text(encoding="utf-8")
    return sensitivity_from_dict(data, file=str(path), root=path.parent, text=text)


def sensitivity_from_dict(data: dict, *, file: str | None = None, root=None,
                          text: str = "") -> SensitivityConfig:
    """Validate a parsed study file (see the module docstring for its keys)."""
    table = data.get("sensitivity")
    if not isinstance(table, dict):
        raise ConfigError("has no [sensitivity] table; it is not a sensitivity study file",
                          path=file, key="sensitivity")
    scalars = {k: v for k, v in table.items() if k not in _TOP_KEYS}
    if "name" not in scalars and file is not None:
        scalars["name"] = Path(file).stem
    params = build(SensitivityParams, scalars, file=file, prefix="sensitivity")
    if "method" not in table:
        raise ConfigError(f"sensitivity.method is required: one of "
                          f"{', '.join(map(repr, METHODS))}", path=file, key="sensitivity.method")
    inline = {k: v for k, v in data.items() if k != "sensitivity"}
    if "batch" in inline:
        raise ConfigError("has a [batch] table; a study makes its own batch: name the batch "
                          "file as sensitivity.base", path=file, key="batch")
    base = load_base(params.base, owner=file, root=root, key="sensitivity.base", inline=inline)
    ranges = parse_ranges(table.get("parameters"), prefix="sensitivity.parameters", file=file,
                          base_data=base.run_data)
    for key in _TOP_KEYS:
        if key not in table:
            raise ConfigError(f"sensitivity.{key} is required", path=file,
                              key=f"sensitivity.{key}")
    outputs = parse_outputs(table["outputs"], file=file)
    notes = []
    mode = params.mode or ("population" if base.population else "patient")
    if mode == "population":
        if not base.population:
            raise ConfigError(f"sensitivity.mode = 'population' needs a base batch file with a "
                              f"[batch.population] ({base.file} has none); use mode = "
                              "'patient'", path=file, key="sensitivity.mode")
        size = params.population_size or int(base.population.get("size") or 1)
        both = [r.path for r in ranges if r.path in base.covariates]
        if both:
            base = base.without_covariates(both)
            notes.append(f"{', '.join(both)}: drawn per patient in the base population and "
                         "varied here; the study's value replaces the draw")
    else:
        if params.population_size is not None:
            raise ConfigError("sensitivity.population_size is only used with mode = "
                              "'population'", path=file, key="sensitivity.population_size")
        if base.population:
            notes.append(f"patient mode: the population of {base.file} is not used, only its "
                         "run tables")
        size = None
    study = Study(method=params.method, ranges=ranges, outputs=tuple(o.name for o in outputs),
                  seed=params.seed,
                  trajectories=params.trajectories or 10, levels=params.levels or 4,
                  samples=params.samples or 256, second_order=bool(params.second_order),
                  confidence=params.confidence, bootstrap=params.bootstrap)
    cfg = SensitivityConfig(file=file, text=text, params=params, study=study,
                            outputs=outputs, base=base, mode=mode, population_size=size,
                            notes=tuple(notes))
    cfg.batch(np.full((1, study.k), 0.5))  # the batch structure (population, base) is valid
    from abm.batch.config import MAX_RUNS
    if cfg.n_runs > MAX_RUNS:
        raise ConfigError(f"the study has {cfg.n_runs} runs ({study.n_points} design points x "
                          f"{cfg.runs_per_point} runs per point), more than {MAX_RUNS}; use "
                          "fewer trajectories or samples, or a smaller population",
                          path=file, key="sensitivity")
    return cfg


# ----------------------------------------------------------------------------
# running a study
# ----------------------------------------------------------------------------


@dataclass
class SensitivityResult:
    """What :func:`run_sensitivity` did: the folder, files, the batch and notes."""

    folder: Path
    dataset: Path | None
    summary: Path | None
    figures: list
    batch: object   # abm.batch.runner.BatchResult
    notes: list
    interrupted: bool = False
    terminated: bool = False
    missing_points: list = field(default_factory=list)


def study_folder(cfg: SensitivityConfig, out=None) -> Path:
    """``<out>/<name>``; ``out`` defaults to the base config's ``output.dir``."""
    from abm.config import config_from_dict
    base = Path(out) if out is not None else Path(config_from_dict(cfg.base.run_data).output.dir)
    return base / cfg.name


def point_outputs(cfg: SensitivityConfig, folder) -> tuple[np.ndarray, object]:
    """Outputs per design point from the runs in ``folder`` (the design batch folder).

    Returns ``(y (points, outputs), runs)`` with ``runs`` a
    :class:`~abm.studies.design.PointRuns`. A point with missing runs gets its
    outputs from the runs it has (NaN with none).
    """
    n = cfg.study.n_points
    runs = point_endpoints(folder, n)
    y = np.full((n, len(cfg.outputs)), np.nan)
    if runs.point.size == 0:
        return y, runs
    for o, out in enumerate(cfg.outputs):
        if out.endpoint not in runs.endpoints:
            raise AbmError(f"output {out.name} = {out.expr!r}: the run files have no endpoint "
                           f"{out.endpoint!r} (this configuration does not write it)")
        v = runs.endpoints[out.endpoint]
        for p in range(n):
            sel = runs.point == p
            if sel.any():
                y[p, o] = out(v[sel])
    return y, runs


def run_sensitivity(cfg: SensitivityConfig, *, out=None, executor=None, resume: bool = False,
                    progress: bool | str = False, verbose: bool = False, log=None,
                    figures: bool = True) -> SensitivityResult:
    """Run (or resume) a study: the design batch, then :func:`analyse_study`.

    Writes ``<out>/<name>/``: ``design/`` (the batch: runs, manifest),
    ``sensitivity.nc``, ``summary.md`` and the figures. Interrupted (Ctrl-C,
    SIGTERM): nothing is analysed, ``resume=True`` continues.
    """
    from abm.studies.design import run_design
    folder = study_folder(cfg, out)
    batch = cfg.batch()
    res, terminated = run_design(batch, folder, executor=executor, resume=resume,
                                 progress=progress, verbose=verbose, log=log)
    if res.interrupted:
        return SensitivityResult(folder=folder, dataset=None, summary=None, figures=[],
                                 batch=res, notes=list(cfg.notes), interrupted=True,
                                 terminated=terminated)
    result = analyse_study(cfg, folder, figures=figures)
    result.batch = res
    return result


def analyse_study(cfg: SensitivityConfig, folder, *, figures: bool = True) -> SensitivityResult:
    """Analyse the runs in ``folder/design`` (as they are) and write the study's files.

    A design point whose runs are not all done (failed, pending, unreadable)
    is named in a note, in the dataset (``runs_done`` < ``runs_expected``,
    attribute ``runs_missing``) and in the summary; its outputs come from the
    runs it has (none: NaN, and Morris leaves its trajectory out).
    """
    folder = Path(folder)
    u = cfg.study.unit_sample()
    y, runs = point_outputs(cfg, folder / DESIGN_BATCH)
    notes = list(cfg.notes)
    missing = sorted(runs.missing)
    if missing:
        n_runs = sum(len(v) for v in runs.missing.values())
        notes.append(f"{len(missing)} design points lack runs ({n_runs} runs failed or not "
                     f"done); their outputs come from the runs they have: points "
                     + ", ".join(str(p) for p in missing[:20])
                     + (" ..." if len(missing) > 20 else ""))
    ds = cfg.study.analyse(u, y, notes=notes)
    ds = _decorate(ds, cfg, runs, notes)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_dataset(ds, folder / DATASET)
    figs = []
    from abm.studies.sensitivity_report import write_figures, write_summary
    if figures:
        figs = write_figures(ds, folder)
    summary = write_summary(ds, folder / SUMMARY, figures=figs)
    return SensitivityResult(folder=folder, dataset=path, summary=summary, figures=figs,
                             batch=None, notes=notes, missing_points=missing)


def _decorate(ds, cfg: SensitivityConfig, runs, notes):
    """Run counts, per-run endpoints, expressions and provenance on the analysis dataset."""
    ds = ds.assign_coords(expression=("output", np.array([o.expr for o in cfg.outputs],
                                                         dtype=str)))
    ds["value"].attrs["long_name"] = "output at each design point (over its runs)"
    ds["runs_expected"] = ("point", runs.expected.astype(int),
                           {"long_name": "runs of each design point in the batch"})
    ds["runs_done"] = ("point", runs.done.astype(int),
                       {"long_name": "finished runs each point's outputs come from"})
    ds = ds.assign_coords(run=("run", np.array(runs.run_ids, dtype=str)))
    ds["run_point"] = ("run", runs.point.astype(int), {"long_name": "design point of each run"})
    for ep in dict.fromkeys(o.endpoint for o in cfg.outputs):
        if ep in runs.endpoints:
            ds[f"endpoint_{ep}"] = ("run", np.asarray(runs.endpoints[ep], float),
                                    {"long_name": f"{ep} of each finished run (its /endpoints)"})
    failed = [f"{rid} ({status}: {reason})" for p in sorted(runs.missing)
              for rid, status, reason in runs.missing[p]]
    base_text = ""
    try:
        base_text = Path(cfg.base.file).read_text(encoding="utf-8")
    except OSError:
        pass
    ds.attrs.update(provenance(
        title=f"sensitivity study {cfg.name!r} ({cfg.study.method})",
        study=cfg.name, config_file=str(cfg.file or ""), config_text=cfg.text,
        base_file=cfg.base.file, base_text=base_text, mode=cfg.mode,
        population_size=int(cfg.population_size or 0), replicates=int(cfg.params.replicates),
        common_seeds=int(cfg.params.common_seeds), root_seed=int(cfg.params.seed),
        n_runs=int(runs.expected.sum()), n_runs_done=int(runs.done.sum()),
        runs_missing="; ".join(failed), points_missing=", ".join(map(str, sorted(runs.missing))),
        notes="\n".join(notes),
        outputs="; ".join(f"{o.name} = {o.expr}" for o in cfg.outputs),
        batch_folder=DESIGN_BATCH))
    return ds


def write_dataset(ds, path) -> Path:
    """Write the analysis dataset with the h5netcdf engine (atomically: tmp + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    ds.to_netcdf(tmp, engine="h5netcdf")
    tmp.replace(path)
    return path


__all__ = ["Study", "Output", "SensitivityConfig", "SensitivityResult", "analyse_function",
           "load_sensitivity", "sensitivity_from_dict", "run_sensitivity", "parse_output",
           "parse_outputs", "point_outputs", "analyse_study", "study_folder", "write_dataset", "ENDPOINTS",
           "ALIASES", "METHODS"]
