"""Batches over posterior draws (``[batch.posterior]``): parsing and one-line errors,
expansion (draws x population, seeds, the draw index), batch.toml, and one tiny real batch
through ``abm batch`` and ``abm analyze``.

The calibration file is a fixture written with xarray in the layout ``abm calibrate``
writes: ``samples(draw, parameter)``, float64, ``parameter`` = dotted config paths.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from abm.batch import batch_from_dict, expand_batch, load_batch, run_seed
from abm.batch.manifest import Manifest
from abm.batch.posterior import select_rows
from abm.batch.tomlio import batch_toml
from abm.errors import ConfigError

TINY_RUN = {
    "run": {"start_day": 0.0, "end_day": 0.5, "snapshot_every_h": 3.0,
            "checkpoint_every_h": 3.0},
    "lattice": {"shape": [24, 24]},
    "tumour": {"initial_cells": 50},
}
PARAMS = ["kinetics.lymphoid_death_per_day", "kinetics.blood_death_per_day",
          "product.max_divisions"]
SAMPLES = np.array([[0.10, 0.5, 6.0],
                    [0.20, 0.6, 7.0],
                    [0.30, 0.7, 8.0],
                    [0.40, 0.8, 9.0],
                    [0.50, 0.9, 10.0]])


def write_calibration(path: Path, samples=SAMPLES, params=PARAMS, **extra) -> Path:
    """A calibration file as abm calibrate writes it (plus ``extra`` variables)."""
    ds = xr.Dataset({"samples": (("draw", "parameter"), np.asarray(samples, float)), **extra},
                    coords={"parameter": list(params)})
    ds.to_netcdf(path, engine="h5netcdf")
    return path


@pytest.fixture
def cal(tmp_path) -> Path:
    return write_calibration(tmp_path / "calibration.nc")


def data(posterior: dict, **batch) -> dict:
    d = copy.deepcopy(TINY_RUN)
    d["batch"] = {"name": "p", "root_seed": 123, "posterior": posterior, **batch}
    return d


def load(tmp_path, posterior: dict, **batch):
    return batch_from_dict(data(posterior, **batch), file=str(tmp_path / "b.toml"),
                           root=tmp_path)


# -- parsing -------------------------------------------------------------------------

def test_posterior_draws_in_file_order(tmp_path, cal):
    b = load(tmp_path, {"file": "calibration.nc", "draws": 3})
    p = b.posterior
    assert p.parameters == tuple(PARAMS) and p.rows == (0, 1, 2) and p.select == "first"
    assert p.values[1] == (0.2, 0.6, 7) and isinstance(p.values[1][2], int)
    assert b.n_draws == 3 and b.n_runs == 3 and b.varied == PARAMS
    assert "3 posterior draws" in b.summary()
    assert load(tmp_path, {"file": "calibration.nc"}).n_draws == 5     # default: every row


def test_random_choice_is_seeded_nested_and_follows_the_root_seed(tmp_path, cal):
    b3 = load(tmp_path, {"file": "calibration.nc", "draws": 3, "select": "random"})
    again = load(tmp_path, {"file": "calibration.nc", "draws": 3, "select": "random"})
    b2 = load(tmp_path, {"file": "calibration.nc", "draws": 2, "select": "random"})
    assert b3.posterior.rows == again.posterior.rows
    assert len(set(b3.posterior.rows)) == 3 and b2.posterior.rows == b3.posterior.rows[:2]
    assert [b3.posterior.values[d] for d in range(3)] == \
        [tuple(SAMPLES[r][:2]) + (int(SAMPLES[r][2]),) for r in b3.posterior.rows]
    other = {select_rows(5, 3, "random", s) for s in range(20)}
    assert len(other) > 1                          # the choice depends on the root seed
    moved = b3.with_root_seed(7)
    assert moved.posterior.rows == select_rows(5, 3, "random", 7)
    assert moved.posterior.values[0][0] == SAMPLES[moved.posterior.rows[0]][0]


def _err(tmp_path, posterior, **batch) -> str:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, posterior, **batch)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "b.toml"))
    return msg


def test_posterior_errors_are_one_line(tmp_path, cal):
    assert "no such file" in _err(tmp_path, {"file": "missing.nc"})
    (tmp_path / "junk.nc").write_text("not netcdf")
    assert "cannot be read as a netCDF file" in _err(tmp_path, {"file": "junk.nc"})
    xr.Dataset({"other": ("x", [1.0])}).to_netcdf(tmp_path / "novar.nc", engine="h5netcdf")
    assert "has no variable 'samples'" in _err(tmp_path, {"file": "novar.nc"})
    xr.Dataset({"samples": (("draw", "p"), np.ones((2, 1)))}).to_netcdf(
        tmp_path / "dims.nc", engine="h5netcdf")
    assert "expected (draw, parameter)" in _err(tmp_path, {"file": "dims.nc"})
    write_calibration(tmp_path / "empty.nc", np.zeros((0, 1)), PARAMS[:1])
    assert "no draws" in _err(tmp_path, {"file": "empty.nc"})
    # parameter paths: not a path (with a hint), batch-owned, not a number
    write_calibration(tmp_path / "typo.nc", SAMPLES[:, :1], ["kinetics.lymphoid_deth_per_day"])
    msg = _err(tmp_path, {"file": "typo.nc"})
    assert "parameter 'kinetics.lymphoid_deth_per_day' is not a parameter path" in msg
    assert "did you mean 'kinetics.lymphoid_death_per_day'?" in msg
    write_calibration(tmp_path / "seed.nc", SAMPLES[:, :1], ["run.seed"])
    assert "cannot be varied" in _err(tmp_path, {"file": "seed.nc"})
    write_calibration(tmp_path / "str.nc", SAMPLES[:, :1], ["product.preset"])
    assert "is a str parameter" in _err(tmp_path, {"file": "str.nc"})
    # values: out of range (names the row and draw), not whole, not finite
    bad = SAMPLES.copy()
    bad[3, 0] = -1.0
    write_calibration(tmp_path / "range.nc", bad)
    msg = _err(tmp_path, {"file": "range.nc", "draws": 4})
    assert "row 3 (draw 3): kinetics.lymphoid_death_per_day = -1.0 is not allowed" in msg
    assert load(tmp_path, {"file": "range.nc", "draws": 3}).n_draws == 3   # row 3 unused
    bad = SAMPLES.copy()
    bad[0, 2] = 6.5
    write_calibration(tmp_path / "whole.nc", bad)
    assert "product.max_divisions = 6.5 must be a whole number" in _err(
        tmp_path, {"file": "whole.nc"})
    bad[0, 2], bad[1, 1] = 6.0, np.nan
    write_calibration(tmp_path / "nan.nc", bad)
    assert "row 1 (draw 1): kinetics.blood_death_per_day = nan is not a finite number" in _err(
        tmp_path, {"file": "nan.nc"})
    # the table's own keys
    assert "batch.posterior.draws = 6 is more than the 5 draws" in _err(
        tmp_path, {"file": "calibration.nc", "draws": 6})
    assert "batch.posterior.draws must be an integer >= 1" in _err(
        tmp_path, {"file": "calibration.nc", "draws": 0})
    assert "batch.posterior.select must be one of 'first', 'random'" in _err(
        tmp_path, {"file": "calibration.nc", "select": "best"})
    assert "batch.posterior.file is required" in _err(tmp_path, {"draws": 2})
    assert "did you mean 'draws'" in _err(tmp_path, {"file": "calibration.nc", "drawz": 2})
    # one parameter in one place only
    msg = _err(tmp_path, {"file": "calibration.nc"},
               population={"size": 2, "kinetics.blood_death_per_day":
                           {"dist": "uniform", "low": 0.5, "high": 0.9}})
    assert "sets kinetics.blood_death_per_day, which is also a covariate" in msg
    msg = _err(tmp_path, {"file": "calibration.nc"},
               sweep={"method": "grid", "product.max_divisions": [5, 6]})
    assert "which is also swept in [batch.sweep]" in msg
    assert "(sweep points x posterior draws x virtual patients x replicates)" in _err(
        tmp_path, {"file": "calibration.nc"}, replicates=5000)


def test_inline_samples_and_their_errors(tmp_path):
    post = {"samples": {"kinetics.lymphoid_death_per_day": [0.1, 0.2],
                        "product.max_divisions": [6, 7]}, "rows": [4, 2]}
    b = load(tmp_path, post)
    assert b.posterior.rows == (4, 2) and b.posterior.values == ((0.1, 6), (0.2, 7))
    assert b.posterior.file is None
    bad = copy.deepcopy(post)
    bad["samples"]["product.max_divisions"] = [6]
    assert "has 1 values but" in _err(tmp_path, bad)
    bad = copy.deepcopy(post)
    bad["samples"]["kinetics.lymphoid_death_per_day"][1] = -3.0
    assert 'batch.posterior.samples."kinetics.lymphoid_death_per_day"[1]: ' in _err(tmp_path, bad)
    bad = copy.deepcopy(post)
    bad["rows"] = [1, 1]
    assert "lists a row twice" in _err(tmp_path, bad)
    bad = copy.deepcopy(post)
    bad["draws"] = 3
    assert "batch.posterior.draws = 3 but batch.posterior.samples holds 2 draws" in _err(
        tmp_path, bad)


# -- expansion -------------------------------------------------------------------------

def test_expansion_crosses_draws_with_the_population(tmp_path, cal):
    pop = {"size": 3, "patient.weight_kg": {"dist": "uniform", "low": 50, "high": 100}}
    sweep = {"method": "list", "patient.tumour_burden_cells": [1e9, 1e10]}
    b = load(tmp_path, {"file": "calibration.nc", "draws": 2}, population=pop, sweep=sweep,
             replicates=2)
    specs = expand_batch(b)
    assert b.n_runs == len(specs) == 2 * 2 * 3 * 2
    assert b.summary().endswith("(2 list sweep points x 2 posterior draws x 3 virtual patients "
                                "x 2 replicates)")
    for s in specs:
        # index = ((replicate * points + point) * draws + draw) * members + member
        assert s.index == ((s.replicate * 2 + s.sweep_point) * 2 + s.draw) * 3 + s.member
        assert s.seed == run_seed(123, s.index) and s.error is None
        assert s.params["kinetics.lymphoid_death_per_day"] == SAMPLES[s.draw][0]
        assert s.config["product"]["max_divisions"] == int(SAMPLES[s.draw][2])
    # the same virtual patients in every draw (covariates depend on the member only)
    weights = {(s.member, s.draw): s.params["patient.weight_kg"] for s in specs}
    assert all(weights[(m, 0)] == weights[(m, 1)] for m in range(3))
    assert len({weights[(m, 0)] for m in range(3)}) == 3
    # deterministic, and one run alone equals its twin
    again = expand_batch(load(tmp_path, {"file": "calibration.nc", "draws": 2}, population=pop,
                              sweep=sweep, replicates=2), [17])[0]
    assert (again.seed, again.config_hash, again.draw) == \
        (specs[17].seed, specs[17].config_hash, specs[17].draw)
    # common seeds: the draws (and sweep points) of one patient share the seed
    paired = expand_batch(load(tmp_path, {"file": "calibration.nc", "draws": 2}, population=pop,
                               sweep=sweep, replicates=2, common_seeds=True))
    for s in paired:
        assert s.seed == run_seed(123, s.replicate * 3 + s.member)


def test_batches_without_posterior_keep_their_layout(tmp_path):
    d = copy.deepcopy(TINY_RUN)
    d["batch"] = {"name": "q", "root_seed": 5, "population": {"size": 2}, "replicates": 2}
    b = batch_from_dict(d)
    specs = expand_batch(b)
    assert [s.draw for s in specs] == [None] * 4 and b.n_draws == 1
    m = Manifest.from_specs(tmp_path, specs, b.varied)
    assert "draw" not in m.text().splitlines()[0].split(",")


def test_manifest_records_the_draw(tmp_path, cal):
    b = load(tmp_path, {"file": "calibration.nc", "draws": 2}, population={"size": 2})
    specs = expand_batch(b)
    m = Manifest.from_specs(tmp_path, specs, b.varied)
    m.save()
    header = m.text().splitlines()[0].split(",")
    assert header[:5] == ["run_id", "index", "sweep_point", "member", "draw"]
    assert header[-3:] == PARAMS
    back = Manifest.load(tmp_path)
    assert back.draws and back.params == PARAMS
    assert [back.rows[i]["draw"] for i in range(4)] == [0, 0, 1, 1]
    assert back.text() == m.text()


def test_batch_toml_holds_the_draws_and_needs_no_file(tmp_path, cal):
    b = load(tmp_path, {"file": "calibration.nc", "draws": 3, "select": "random"},
             population={"size": 2})
    specs = expand_batch(b)
    text = batch_toml(b)
    assert "[batch.posterior.samples]" in text and f"rows = {list(b.posterior.rows)}" in text
    saved = tmp_path / "saved" / "batch.toml"
    saved.parent.mkdir()
    saved.write_text(text)
    cal.unlink()                                   # the saved batch does not read it again
    back = load_batch(saved)
    assert back.posterior.rows == b.posterior.rows and back.posterior.select == "random"
    assert back.posterior.file == str(cal.resolve())
    assert [(s.seed, s.config_hash, s.draw) for s in expand_batch(back)] == \
        [(s.seed, s.config_hash, s.draw) for s in specs]
    assert back.with_root_seed(99).posterior.rows == b.posterior.rows   # fixed once saved


# -- a tiny real batch through the CLI ------------------------------------------------------

def test_abm_batch_and_analyze_over_posterior_draws(tmp_path, capsys):
    """2 draws x 2 patients, 24^2 lattice, 2 days: abm batch, then abm analyze."""
    from abm.cli import main
    write_calibration(tmp_path / "calibration.nc",
                      np.array([[0.05, 0.5, 8.0], [0.6, 3.0, 4.0], [0.3, 1.0, 6.0]]))
    (tmp_path / "post.toml").write_text("""\
