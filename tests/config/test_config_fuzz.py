"""Fuzz test of ``abm validate``: hundreds of malformed configs, each one line and exit 2.

Cases are generated from the schema (every leaf parameter is a target) with a
fixed seed, so the set is the same on every run: unknown keys at every depth,
wrong types, NaN and infinities, huge values, wrong array lengths, bad run
names, invalid batch distributions and sweeps, oversized batches, TOML syntax
errors, deep nesting, empty files and paths that are not regular files (a
FIFO, a folder, a device). Each goes through ``abm.cli.main(["validate", ...])``
in this process under a timer, so a hang fails the case instead of the suite;
a few go through ``python -m abm validate`` in a subprocess as well.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import signal
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

from abm.cli import main
from abm.config.root import Config, MAX_NAME_BYTES
from abm.batch.config import MAX_RUNS
from abm.schema import FLOAT_MAX, walk_params

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261206
#: Seconds one case may take before it counts as a hang.
CASE_TIMEOUT_S = 10


def base_type(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


LEAVES = {key: (f.metadata, base_type(tp)) for key, f, tp in walk_params(Config)}


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def leaf_toml(key: str, value) -> str:
    *section, last = key.split(".")
    return f"[{'.'.join(section)}]\n{last} = {toml_value(value)}\n"


def wrong_types(tp, meta) -> list:
    if typing.get_origin(tp) is tuple:
        return ["text", 3, {"a": 1}]
    return {float: ["12", True, [1.0], {"x": 1.0}], int: [1.5, "3", False, [1]],
            bool: [1, "yes", 0.0], str: [1, 2.5, ["a"], False]}[tp]


def batch_toml(population=None, sweep=None, size=2, extra="") -> str:
    text = "[batch]\nname = \"fz\"\nroot_seed = 1\n"
    if population is not None:
        text += f"[batch.population]\nsize = {size}\n"
        for path, dist in population.items():
            text += f"{json.dumps(path)} = {toml_value(dist)}\n"
    if sweep is not None:
        text += "[batch.sweep]\n" + sweep
    return text + extra


def generate_cases() -> list[tuple[str, str | None, object]]:
    """``(case id, key the message must name or None, content)``; content is TOML text
    or a callable ``make(path)`` creating something that is not a regular file."""
    rng = random.Random(SEED)
    keys = sorted(LEAVES)
    cases: list[tuple[str, str | None, object]] = []

    # unknown keys at every depth: a section, a sub-section, below a leaf's table
    sections = sorted({k.rsplit(".", 1)[0] for k in keys})
    for sec in rng.sample(sections, min(30, len(sections))):
        cases.append((f"unknown-key-{sec}", f"{sec}.bogus_key", f"[{sec}]\nbogus_key = 1\n"))
    for sec in rng.sample(sections, 10):
        cases.append((f"unknown-table-{sec}", f"{sec}.nope",
                      f"[{sec}.nope.deeper]\nx = 1\n"))
    cases.append(("unknown-section", "runn", "[runn]\nseed = 1\n"))
    cases.append(("unknown-top-key", "seed", "seed = 1\n"))

    # wrong types (also a table or array where a value belongs)
    for key in rng.sample(keys, 70):
        meta, tp = LEAVES[key]
        value = rng.choice(wrong_types(tp, meta))
        cases.append((f"wrong-type-{key}", key, leaf_toml(key, value)))
    cases.append(("section-not-table", "run", "run = 3\n"))

    # NaN and infinities in every kind of float parameter (scalars and arrays)
    floats = [k for k in keys if LEAVES[k][1] is float]
    float_tuples = [k for k in keys if typing.get_origin(LEAVES[k][1]) is tuple
                    and typing.get_args(LEAVES[k][1])[0] is float]
    for key in rng.sample(floats, 60):
        value = rng.choice([math.nan, math.inf, -math.inf])
        cases.append((f"nonfinite-{key}", key, leaf_toml(key, value)))
    for key in float_tuples:
        meta = LEAVES[key][0]
        length = meta.get("length")
        n = length if isinstance(length, int) else (length[0] if length else 2)
        cases.append((f"nonfinite-array-{key}", f"{key}[0]",
                      leaf_toml(key, [math.inf] + [1.0] * (n - 1))))

    # huge and hugely negative values
    for key in rng.sample(floats, 40):
        value = rng.choice([1e300, -1e300, 1.7976931348623157e308, FLOAT_MAX * 10])
        if value < 0 and LEAVES[key][0].get("ge") is None and LEAVES[key][0].get("gt") is None:
            value = -FLOAT_MAX * 10
        cases.append((f"huge-{key}", key, leaf_toml(key, value)))
    ints = [k for k in keys if LEAVES[k][1] is int]
    for key in ints:
        meta = LEAVES[key][0]
        if (meta.get("le") or meta.get("lt") or 2**63) <= 2**62:   # run.seed takes 2**62
            cases.append((f"huge-int-{key}", key, leaf_toml(key, 2**62 + 1)))
        cases.append((f"beyond-int64-{key}", key, leaf_toml(key, 10**30)))

    # wrong array lengths
    for key in keys:
        meta, tp = LEAVES[key]
        length = meta.get("length")
        if typing.get_origin(tp) is tuple and length is not None:
            allowed = (length,) if isinstance(length, int) else tuple(length)
            for n in (0, max(allowed) + 1, max(allowed) + 7):
                cases.append((f"length-{n}-{key}", key, leaf_toml(key, [4] * n)))

    # run names that are not one file name
    for i, name in enumerate(["../../../x", "/abs/path", "a/b", "..", ".hidden", "",
                              "nul\x00byte", "tab\there", "x" * (MAX_NAME_BYTES + 1),
                              "\u00e9" * (MAX_NAME_BYTES // 2 + 1), "back\\slash"]):
        cases.append((f"run-name-{i}", "run.name",
                      f"[run]\nname = {json.dumps(name)}\n"))

    # counts and sizes beyond their maxima (would otherwise hang or exhaust memory)
    cases += [
        ("steps", "run.dt_min", "[run]\ndt_min = 1e-12\n"),
        ("sites", "lattice.shape", "[lattice]\nshape = [4096, 4096, 4096]\n"
                                   "[fields]\nsolver = \"implicit\"\n"),
        ("replicate", "run.replicate", "[run]\nreplicate = 10000000000000\n"),
        ("population-1e12", "batch.population.size",
         batch_toml({"patient.weight_kg": {"dist": "uniform", "low": 60.0, "high": 80.0}},
                    size=10**12)),
        ("population-float", "batch.population.size",
         batch_toml({"patient.weight_kg": {"dist": "uniform", "low": 60.0, "high": 80.0}},
                    size=1e12)),
        ("lhs-1e9", "batch.sweep.samples",
         batch_toml(sweep="method = \"lhs\"\nsamples = 1000000000\n"
                          "\"patient.weight_kg\" = {low = 60.0, high = 80.0}\n")),
        ("replicates", "batch.replicates",
         "[batch]\nname = \"fz\"\nreplicates = 100000000\n"),
        ("runs-product", "batch",
         "[batch]\nname = \"fz\"\nreplicates = 200\n" + "[batch.population]\nsize = 200\n"
         "\"patient.weight_kg\" = {dist = \"uniform\", low = 60.0, high = 80.0}\n"),
        ("grid-points", "batch.sweep",
         batch_toml(sweep="method = \"grid\"\n" + "".join(
             f"\"{k}\" = [{', '.join(['1.0'] * 20)}]\n"
             for k in ("patient.weight_kg", "blood.cart_blood_death_per_day",
                       "drugs.tcz_cl_l_per_day", "brain.ang_weight")))),
        ("list-values", "batch.sweep.\"patient.weight_kg\"",
         batch_toml(sweep="method = \"list\"\n\"patient.weight_kg\" = ["
                    + ", ".join(["70.0"] * (MAX_RUNS + 1)) + "]\n")),
    ]

    # invalid distributions and sweeps
    cov = 'batch.population."patient.weight_kg"'
    dists = [
        ({"dist": "gauss", "mean": 70.0, "sd": 5.0}, f"{cov}.dist"),
        ({"mean": 70.0}, f"{cov}.dist"),
        ({"dist": "uniform", "low": 60.0}, f"{cov}.high"),
        ({"dist": "uniform", "low": 80.0, "high": 60.0}, f"{cov}.high"),
        ({"dist": "uniform", "low": 60.0, "high": math.inf}, f"{cov}.high"),
        ({"dist": "uniform", "low": math.nan, "high": 80.0}, f"{cov}.low"),
        ({"dist": "normal", "mean": 70.0, "sd": -1.0}, f"{cov}.sd"),
        ({"dist": "normal", "mean": "70", "sd": 1.0}, f"{cov}.mean"),
        ({"dist": "normal", "mean": 70.0, "sd": 1.0, "shape": 2.0}, f"{cov}.shape"),
        ({"dist": "lognormal", "median": -1.0, "sigma": 0.3}, f"{cov}.median"),
        ({"dist": "lognormal", "median": 70.0, "sigma": -0.3}, f"{cov}.sigma"),
        ({"dist": "truncnormal", "mean": 70.0, "sd": 0.0, "low": 60.0, "high": 80.0},
         f"{cov}.sd"),
        ({"dist": "beta", "a": 0.0, "b": 1.0, "low": 60.0, "high": 80.0}, f"{cov}.a"),
        ({"dist": "loguniform", "low": 0.0, "high": 80.0}, f"{cov}.low"),
        ({"dist": "choice", "values": []}, f"{cov}.values"),
        ({"dist": "choice", "values": [60.0, 70.0], "weights": [1.0]}, f"{cov}.weights"),
        ({"dist": "choice", "values": [60.0, 70.0], "weights": [-1.0, 2.0]}, f"{cov}.weights"),
        ({"dist": "choice", "values": [60.0, -5.0]}, f"{cov}.values[1]"),
        ({"dist": "choice", "values": [60.0, math.inf]}, f"{cov}.values[1]"),
        (3.0, cov),
    ]
    for i, (dist, key) in enumerate(dists):
        cases.append((f"dist-{i}", key, batch_toml({"patient.weight_kg": dist})))
    cases += [
        ("dist-on-string", 'batch.population."product.preset".dist',
         batch_toml({"product.preset": {"dist": "uniform", "low": 0.0, "high": 1.0}})),
        ("dist-bad-path", 'batch.population."patient.wieght_kg"',
         batch_toml({"patient.wieght_kg": {"dist": "uniform", "low": 60.0, "high": 80.0}})),
        ("dist-owned-path", 'batch.population."run.seed"',
         batch_toml({"run.seed": {"dist": "uniform", "low": 1.0, "high": 8.0}})),
        ("sweep-method", "batch.sweep.method",
         batch_toml(sweep="method = \"grdi\"\n\"patient.weight_kg\" = [60.0]\n")),
        ("sweep-empty", 'batch.sweep."patient.weight_kg"',
         batch_toml(sweep="method = \"grid\"\n\"patient.weight_kg\" = []\n")),
        ("sweep-nan", 'batch.sweep."patient.weight_kg"[0]',
         batch_toml(sweep="method = \"grid\"\n\"patient.weight_kg\" = [nan]\n")),
        ("sweep-lhs-inf", 'batch.sweep."patient.weight_kg".high',
         batch_toml(sweep="method = \"lhs\"\nsamples = 4\n"
                          "\"patient.weight_kg\" = {low = 60.0, high = inf}\n")),
        ("sweep-list-lengths", "batch.sweep",
         batch_toml(sweep="method = \"list\"\n\"patient.weight_kg\" = [60.0, 70.0]\n"
                          "\"brain.ang_weight\" = [0.1]\n")),
        ("batch-name", "batch.name", "[batch]\nname = \"../up\"\n"),
        ("batch-unknown", "batch.replicatse", "[batch]\nreplicatse = 2\n"),
        ("batch-inline-nan", "blood.cart_blood_death_per_day",
         "[batch]\nname = \"fz\"\n[blood]\ncart_blood_death_per_day = nan\n"),
    ]

    # TOML syntax errors (no key to name)
    valid = "[run]\nseed = 3\nend_day = 10.0\n[lattice]\nshape = [32, 32]\n"
    broken = ["[run\nseed = 1\n", "[run]\nseed = \n", "[run]\nseed = 1\nseed = 2\n",
              "[run]\nname = \"unterminated\n", "[run]\nname = \"bad \\q escape\"\n",
              "[run]\nseed = 1 2\n", "[[run]]\nseed = 1\n[run]\nseed = 2\n",
              "= 3\n", "[run]\nend_day = 1e\n", "[lattice]\nshape = [32, 32\n",
              "\x00", "[run]\nseed = 0x\n", "[run]\nstart_day = --1.0\n"]
    for i, text in enumerate(broken):
        cases.append((f"syntax-{i}", None, text))
    for i in range(12):   # random damage to a valid file
        pos = rng.randrange(len(valid))
        junk = rng.choice(["[", "]", "=", "\"", "{", ",", "\n=\n", "[[", "'''"])
        text = valid[:pos] + junk + valid[pos:]
        try:
            import tomllib
            tomllib.loads(text)
            continue       # still valid TOML: a wrong value, not a syntax error
        except tomllib.TOMLDecodeError:
            cases.append((f"syntax-random-{i}", None, text))
    cases.append(("not-utf8", None, b"[run]\nname = \"\xff\xfe\"\n"))

    # nesting and empty files
    cases += [
        ("deep-array", None, "a = " + "[" * 5000 + "]" * 5000 + "\n"),
        ("deep-tables", None, "[" + ".".join(["t"] * 3000) + "]\nx = 1\n"),
        ("deep-inline", None, "a = " + "{b = " * 2000 + "1" + "}" * 2000 + "\n"),
        ("empty", None, ""),
        ("blank", None, "\n\n   \n\t\n"),
        ("comments", None, "# only a comment\n   # another\n"),
    ]

    # paths that are not regular files
    def fifo(path):
        os.mkfifo(path)

    def folder(path):
        path.mkdir()

    def missing(path):
        pass

    def device(path):
        return Path("/dev/null")

    cases += [("fifo", None, fifo), ("folder", None, folder), ("missing", None, missing),
              ("device", None, device)]
    return cases


CASES = generate_cases()


def materialise(tmp_path: Path, i: int, content) -> Path:
    path = tmp_path / f"case{i}.toml"
    if callable(content):
        return content(path) or path
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


class Hang(Exception):
    pass


def validate_in_process(path: Path) -> tuple[int, str]:
    """``abm validate PATH`` in this process: exit code and stderr; a hang raises Hang."""
    def on_alarm(signum, frame):
        raise Hang(f"abm validate {path} took more than {CASE_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(CASE_TIMEOUT_S)
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(["validate", str(path)])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return rc, err.getvalue()


def test_there_are_at_least_300_cases():
    assert len(CASES) >= 300, len(CASES)
    assert len({name for name, _, _ in CASES}) == len(CASES)


def test_every_malformed_config_is_one_line_exit_2(tmp_path):
    failures = []
    for i, (name, key, content) in enumerate(CASES):
        path = materialise(tmp_path, i, content)
        try:
            rc, err = validate_in_process(path)
        except Hang as exc:
            failures.append(f"{name}: {exc}")
            continue
        lines = err.splitlines()
        if rc != 2 or len(lines) != 1 or not lines[0].startswith("abm: error: "):
            failures.append(f"{name}: exit {rc}, stderr {err!r}")
        elif "Traceback" in err:
            failures.append(f"{name}: traceback {err!r}")
        elif key is not None and key not in lines[0]:
            failures.append(f"{name}: does not name {key}: {lines[0]}")
    assert not failures, f"{len(failures)} of {len(CASES)} cases:\n" + "\n".join(failures[:20])


SUBPROCESS_SAMPLE = ["fifo", "deep-array", "empty", "run-name-0", "population-1e12"]


@pytest.mark.parametrize("name", SUBPROCESS_SAMPLE)
def test_subprocess_sample(tmp_path, name):
    i, (_, key, content) = next((i, c) for i, c in enumerate(CASES) if c[0] == name)
    path = materialise(tmp_path, i, content)
    res = subprocess.run([sys.executable, "-m", "abm", "validate", str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("abm: error: "), res.stderr
    assert key is None or key in lines[0]


def test_empty_config_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("# nothing here\n")
    rc, err = validate_in_process(path)
    assert rc == 2 and "is empty" in err and "configs/default.toml" in err
