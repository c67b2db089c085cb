"""Batches: config validation, expansion and seeds, executors, failures, kills and resume.

The runs are tiny (24 x 24 lattice, half a day) so the whole file stays near a
minute once the Numba cache is warm; the ``warm`` fixture fills the cache in
this process first, so worker processes only load it.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from abm.batch import (batch_from_dict, expand_batch, is_batch_file, load_batch, run_seed,
                       validate_batch)
from abm.batch.config import param_index
from abm.batch.executors import DaskExecutor, LocalPool
from abm.batch.manifest import Manifest
from abm.batch.runner import batch_folder, run_batch
from abm.batch.sampling import lhs_unit
from abm.batch.tomlio import batch_toml
from abm.cli import main as cli_main
from abm.errors import AbmError, ConfigError
from abm.io.run import run_to_file

ROOT = Path(__file__).resolve().parents[2]


def source_hash() -> str:
    import hashlib
    h = hashlib.sha256()
    for p in sorted((ROOT / "abm").rglob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()


#: The simulator sources when this module was imported: runs in processes started
#: later only match runs in this process if nobody edited the sources meanwhile.
SOURCE_AT_IMPORT = source_hash()

TINY_RUN = {
    "run": {"start_day": 0.0, "end_day": 0.5, "snapshot_every_h": 3.0,
            "checkpoint_every_h": 3.0},
    "lattice": {"shape": [24, 24]},
    "tumour": {"initial_cells": 50},
}


def batch_data(**batch) -> dict:
    data = copy.deepcopy(TINY_RUN)
    data["batch"] = {"name": "t", "root_seed": 123, **batch}
    return data


def write_toml(path: Path, data: dict) -> Path:
    """A batch dict as a TOML file (through the same writer as batch.toml)."""
    from abm.batch.tomlio import tables, value
    lines = ["[batch]"]
    b = data["batch"]
    for k, v in b.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {value(v)}")
    for sub in ("sweep", "population"):
        if sub in b:
            lines.append(f"[batch.{sub}]")
            for k, v in b[sub].items():
                lines.append(f"{json.dumps(k)} = {value(v)}")
    lines += tables({k: v for k, v in data.items() if k != "batch"})
    path.write_text("\n".join(lines) + "\n")
    return path


def quiet(_msg):
    pass


def datasets(path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                      if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_run(a, b):
    """Every dataset (/timeseries, /fields, /cells, /events, /endpoints, /checkpoint)
    bit for bit; attributes (wall times, dates, host) are ignored."""
    try:
        _compare(a, b)
    except AssertionError:
        if source_hash() != SOURCE_AT_IMPORT:   # a shared working tree edited meanwhile
            pytest.skip("abm sources changed while the test ran: runs in processes started "
                        "at different times used different code")
        raise


def _compare(a, b):
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db)
    assert any(k.startswith("timeseries/") for k in da) and any(k.startswith("fields/") for k in da)
    for name in da:
        x, y = np.asarray(da[name]), np.asarray(db[name])
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind == "O":
            assert x.tolist() == y.tolist(), name
        else:
            assert x.tobytes() == y.tobytes(), f"{name} differs between {a} and {b}"


def complete(path) -> bool:
    with h5py.File(path, "r") as h5:
        return int(h5.attrs["complete"]) == 1


def rows(folder) -> dict[str, dict]:
    with open(Path(folder) / "manifest.csv", newline="") as fh:
        return {r["run_id"]: r for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """Compile (or load) every kernel in this process before workers start."""
    cfg = expand_batch(batch_from_dict(batch_data()))[0].resolve()
    run_to_file(cfg, path=tmp_path_factory.mktemp("warm") / "w.h5", log=quiet)


# ----------------------------------------------------------------------------
# config validation
# ----------------------------------------------------------------------------


def fails(data, *fragments, file="b.toml"):
    with pytest.raises(ConfigError) as info:
        batch_from_dict(data, file=file)
    msg = str(info.value)
    assert msg.startswith(f"{file}: "), msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_batch_section_errors_name_file_and_key():
    fails(batch_data(replicats=2), "batch.replicats is not a known key", "did you mean 'replicates'")
    fails(batch_data(replicates="2"), "batch.replicates must be an integer")
    fails(batch_data(replicates=0), "batch.replicates must be >= 1")
    fails(batch_data(root_seed=-1), "batch.root_seed must be >= 0")
    fails(batch_data(name="a/b"), "batch.name must be a folder name")
    fails({"batch": 3}, "batch must be a table")
    fails(dict(TINY_RUN), "has no [batch] table")


def test_sweep_errors_name_file_and_key():
    bad_path = {"method": "grid", "patient.tumor_burden_cells": [1e9]}
    fails(batch_data(sweep=bad_path), 'batch.sweep."patient.tumor_burden_cells" is not a parameter '
          "path", "did you mean 'patient.tumour_burden_cells'")
    fails(batch_data(sweep={"method": "grid", "patient": [1, 2]}), 'batch.sweep."patient" is not')
    fails(batch_data(sweep={"method": "grid", "patient.tumour_burden_cells": [1e9, -1.0]}),
          'batch.sweep."patient.tumour_burden_cells"[1] = -1.0 is not allowed',
          "patient.tumour_burden_cells must be >= 100.0")
    fails(batch_data(sweep={"method": "grid", "tumour.initial_cells": [10, 2.5]}),
          'batch.sweep."tumour.initial_cells"[1]', "must be an integer")
    fails(batch_data(sweep={"method": "grid", "product.preset": ["cd28", "cd29"]}),
          'batch.sweep."product.preset"[1]', "'cd28', '4-1bb'")
    fails(batch_data(sweep={"method": "grd", "run.end_day": [1.0]}), "batch.sweep.method must be one",
          "did you mean 'grid'")
    fails(batch_data(sweep={"run.end_day": [1.0]}), "batch.sweep.method is required")
    fails(batch_data(sweep={"method": "lhs", "run.end_day": {"low": 1.0, "high": 2.0}}),
          "batch.sweep.samples is required")
    fails(batch_data(sweep={"method": "grid", "samples": 3, "run.end_day": [1.0]}),
          "batch.sweep.samples is only used with method = 'lhs'")
    fails(batch_data(sweep={"method": "list", "run.end_day": [1.0, 2.0], "patient.weight_kg": [70.0]}),
          "batch.sweep method = 'list' needs arrays of equal length")
    fails(batch_data(sweep={"method": "grid", "run.end_day": 1.0}),
          'batch.sweep."run.end_day" must be a non-empty array')
    fails(batch_data(sweep={"method": "lhs", "samples": 4, "run.end_day": {"low": 2.0, "high": 1.0}}),
          'batch.sweep."run.end_day".high must be > low')
    fails(batch_data(sweep={"method": "lhs", "samples": 4,
                            "patient.weight_kg": {"low": 0.0, "high": 9.0, "scale": "log"}}),
          'batch.sweep."patient.weight_kg".low must be > 0 with scale = \'log\'')
    fails(batch_data(sweep={"method": "grid", "run.seed": [1, 2]}),
          'batch.sweep."run.seed" cannot be varied')
    fails(batch_data(sweep={"method": "grid"}), "batch.sweep lists no parameter")


def test_population_errors_name_file_and_key():
    cov = {"dist": "uniform", "low": 0.1, "high": 0.5}
    fails(batch_data(population={"lymphodepletion.depth": cov}), "batch.population.size is required")
    fails(batch_data(population={"size": 0}), "batch.population.size must be an integer >= 1")
    fails(batch_data(population={"size": 2, "lymphodepletion.depht": cov}),
          'batch.population."lymphodepletion.depht" is not a parameter path',
          "did you mean 'lymphodepletion.depth'")
    fails(batch_data(population={"size": 2, "lymphodepletion.depth": {"dist": "unifrom"}}),
          'batch.population."lymphodepletion.depth".dist must be one of', "did you mean 'uniform'")
    fails(batch_data(population={"size": 2, "lymphodepletion.depth": {"dist": "uniform", "low": 0.1}}),
          'batch.population."lymphodepletion.depth".high is required')
    fails(batch_data(population={"size": 2, "lymphodepletion.depth": {**cov, "hgih": 1}}),
          'batch.population."lymphodepletion.depth".hgih is not a known key')
    fails(batch_data(population={"size": 2, "lymphodepletion.depth": {**cov, "low": 0.9}}),
          'batch.population."lymphodepletion.depth".high must be > low')
    fails(batch_data(population={"size": 2, "patient.weight_kg": {"dist": "normal", "mean": 70,
                                                                  "sd": -1}}),
          'batch.population."patient.weight_kg".sd must be >= 0')
    fails(batch_data(population={"size": 2, "product.preset": cov}),
          "'uniform' draws numbers but product.preset is a str parameter")
    fails(batch_data(population={"size": 2, "product.preset": {"dist": "choice",
                                                               "values": ["cd28", "cd29"]}}),
          'batch.population."product.preset".values[1] = \'cd29\' is not allowed')
    fails(batch_data(population={"size": 2, "product.preset": {"dist": "choice", "values": ["cd28"],
                                                               "weights": [1, 2]}}),
          'batch.population."product.preset".weights must be an array of 1 numbers')
    fails(batch_data(population={"size": 2, "output.dir": {"dist": "choice", "values": ["x"]}}),
          'batch.population."output.dir" cannot be varied')
    both = batch_data(sweep={"method": "grid", "lymphodepletion.depth": [0.5]},
                      population={"size": 2, "lymphodepletion.depth": cov})
    fails(both, 'batch.population."lymphodepletion.depth" is also swept')


def test_varied_values_that_conflict_with_the_base_fail_at_load():
    # a covariate that can never combine with the base (burden given as a volume there)
    data = batch_data(population={"size": 2, "patient.tumour_burden_cells": {
        "dist": "loguniform", "low": 1e9, "high": 1e11}})
    data["patient"] = {"tumour_volume_ml": 10.0}
    fails(data, 'batch.population."patient.tumour_burden_cells" conflicts with the run config',
          "patient.tumour_volume_ml cannot be given together")
    # a sweep value that breaks a base key nothing varies
    fails(batch_data(sweep={"method": "grid", "tumour.initial_cells": [10, 5000]}),
          'batch.sweep."tumour.initial_cells"[1] = 5000 is not allowed', "must fit into")
    fails(batch_data(sweep={"method": "grid", "lattice.shape": [[24, 24], [6, 6]]}),
          'batch.sweep."lattice.shape"[1] = [6, 6] conflicts with the run config',
          "lattice.vessel_segment_sites")
    # ... unless that key is varied too: then only some runs fail, recorded per run
    ok = batch_from_dict(batch_data(sweep={"method": "grid", "lattice.shape": [[24, 24], [6, 6]],
                                           "lattice.vessel_segment_sites": [4, 10]}))
    errors = [s.error for s in expand_batch(ok)]
    assert errors[:2] == [None, None] and "vessel_segment_sites" in errors[3]


def test_base_file_and_inline_sections(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text('[run]\nend_day = 2.0\n[lattice]\nshape = [24, 24]\n[tumour]\ninitial_cells = 50\n')
    b = write_toml(tmp_path / "b.toml", {"batch": {"name": "x", "root_seed": 1, "base": "base.toml"},
                                         "run": {"start_day": 0.0, "end_day": 1.0}})
    batch = load_batch(b)
    cfg = batch.base_config()
    assert cfg.run.end_day == 1.0 and cfg.run.start_day == 0.0 and cfg.lattice.shape == (24, 24)
    assert batch.base_file == str(tmp_path / "base.toml")
    # errors: a missing base, a base that is a batch, a bad key in the base, a bad inline key
    write_toml(b, {"batch": {"name": "x", "base": "nope.toml"}})
    with pytest.raises(ConfigError, match=r"b\.toml: batch\.base names a file that does not exist"):
        load_batch(b)
    write_toml(b, {"batch": {"name": "x", "base": "b.toml"}})
    with pytest.raises(ConfigError, match="batch.base names a batch file"):
        load_batch(b)
    base.write_text("[run]\nend_dya = 2.0\n")
    write_toml(b, {"batch": {"name": "x", "base": "base.toml"}})
    with pytest.raises(ConfigError, match=r"base\.toml: run\.end_dya is not a known key"):
        load_batch(b)
    base.write_text("[run]\nend_day = 2.0\n")
    write_toml(b, {"batch": {"name": "x", "base": "base.toml"}, "run": {"dt_min": -1.0}})
    with pytest.raises(ConfigError, match=r"b\.toml: run\.dt_min must be > 0"):
        load_batch(b)


def test_nested_tables_equal_quoted_paths():
    quoted = batch_data(sweep={"method": "grid", "fields.il6.D_um2_s": [10.0, 20.0]})
    nested = batch_data(sweep={"method": "grid", "fields": {"il6": {"D_um2_s": [10.0, 20.0]}}})
    a, b = expand_batch(batch_from_dict(quoted)), expand_batch(batch_from_dict(nested))
    assert [s.config_hash for s in a] == [s.config_hash for s in b]
    assert a[1].resolve().fields.il6.D_um2_s == 20.0


def test_every_parameter_path_is_known():
    # the index mirrors the real Config, including new sections added by others
    idx = param_index()
    for path in ("patient.tumour_burden_cells", "tumour.antigen_median_molecules",
                 "tumour.antigen_negative_fraction", "lymphodepletion.depth",
                 "product.dose_cells", "product.preset", "patient.baseline_endothelial_activation"):
        assert path in idx


def test_docs_example_is_valid(tmp_path):
    text = (ROOT / "docs" / "batch.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    base = (ROOT / "configs" / "default.toml").as_posix()
    path = tmp_path / "doc.toml"
    path.write_text(block.replace('base = "default.toml"', f'base = "{base}"'))
    batch = load_batch(path)
    assert batch.n_runs == 400 and batch.name == "trial" and not batch.warnings
    specs = expand_batch(batch, indices=[0, 399])
    assert all(s.error is None for s in specs)


def test_validate_command_accepts_batch_files(tmp_path, capsys):
    examples = sorted(str(p) for pattern in ("batch_*.toml", "trial_cd28.toml", "trial_41bb.toml",
                                             "tumor_burden.toml")
                      for p in (ROOT / "configs").glob(pattern))
    assert len(examples) == 6 and all(is_batch_file(p) for p in examples)
    assert not is_batch_file(ROOT / "configs" / "trial_patient.toml")
    assert not is_batch_file(ROOT / "configs" / "default.toml")
    assert cli_main(["validate", *examples, str(ROOT / "configs" / "default.toml")]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok (") == len(examples) + 1 and "batch 'example': 40 runs" in out
    bad = write_toml(tmp_path / "bad.toml", batch_data(population={"size": 2, "product.prest": {
        "dist": "choice", "values": ["cd28"]}}))
    assert cli_main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"abm: error: {bad}: batch.population.\"product.prest\"") and "Traceback" not in err
    # invalid draws are reported, not raised
    risky = write_toml(tmp_path / "risky.toml", batch_data(population={"size": 20, "lymphodepletion.depth": {
        "dist": "uniform", "low": 0.5, "high": 1.5}}))
    summary, notes = validate_batch(risky)
    assert "20 runs" in summary and any("would fail" in n and "lymphodepletion.depth" in n for n in notes)
    assert any("can fall outside the allowed range" in n for n in notes)


# ----------------------------------------------------------------------------
# expansion, seeds, draws
# ----------------------------------------------------------------------------


def test_expansion_order_ids_seeds_and_replicates():
    data = batch_data(replicates=3,
                      sweep={"method": "grid", "patient.tumour_burden_cells": [1e9, 1e10],
                             "product.preset": ["cd28", "4-1bb"]},
                      population={"size": 2, "patient.weight_kg": {"dist": "uniform", "low": 50,
                                                                   "high": 90}})
    batch = batch_from_dict(data)
    specs = expand_batch(batch)
    assert batch.n_runs == len(specs) == 4 * 2 * 3
    assert [s.index for s in specs] == list(range(24)) and specs[7].run_id == "t_00007"
    # replicate outermost, then sweep point (first parameter outermost), then patient
    s = specs[(1 * 4 + 2) * 2 + 1]
    assert (s.replicate, s.sweep_point, s.member) == (1, 2, 1)
    assert s.params["patient.tumour_burden_cells"] == 1e10 and s.params["product.preset"] == "cd28"
    # seeds: SeedSequence([root, index]), all distinct, recorded in the config
    assert all(sp.seed == run_seed(123, sp.index) == sp.config["run"]["seed"] for sp in specs)
    assert len({sp.seed for sp in specs}) == 24 and all(0 <= sp.seed < 2**63 for sp in specs)
    assert specs[3].config["run"]["name"] == "t_00003" and specs[9].config["run"]["replicate"] == 1
    # replicates: same parameters, different seeds; a patient is the same at every sweep point
    rep = [sp for sp in specs if sp.sweep_point == 2 and sp.member == 1]
    assert len({json.dumps(sp.params, sort_keys=True) for sp in rep}) == 1
    assert len({sp.seed for sp in rep}) == 3
    w = {sp.params["patient.weight_kg"] for sp in specs if sp.member == 0}
    assert len(w) == 1
    # configs resolve, with the preset values of the drawn preset
    cfg = specs[1 * 2].resolve()
    assert cfg.product.preset == "4-1bb" and cfg.product.costimulation == "4-1BB"
    # same root seed -> same batch; another root seed -> other seeds and draws
    again = expand_batch(batch_from_dict(copy.deepcopy(data)))
    assert [a.config_hash for a in again] == [b.config_hash for b in specs]
    other = expand_batch(batch_from_dict(batch_data(**{**data["batch"], "root_seed": 124})))
    assert other[0].seed != specs[0].seed
    assert other[0].params["patient.weight_kg"] != specs[0].params["patient.weight_kg"]
    # a single run can be built alone
    alone = expand_batch(batch, indices=[13])[0]
    assert alone.config == specs[13].config and alone.seed == specs[13].seed


def test_common_seeds_and_growing_replicates_keep_runs():
    data = batch_data(replicates=2, common_seeds=True,
                      sweep={"method": "list", "product.preset": ["cd28", "4-1bb"]})
    specs = expand_batch(batch_from_dict(data))
    assert specs[0].seed == specs[1].seed and specs[2].seed == specs[3].seed != specs[0].seed
    grown = expand_batch(batch_from_dict(batch_data(**{**data["batch"], "replicates": 3})))
    assert [s.config_hash for s in grown[:4]] == [s.config_hash for s in specs]


def test_covariate_draws_are_keyed_by_member_and_path():
    covs = {"patient.tumour_burden_cells": {"dist": "loguniform", "low": 1e9, "high": 1e11},
            "lymphodepletion.depth": {"dist": "truncnormal", "mean": 0.8, "sd": 0.2, "low": 0.3,
                                      "high": 0.95}}
    a = expand_batch(batch_from_dict(batch_data(population={"size": 50, **covs})), validate=False)
    # adding a covariate (before the others) changes none of their draws
    more = {"product.preset": {"dist": "choice", "values": ["cd28", "4-1bb"]}, **covs}
    b = expand_batch(batch_from_dict(batch_data(population={"size": 50, **more})), validate=False)
    for x, y in zip(a, b):
        for p in covs:
            assert x.params[p] == y.params[p]
    burden = np.array([s.params["patient.tumour_burden_cells"] for s in a])
    depth = np.array([s.params["lymphodepletion.depth"] for s in a])
    assert burden.min() >= 1e9 and burden.max() < 1e11 and len(set(burden)) == 50
    assert depth.min() >= 0.3 and depth.max() <= 0.95


@pytest.mark.parametrize("spec, path, check", [
    ({"dist": "uniform", "low": 50.0, "high": 90.0}, "patient.weight_kg",
     lambda x: abs(x.mean() - 70) < 1.5 and x.min() >= 50 and x.max() < 90),
    ({"dist": "loguniform", "low": 1e9, "high": 1e11}, "patient.tumour_burden_cells",
     lambda x: abs(np.log10(x).mean() - 10) < 0.05),
    ({"dist": "normal", "mean": 70.0, "sd": 10.0}, "patient.weight_kg",
     lambda x: abs(x.mean() - 70) < 0.8 and abs(x.std() - 10) < 0.6),
    ({"dist": "lognormal", "median": 1e4, "sigma": 0.5}, "tumour.antigen_median_molecules",
     lambda x: abs(np.median(np.log(x)) - np.log(1e4)) < 0.05 and abs(np.log(x).std() - 0.5) < 0.03),
    # bounded: ln x is N(ln 1e10, 1) cut at -2.30 and +4.61 SD; its mean moves
    # up by phi(a) / (Phi(b) - Phi(a)) = 0.0287
    ({"dist": "lognormal", "median": 1e10, "sigma": 1.0, "low": 1e9, "high": 1e12},
     "patient.tumour_burden_cells",
     lambda x: x.min() >= 1e9 and x.max() <= 1e12 and (x < 1.2e9).sum() > 0
     and abs(np.log(x).mean() - np.log(1e10) - 0.0287) < 0.07),
    ({"dist": "truncnormal", "mean": 0.8, "sd": 0.2, "low": 0.5, "high": 0.9},
     "lymphodepletion.depth", lambda x: x.min() >= 0.5 and x.max() <= 0.9),
    ({"dist": "beta", "a": 2.0, "b": 6.0}, "patient.baseline_endothelial_activation",
     lambda x: abs(x.mean() - 0.25) < 0.01),
    ({"dist": "uniform", "low": 10, "high": 20}, "tumour.initial_cells",
     lambda x: x.dtype.kind == "i" and set(np.unique(x)) <= set(range(10, 21))),
])
def test_distributions(spec, path, check):
    batch = batch_from_dict(batch_data(population={"size": 2000, path: spec}))
    from abm.batch.sampling import population_members
    x = np.array([m[path] for m in population_members(batch).values()])
    assert check(x)


def test_choice_weights():
    batch = batch_from_dict(batch_data(population={"size": 4000, "product.preset": {
        "dist": "choice", "values": ["cd28", "4-1bb"], "weights": [3, 1]}}))
    from abm.batch.sampling import population_members
    vals = [m["product.preset"] for m in population_members(batch).values()]
    assert abs(vals.count("cd28") / 4000 - 0.75) < 0.03


def test_latin_hypercube_strata():
    for n in (1, 7, 64):
        x = lhs_unit(5, n, "a.b")
        assert sorted(np.floor(x * n).astype(int)) == list(range(n))
    data = batch_data(sweep={"method": "lhs", "samples": 10,
                             "product.kill_rate_per_h": {"low": 0.1, "high": 10.0, "scale": "log"},
                             "tumour.initial_cells": {"low": 10, "high": 60},
                             "product.preset": {"values": ["cd28", "4-1bb"]}})
    specs = expand_batch(batch_from_dict(data))
    k = np.log10([s.params["product.kill_rate_per_h"] for s in specs])
    assert sorted(np.floor((k + 1) / 2 * 10).astype(int)) == list(range(10))
    assert all(isinstance(s.params["tumour.initial_cells"], int) for s in specs)
    assert [s.params["product.preset"] for s in specs].count("cd28") == 5
    assert all(s.error is None for s in specs)


def test_saved_batch_toml_roundtrips(tmp_path):
    data = batch_data(replicates=2,
                      sweep={"method": "lhs", "samples": 3,
                             "product.kill_rate_per_h": {"low": 0.1, "high": 10.0, "scale": "log"}},
                      population={"size": 2, "product.preset": {"dist": "choice",
                                                                "values": ["cd28", "4-1bb"],
                                                                "weights": [1.0, 2.0]},
                                  "patient.weight_kg": {"dist": "normal", "mean": 70.0, "sd": 5.0}})
    data["batch"]["root_seed"] = None
    del data["batch"]["root_seed"]
    batch = batch_from_dict(data)
    assert batch.root_seed_drawn
    saved = tmp_path / "batch.toml"
    saved.write_text(batch_toml(batch, "header"))
    again = load_batch(saved)
    assert not again.root_seed_drawn and again.root_seed == batch.root_seed
    assert [s.config_hash for s in expand_batch(again)] == [s.config_hash for s in expand_batch(batch)]


# ----------------------------------------------------------------------------
# execution
# ----------------------------------------------------------------------------

POP4 = {"size": 4, "patient.tumour_burden_cells": {"dist": "loguniform", "low": 1e9, "high": 1e11},
        "product.preset": {"dist": "choice", "values": ["cd28", "4-1bb"]}}


@pytest.fixture(scope="module")
def pool(warm):
    """One local pool of 2 worker processes shared by the tests (spawned once)."""
    with LocalPool(workers=2, threads=1) as p:
        yield p


def test_local_pool_and_dask_give_identical_runs(tmp_path, pool):
    """Must-show 1: the same batch on the local pool and on a Dask LocalCluster."""
    batch = batch_from_dict(batch_data(population=POP4))
    a = run_batch(batch, out=tmp_path / "local", executor=pool, log=quiet)
    with DaskExecutor(local_workers=2) as dask:
        assert len(dask.client.nthreads()) == 2
        b = run_batch(batch, out=tmp_path / "dask", executor=dask, log=quiet)
    assert (a.done, a.failed, b.done, b.failed) == (4, 0, 4, 0)
    ra, rb = rows(a.folder), rows(b.folder)
    assert len({r["worker"] for r in ra.values()}) == len({r["worker"] for r in rb.values()}) == 2
    for run_id in ra:
        assert ra[run_id]["status"] == rb[run_id]["status"] == "done"
        assert ra[run_id]["seed"] == rb[run_id]["seed"]
        assert_same_run(a.folder / f"{run_id}.h5", b.folder / f"{run_id}.h5")
    # the manifest records parameters; the folder has the resolved batch
    assert float(ra["t_00002"]["patient.tumour_burden_cells"]) == \
        expand_batch(batch, [2])[0].params["patient.tumour_burden_cells"]
    assert load_batch(a.folder / "batch.toml").root_seed == 123


def test_run_alone_matches_its_batch_twin(tmp_path, pool):
    """Must-show 2: run k alone (API, and `abm batch --only k`) equals its batch twin."""
    cfg = write_toml(tmp_path / "b.toml", batch_data(population=POP4))
    res = run_batch(load_batch(cfg), out=tmp_path / "batch", executor=pool, log=quiet)
    assert res.done == 4
    spec = expand_batch(load_batch(cfg))[2]
    alone = run_to_file(spec.resolve(), path=tmp_path / "alone.h5", log=quiet)
    assert_same_run(alone.path, res.folder / "t_00002.h5")
    assert cli_main(["batch", str(cfg), "--only", "t_00001", "--out", str(tmp_path / "only"),
                     "--workers", "0", "-q"]) == 0
    only = rows(tmp_path / "only" / "t")
    assert only["t_00001"]["status"] == "done" and only["t_00000"]["status"] == "pending"
    assert_same_run(tmp_path / "only" / "t" / "t_00001.h5", res.folder / "t_00001.h5")
    assert not (tmp_path / "only" / "t" / "t_00000.h5").exists()


def test_failing_runs_are_recorded_and_resume_reruns_only_them(tmp_path, pool):
    """Must-show 3: bad draws and a run that raises fail alone; --resume re-runs only those."""
    pop = {"size": 6, "lymphodepletion.depth": {"dist": "uniform", "low": 0.5, "high": 1.3}}
    batch = batch_from_dict(batch_data(population=pop))
    specs = expand_batch(batch)
    bad = {s.run_id for s in specs if s.error}
    good = [s for s in specs if not s.error]
    assert 1 <= len(bad) <= 4, "root seed 123 should give a few out-of-range draws"
    folder = batch_folder(batch, tmp_path)
    blocked = good[0]
    (folder / f"{blocked.run_id}.h5.part").mkdir(parents=True)   # this run raises on create
    res = run_batch(batch, out=tmp_path, executor=pool, log=quiet)
    r = rows(folder)
    assert res.failed == len(bad) + 1 and res.done == len(good) - 1
    for run_id in bad:
        assert r[run_id]["status"] == "failed"
        assert "lymphodepletion.depth must be >= 0 and < 1" in r[run_id]["error"]
    assert r[blocked.run_id]["status"] == "failed" and "cannot be created" in r[blocked.run_id]["error"]
    done_files = {s.run_id: s.file(folder) for s in good[1:]}
    for run_id, path in done_files.items():
        assert r[run_id]["status"] == "done" and complete(path)
    stamps = {k: p.stat().st_mtime_ns for k, p in done_files.items()}

    # a second start without --resume is refused; --resume re-runs only the failed runs
    with pytest.raises(AbmError, match="already holds a batch"):
        run_batch(batch, out=tmp_path, executor=pool, log=quiet)
    (folder / f"{blocked.run_id}.h5.part").rmdir()
    res = run_batch(batch, out=tmp_path, executor=pool, resume=True, log=quiet)
    r2 = rows(folder)
    assert res.skipped == len(good) - 1 and res.attempted == len(bad) + 1
    assert r2[blocked.run_id]["status"] == "done" and r2[blocked.run_id]["attempts"] == "2"
    assert complete(blocked.file(folder))
    for run_id in bad:
        assert r2[run_id]["status"] == "failed" and r2[run_id]["attempts"] == "2"
    for run_id, path in done_files.items():
        assert r2[run_id]["attempts"] == "1" and path.stat().st_mtime_ns == stamps[run_id]


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(k) for t in os.listdir(f"/proc/{p}/task")
                    for k in open(f"/proc/{p}/task/{t}/children").read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def _alive(pids) -> list[int]:
    out = []
    for k in pids:
        try:
            if "zombie" not in open(f"/proc/{k}/status").read():
                out.append(k)
        except OSError:
            pass
    return out


def _start_and_kill(args: list[str], folder: Path, sig: int, after_done: int):
    """Start ``abm batch ARGS``; once ``after_done`` runs are done, send ``sig``."""
    # Ctrl-C acts as in a terminal even when the tests themselves run as a background job
    # (a shell starts those with SIGINT ignored, and a child inherits that)
    proc = subprocess.Popen([sys.executable, "-m", "abm", "batch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    kids: list[int] = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            kids = sorted(set(kids) | set(_descendants(proc.pid)))
            if (folder / "manifest.csv").exists():
                states = [r["status"] for r in rows(folder).values()]
                if states.count("done") >= after_done:
                    break
        assert proc.poll() is None, "the batch ended before it could be killed"
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)   # Ctrl-C in a terminal reaches the whole group
        else:
            proc.send_signal(sig)      # kill -9 of the batch process only
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    t = time.monotonic()
    while _alive(kids) and time.monotonic() - t < 30:
        time.sleep(0.1)
    return proc.returncode, stdout, stderr, _alive(kids)


def _check_done_runs(folder: Path) -> dict[str, int]:
    """Every run marked done has a complete, readable file; return their mtimes."""
    out = {}
    for run_id, row in rows(folder).items():
        if row["status"] == "done":
            path = folder / f"{run_id}.h5"
            assert complete(path)
            datasets(path)
            out[run_id] = path.stat().st_mtime_ns
    return out


def test_interrupted_and_killed_batch_lose_nothing_and_resume(tmp_path, pool):
    """Must-show 4: Ctrl-C (SIGINT to the group), then kill -9 of a resumed batch, then --resume."""
    data = {**copy.deepcopy(TINY_RUN), "batch": {"name": "k", "root_seed": 99, "population": {
        "size": 10, "patient.tumour_burden_cells": {"dist": "loguniform", "low": 1e9, "high": 1e11}}}}
    data["run"]["end_day"] = 1.0
    cfg = write_toml(tmp_path / "k.toml", data)
    out = tmp_path / "out"
    folder = out / "k"
    args = [str(cfg), "--out", str(out), "--workers", "2"]

    # 1. Ctrl-C after 2 runs: clean stop, exit 130, no traceback, the manifest says what is done
    rc, stdout, stderr, alive = _start_and_kill(args, folder, signal.SIGINT, after_done=2)
    assert rc == 130 and "Traceback" not in stderr, stderr
    assert "interrupted; continue with: abm batch" in stdout and "--resume" in stdout
    assert alive == [], "worker processes outlived the batch"
    r = rows(folder)
    assert all(row["status"] in ("done", "pending") for row in r.values())
    for row in r.values():
        if row["status"] == "pending" and row["attempts"] == "1":
            assert "interrupted" in row["error"]
    done1 = _check_done_runs(folder)
    assert len(done1) >= 2
    parts = {p.name[: -len(".h5.part")] for p in folder.glob("*.h5.part")}

    # 2. resume, then kill -9 the batch process after 2 more runs
    rc, stdout, stderr, alive = _start_and_kill(args + ["--resume"], folder, signal.SIGKILL,
                                                after_done=len(done1) + 2)
    assert rc == -signal.SIGKILL
    assert alive == [], "orphaned workers kept running after the batch process was killed"
    done2 = _check_done_runs(folder)
    assert all(done2[k] == done1[k] for k in done1)   # finished runs were not touched
    parts |= {p.name[: -len(".h5.part")] for p in folder.glob("*.h5.part")}

    # 3. resume to the end
    res = run_batch(load_batch(cfg), out=out, executor=pool, resume=True, log=quiet)
    assert res.done == 10 and res.skipped >= len(done2) and not res.failures
    assert not list(folder.glob("*.part"))
    done3 = _check_done_runs(folder)
    assert all(done3[k] == done2[k] for k in done2)
    # runs continued from a .part equal uninterrupted ones
    specs = {s.run_id: s for s in expand_batch(load_batch(cfg))}
    check = sorted(parts)[:2] or [k for k in done3 if k not in done2][:1]
    for run_id in check:
        ref = run_to_file(specs[run_id].resolve(), path=tmp_path / f"ref_{run_id}.h5", log=quiet)
        assert_same_run(ref.path, folder / f"{run_id}.h5")


def test_batch_manifest_is_atomic_and_typed(tmp_path):
    batch = batch_from_dict(batch_data(population=POP4))
    specs = expand_batch(batch)
    m = Manifest.from_specs(tmp_path, specs, batch.varied)
    m.update(1, status="failed", error="line one\nline two, with comma", attempts=1)
    m.save()
    assert not list(tmp_path.glob(".*.tmp"))
    back = Manifest.load(tmp_path)
    assert back.rows[1]["error"] == "line one line two, with comma"
    assert back.rows[1]["attempts"] == 1 and back.rows[3]["seed"] == specs[3].seed
    assert back.params == batch.varied
    assert back.counts() == {"pending": 3, "running": 0, "done": 0, "failed": 1}
