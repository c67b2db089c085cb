"""The Python API: abm.simulate and abm.run_batch on tiny runs (24 x 24 lattice, half a day)."""

from __future__ import annotations

import gc
import subprocess
import sys
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

import abm
from abm.api import nested_overrides, resolve_config
from abm.config import load_config
from abm.errors import AbmError, ConfigError
from abm.io.schema import SCHEMA_VERSION
from analysis.io import open_group

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "configs" / "default.toml"

#: a tiny run as overrides on top of configs/default.toml
TINY = {"run": {"start_day": 0.0, "end_day": 0.5, "snapshot_every_h": 3.0,
                "checkpoint_every_h": 3.0},
        "lattice": {"shape": [24, 24]},
        "tumour": {"initial_cells": 50}}


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> tuple[Path, xr.DataTree]:
    out = tmp_path_factory.mktemp("api") / "tiny.h5"
    return out, abm.simulate(DEFAULT, seed=11, out=out, **TINY, **{"product.preset": "4-1bb"})


def file_datasets(path, group) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as h5:
        for name, obj in h5[group].items():
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
    return out


def test_overrides_as_dotted_keys_and_nested_dicts():
    got = nested_overrides({"product.preset": "4-1bb", "run": {"seed": 3}, "run.name": "x"},
                           days=2)
    assert got == {"product": {"preset": "4-1bb"}, "run": {"seed": 3, "name": "x", "end_day": 2.0}}
    cfg = resolve_config(DEFAULT, got)
    assert (cfg.product.preset, cfg.run.seed, cfg.run.end_day) == ("4-1bb", 3, 2.0)
    # a Config and a parsed TOML dict take the same overrides
    base = load_config(DEFAULT)
    assert resolve_config(base, got) == cfg
    assert resolve_config(tomllib.loads(DEFAULT.read_text()), got) == cfg
    assert resolve_config(base) is base


@pytest.mark.parametrize("bad,fragment", [
    ({"product.nope": 1}, "product.nope"),
    ({"product..preset": 1}, "not a dotted config path"),
])
def test_bad_overrides_are_one_line_config_errors(bad, fragment):
    with pytest.raises(ConfigError) as info:
        abm.simulate(DEFAULT, **bad)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_bad_config_type_is_a_config_error():
    with pytest.raises(ConfigError, match="expected a config"):
        abm.simulate(42)


def test_simulate_returns_the_file_groups(tiny_file):
    path, tree = tiny_file
    assert path.exists() and tree.attrs["path"] == str(path)
    assert set(tree.children) == {"timeseries", "endpoints", "events", "fields", "cells"}
    assert tree.attrs["schema_version"] == SCHEMA_VERSION and tree.attrs["seed"] == 11
    assert tree["timeseries"].time[-1] == pytest.approx(0.5)
    assert "snapshot_time" in tree["fields"].indexes
    for group in tree.children:   # each child is what analysis.io.open_group reads
        assert tree[group].to_dataset().identical(open_group(path, group, load=True)), group
    # every dataset of every group equals the file's, value for value
    for group in tree.children:
        ds = tree[group].to_dataset()
        for name, values in file_datasets(path, group).items():
            if name not in ds.variables:   # dimension scales without a coordinate
                continue
            got = ds[name].values
            if values.dtype.kind in "SO":
                assert [v.decode() if isinstance(v, bytes) else v for v in values.ravel()] \
                    == [str(v) for v in got.ravel()], f"{group}/{name}"
            else:
                np.testing.assert_array_equal(got, values, err_msg=f"{group}/{name}")


def test_overrides_and_seed_reach_the_file(tiny_file):
    path, tree = tiny_file
    prov = abm.api.read_run_tree(path).attrs
    import json
    config = json.loads(prov["config_json"])
    assert config["product"]["preset"] == "4-1bb"
    assert config["lattice"]["shape"] == [24, 24]
    assert config["run"]["end_day"] == 0.5
    assert prov["seed"] == 11


def test_same_seed_same_run_other_seed_other_run(tiny_file, tmp_path):
    path, tree = tiny_file
    again = abm.simulate(str(DEFAULT), 11, out=tmp_path, days=0.5,
                         **{k: v for k, v in TINY.items() if k != "run"},
                         run={k: v for k, v in TINY["run"].items() if k != "end_day"},
                         product={"preset": "4-1bb"})
    assert Path(again.attrs["path"]) == tmp_path / "default" / "default_seed11.h5"
    for group in ("timeseries", "endpoints", "cells"):
        assert again[group].to_dataset().equals(tree[group].to_dataset()), group
    other = abm.simulate(DEFAULT, 12, **TINY, **{"product.preset": "4-1bb"})
    assert not other["cells"].to_dataset().equals(tree["cells"].to_dataset())


def test_default_output_is_a_temporary_folder_kept_with_the_tree():
    tree = abm.simulate(DEFAULT, 5, **TINY)
    path = Path(tree.attrs["path"])
    assert path.exists() and path.parent.parent.name.startswith("abm-run-")
    timeseries = tree["timeseries"].to_dataset()
    del tree
    gc.collect()
    assert not path.parent.parent.exists()
    assert timeseries.n_tumour.size > 0           # the data were read into memory


def test_run_batch_returns_the_batch_dataset(tmp_path):
    data = {**TINY, "batch": {"name": "tinyapi", "root_seed": 3,
                              "population": {"size": 4, "product.preset":
                                             {"dist": "choice", "values": ["cd28", "4-1bb"]}}}}
    ds = abm.run_batch(data, out=tmp_path, workers=0, **{"batch.population.size": 2})
    assert ds.attrs["n_loaded"] == 2 and ds.sizes["run"] == 2
    assert Path(ds.attrs["folder"]) == tmp_path / "tinyapi"
    assert set(ds.product.values) <= {"cd28", "4-1bb"}
    assert "crs_grade" in ds and ds.abm.risk(by="product") is not None
    with pytest.raises(AbmError, match="already holds a batch"):
        abm.run_batch(data, out=tmp_path, workers=0, **{"batch.population.size": 2})
    again = abm.run_batch(data, out=tmp_path, workers=0, resume=True,
                          **{"batch.population.size": 2})
    assert again.attrs["n_loaded"] == 2


def test_import_abm_stays_light():
    code = ("import sys, abm; print(abm.__version__); "
            "print(any(m in sys.modules for m in ('xarray', 'numba', 'analysis', 'abm.api')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.split()
    assert out == [abm.version.__version__, "False"]


def test_a_config_object_takes_another_preset_and_keeps_its_own_changes():
    base = load_config(DEFAULT, {"product": {"division_time_h": 12.5}})
    cfg = resolve_config(base, {"product": {"preset": "4-1bb"}})
    fresh = load_config(DEFAULT, {"product": {"preset": "4-1bb", "division_time_h": 12.5}})
    assert cfg == fresh