[batch]
name = "post"
root_seed = 11

[batch.population]
size = 2
"patient.tumour_burden_cells" = {dist = "loguniform", low = 1e9, high = 1e11}

[batch.posterior]
file = "calibration.nc"
draws = 2

[run]
start_day = 0.0
end_day = 2.0
snapshot_every_h = 24.0
checkpoint_every_h = 24.0

[lattice]
shape = [24, 24]

[tumour]
initial_cells = 50
""")
    out = tmp_path / "runs"
    assert main(["batch", str(tmp_path / "post.toml"), "--out", str(out), "--workers", "0",
                 "-q"]) == 0
    folder = out / "post"
    with open(folder / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["member"], r["draw"], r["status"]) for r in rows] == \
        [("0", "0", "done"), ("1", "0", "done"), ("0", "1", "done"), ("1", "1", "done")]
    assert [float(r["kinetics.lymphoid_death_per_day"]) for r in rows] == [0.05, 0.05, 0.6, 0.6]
    # dry run lists the draw
    capsys.readouterr()
    assert main(["batch", str(tmp_path / "post.toml"), "--dry-run", "-q"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t")[:4] == ["run_id", "seed", "replicate", "draw"]
    assert [ln.split("\t")[3] for ln in lines[1:]] == ["0", "0", "1", "1"]
    # the analysis groups by draw
    assert main(["analyze", str(folder), "-q"]) == 0
    rep = folder / "report"
    md = (rep / "report.md").read_text()
    assert "### With parameter uncertainty (2 posterior draws)" in md
    assert "2 posterior draws (first of calibration.nc)" in md
    assert "](risk_over_draws.png)" in md and (rep / "risk_over_draws.png").is_file()
    import pandas as pd
    pr = pd.read_csv(rep / "posterior_risk.csv")
    assert list(pr["outcome"])[4:] == ["ORR (best response CR or PR)", "CR (best response)"]
    assert (pr["n"] == 4).all() and (pr["n_draws"] == 2).all()
    per = pd.read_csv(rep / "posterior_draws.csv")
    assert len(per) == 6 * 2 and set(per["n"]) == {2}
    from analysis import open_batch
    ds = open_batch(folder)
    assert list(ds["draw"].values) == [0, 0, 1, 1]
    post = ds.abm.posterior_risk()
    assert post.sizes == {"group": 1, "outcome": 6, "draw": 2}
