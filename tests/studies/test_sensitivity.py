"""``abm sensitivity``: the analysis path on known functions, the study file, tiny real studies.

The analysis tests use a plain Python function as the evaluator (the same
design and SALib path as the simulator's). The real studies are tiny (24 x 24
lattice, 3 days, 2 Morris trajectories): one patient-level study through the
CLI on the local pool (and ``--resume``), one population study on a Dask
LocalCluster.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from abm.batch.expand import expand_batch
from abm.cli import main as cli_main
from abm.errors import ConfigError
from abm.studies.design import Range
from abm.studies.sensitivity import (ALIASES, ENDPOINTS, Study, analyse_function,
                                    load_sensitivity, parse_output, run_sensitivity)

# -- the analysis path on known functions -----------------------------------------


def ishigami(x, a=7.0, b=0.1):
    return np.sin(x[:, 0]) + a * np.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * np.sin(x[:, 0])


#: Analytic indices of the Ishigami function with a = 7, b = 0.1.
ISHIGAMI_S1 = (0.3139, 0.4424, 0.0)
ISHIGAMI_ST = (0.5576, 0.4424, 0.2437)
#: With N = 4096 base samples (20480 evaluations) the estimates lie within
#: 0.005 of the analytic values for this seed; the bootstrap half-widths are
#: ~0.03, so 0.015 leaves room for another SALib version's sequence.
ISHIGAMI_TOL = 0.015


def test_sobol_indices_of_ishigami_match_the_analytic_values():
    ranges = tuple(Range(f"x{i}", -math.pi, math.pi) for i in (1, 2, 3))
    study = Study("sobol", ranges, ("y",), seed=7, samples=4096, bootstrap=200)
    ds = analyse_function(study, ishigami)
    assert ds.sizes["point"] == 4096 * 5
    s1, st = ds["S1"].values[0], ds["ST"].values[0]
    assert np.abs(s1 - ISHIGAMI_S1).max() < ISHIGAMI_TOL, s1
    assert np.abs(st - ISHIGAMI_ST).max() < ISHIGAMI_TOL, st
    # the analytic values lie inside the bootstrap intervals
    assert np.all(ds["S1_low"].values[0] <= ISHIGAMI_S1) and \
        np.all(ISHIGAMI_S1 <= ds["S1_high"].values[0])
    assert np.all(ds["ST_low"].values[0] <= ISHIGAMI_ST) and \
        np.all(ISHIGAMI_ST <= ds["ST_high"].values[0])
    assert list(ds["rank"].values[0]) == [1, 2, 3]
    # same seed, same design and indices
    again = analyse_function(study, ishigami)
    assert np.array_equal(again["design"].values, ds["design"].values)
    assert np.array_equal(again["S1"].values, ds["S1"].values)


def test_sobol_second_order_of_ishigami():
    """The only interaction of Ishigami is x1-x3: S13 = ST3 = 0.2437, S12 = S23 = 0."""
    ranges = tuple(Range(f"x{i}", -math.pi, math.pi) for i in (1, 2, 3))
    study = Study("sobol", ranges, ("y",), seed=7, samples=4096, second_order=True,
                  bootstrap=100)
    ds = analyse_function(study, ishigami)
    assert ds.sizes["point"] == 4096 * 8
    s2 = ds["S2"].values[0]
    assert s2[0, 2] == pytest.approx(0.2437, abs=0.03)
    assert abs(s2[0, 1]) < 0.03 and abs(s2[1, 2]) < 0.03


def test_sobol_figures_and_summary(tmp_path):
    from abm.studies.sensitivity_report import write_figures, write_summary
    ranges = tuple(Range(f"x{i}", -math.pi, math.pi) for i in (1, 2, 3))
    ds = analyse_function(Study("sobol", ranges, ("y", "y2"), seed=1, samples=256,
                                bootstrap=50),
                          lambda x: np.column_stack([ishigami(x), x[:, 0]]))
    figs = write_figures(ds, tmp_path)
    assert [f.name for f in figs] == ["sobol_y.png", "sobol_y2.png"]
    text = write_summary(ds, tmp_path / "summary.md", figures=figs).read_text()
    assert "| rank | parameter | ST | interval | S1 | interval |" in text
    assert "| 1 | `x1` |" in text.split("## Output `y2`")[1]
    assert "![y2](sobol_y2.png)" in text


def test_morris_ranks_inert_inputs_last():
    def f(x):   # x5 and x6 unused
        return 3 * x[:, 0] + 2 * x[:, 1] ** 2 + x[:, 2] * x[:, 3]

    ranges = tuple(Range(f"x{i}", 0.0, 1.0) for i in range(1, 7))
    study = Study("morris", ranges, ("y",), seed=3, trajectories=10, levels=4)
    ds = analyse_function(study, f)
    assert ds.sizes["point"] == 10 * 7
    mu_star, rank = ds["mu_star"].values[0], ds["rank"].values[0]
    assert np.all(mu_star[4:] < 1e-12) and np.all(ds["sigma"].values[0][4:] < 1e-12)
    assert np.all(mu_star[:4] > 0.1)
    assert sorted(rank[4:]) == [5, 6]
    assert rank[0] == 1                      # the largest effect: 3 per whole range
    assert mu_star[0] == pytest.approx(3.0)  # linear: every elementary effect is 3
    assert np.all(ds["mu_star_low"].values <= mu_star) and \
        np.all(mu_star <= ds["mu_star_high"].values)


def test_morris_log_ranges_and_integer_parameters():
    ranges = (Range("a", 1.0, 100.0, "log"), Range("n", 1, 10, integer=True))
    study = Study("morris", ranges, ("y", "z"), seed=1, trajectories=4)
    vals = study.values(study.unit_sample())
    assert set(np.round(np.log10(vals[:, 0]), 9)) <= {0.0, round(2 / 3, 9), round(4 / 3, 9), 2.0}
    assert np.all(vals[:, 1] == np.round(vals[:, 1]))
    ds = analyse_function(study, lambda x: np.column_stack([np.log10(x[:, 0]), x[:, 1]]))
    # per whole range on the log scale: log10(a) moves by 2 over the range
    assert ds["mu_star"].sel(output="y", parameter="a") == pytest.approx(2.0)
    assert ds["mu_star"].sel(output="y", parameter="n") == pytest.approx(0.0)


def test_morris_leaves_out_a_trajectory_with_a_missing_point():
    ranges = tuple(Range(f"x{i}", 0.0, 1.0) for i in range(3))
    study = Study("morris", ranges, ("y",), seed=2, trajectories=5)
    u = study.unit_sample()
    y = u.sum(axis=1, keepdims=True)
    y[6, 0] = np.nan                     # trajectory 1 (points 4..7)
    notes = []
    ds = study.analyse(u, y, notes=notes)
    assert int(ds["trajectories_used"].values[0]) == 4
    assert "trajectories 1" in notes[0]
    assert ds["mu_star"].values[0] == pytest.approx([1.0, 1.0, 1.0])


def test_output_expressions():
    risk = parse_output("crs3", "crs_max_grade >= 3", key="k")
    assert (risk.reduce, risk.endpoint, risk.op, risk.threshold) == \
        ("share", "crs_max_grade", ">=", 3.0)
    assert risk([0, 3, 4, np.nan]) == pytest.approx(0.5)   # NaN: not meeting the condition
    assert risk([3]) == 1.0 and math.isnan(risk([]))
    mean = parse_output("il6", "mean(il6_peak)", key="k")
    assert mean.endpoint == ALIASES["il6_peak"] and mean([1.0, 3.0, np.nan]) == 2.0
    assert parse_output("c", "gmean(cart_cmax)", key="k")([1.0, 100.0, 0.0]) == \
        pytest.approx(10.0)
    assert parse_output("m", "median(icans_max_grade)", key="k")([0, 1, 4]) == 1.0
    assert parse_output("t", "cart_tmax", key="k").reduce == "mean"
    assert parse_output("o", "response >= 2", key="k").endpoint == "best_response_code"
    for bad, fragment in (("crs_max_grad >= 3", "did you mean 'crs_max_grade'"),
                          ("avg(il6_peak)", "unknown reduction 'avg'"),
                          ("crs_max_grade >= ", "not an output expression"),
                          (3, "must be an expression")):
        with pytest.raises(ConfigError, match=fragment) as exc:
            parse_output("x", bad, key="sensitivity.outputs.x", file="s.toml")
        assert "\n" not in str(exc.value) and str(exc.value).startswith("s.toml: ")


# -- the study file ----------------------------------------------------------------

TINY_BASE = """\
[run]
name = "tiny"
start_day = -1.0
end_day = 2.0
snapshot_every_h = 72.0
checkpoint_every_h = 72.0

[lattice]
shape = [24, 24]

[tumour]
initial_cells = 50
"""

POPULATION_BASE = """\
[batch]
name = "pop"
root_seed = 99
base = "tiny_base.toml"

[batch.population]
size = 5
"patient.weight_kg" = {dist = "uniform", low = 50.0, high = 90.0}
"product.dose_cells" = {dist = "uniform", low = 1e8, high = 2e8}
"""

STUDY = """\
[sensitivity]
name = "tiny_study"
base = "tiny_base.toml"
method = "morris"
seed = 5
trajectories = 2
levels = 4

[sensitivity.parameters]
"product.kill_rate_per_h" = {low = 0.5, high = 3.0, scale = "log"}
"myeloid.il6_secretion_fg_per_h" = [0.25, 1.0]
"tumour.initial_cells" = [30, 80]

[sensitivity.outputs]
crs1 = "crs_max_grade >= 1"
il6 = "mean(il6_peak)"
cmax = "gmean(cart_cmax)"
"""


def write_study(folder: Path, text: str = STUDY, **replace) -> Path:
    (folder / "tiny_base.toml").write_text(TINY_BASE)
    (folder / "pop.toml").write_text(POPULATION_BASE)
    for old, new in replace.items():
        old = old.replace("__", ".")
        assert old in text, old
        text = text.replace(old, new)
    path = folder / "study.toml"
    path.write_text(text)
    return path


def test_study_file_and_patient_design(tmp_path):
    cfg = load_sensitivity(write_study(tmp_path))
    assert (cfg.mode, cfg.population_size, cfg.n_runs) == ("patient", None, 8)
    assert [r.path for r in cfg.study.ranges][0] == "product.kill_rate_per_h"
    assert cfg.study.ranges[2].integer
    specs = expand_batch(cfg.batch())
    assert len(specs) == 8 and all(s.error is None for s in specs)
    assert len({s.seed for s in specs}) == 1           # common seeds: a paired design
    assert all(isinstance(s.params["tumour.initial_cells"], int) for s in specs)
    kill = [s.params["product.kill_rate_per_h"] for s in specs]
    assert min(kill) >= 0.5 - 1e-12 and max(kill) <= 3.0 + 1e-12


def test_population_design_shares_patients_across_points(tmp_path):
    path = write_study(tmp_path, **{'base = "tiny_base.toml"': 'base = "pop.toml"\n'
                                    'population_size = 3',
                                    '"tumour.initial_cells" = [30, 80]':
                                    '"product.dose_cells" = [1e8, 2e8]'})
    cfg = load_sensitivity(path)
    assert (cfg.mode, cfg.population_size, cfg.n_runs) == ("population", 3, 24)
    assert any("product.dose_cells" in n and "replaces the draw" in n for n in cfg.notes)
    specs = expand_batch(cfg.batch())
    assert len(specs) == 24 and all(s.error is None for s in specs)
    by_member: dict = {}
    for s in specs:
        by_member.setdefault(s.member, set()).add((s.seed, s.params["patient.weight_kg"]))
    assert sorted(by_member) == [0, 1, 2]
    assert all(len(v) == 1 for v in by_member.values())   # the same patient at every point
    assert len({next(iter(v)) for v in by_member.values()}) == 3
    doses = {s.sweep_point: s.params["product.dose_cells"] for s in specs}
    assert len(set(doses.values())) > 1                    # the study's value, not the draw


@pytest.mark.parametrize("edit,fragment", [
    ({'"myeloid.il6_secretion_fg_per_h"': '"myeloid.il6_secretion_fg_per_hr"'},
     "sensitivity.parameters.\"myeloid.il6_secretion_fg_per_hr\" is not a parameter path of "
     "the run config; did you mean 'myeloid.il6_secretion_fg_per_h'?"),
    ({"[0.25, 1.0]": "[1.0, 0.25]"}, ".high must be > low = 1.0 (got 0.25)"),
    ({"[0.25, 1.0]": "[-1.0, 0.25]"}, "must be >= 0"),
    ({'"mean(il6_peak)"': '"mean(il6_peek)"'},
     "unknown endpoint 'il6_peek'; did you mean 'il6_peak'?"),
    ({'method = "morris"': 'method = "moris"'}, "did you mean 'morris'?"),
    ({"trajectories = 2": "samples = 64"}, "sensitivity.samples is a Sobol size"),
    ({"levels = 4": "levels = 3"}, "sensitivity.levels must be even"),
    ({'base = "tiny_base.toml"': 'base = "tiny_base.toml"\nmode = "population"'},
     "needs a base batch file with a [batch.population]"),
    ({'base = "tiny_base.toml"': 'base = "nothere.toml"'},
     "sensitivity.base names a file that does not exist"),
    ({"seed = 5": "seed = 5\ntrajectorys = 3"}, "did you mean 'trajectories'?"),
])
def test_config_errors_are_one_line(tmp_path, edit, fragment):
    path = write_study(tmp_path, **edit)
    with pytest.raises(ConfigError) as exc:
        load_sensitivity(path)
    msg = str(exc.value)
    assert fragment in msg and "\n" not in msg and msg.startswith(str(path)), msg


def test_shipped_study_validates():
    root = Path(__file__).resolve().parents[2]
    cfg = load_sensitivity(root / "configs" / "sensitivity_risk.toml")
    assert (cfg.study.method, cfg.mode, cfg.study.k) == ("morris", "population", 15)
    assert cfg.n_runs == 512 and cfg.study.n_points == 64     # the size its comment states
    assert [o.name for o in cfg.outputs][:2] == ["crs3", "icans3"]
    batch = cfg.batch()
    n = batch.n_runs
    specs = expand_batch(batch, indices=[0, 1, n // 2, n - 1])
    assert all(s.error is None for s in specs), [s.error for s in specs]


def test_sobol_study_design(tmp_path):
    path = write_study(tmp_path, **{'method = "morris"': 'method = "sobol"',
                                    "trajectories = 2\nlevels = 4": "samples = 4"})
    cfg = load_sensitivity(path)
    assert cfg.study.n_points == 4 * (3 + 2) and cfg.n_runs == 20
    u = cfg.study.unit_sample()
    assert u.shape == (20, 3) and np.all((u >= 0) & (u <= 1))
    specs = expand_batch(cfg.batch(u))
    assert [s.sweep_point for s in specs] == list(range(20))
    kill = np.array([s.params["product.kill_rate_per_h"] for s in specs])
    assert np.allclose(np.log(kill / 0.5) / np.log(3.0 / 0.5), u[:, 0])
    second = load_sensitivity(write_study(tmp_path, **{
        'method = "morris"': 'method = "sobol"',
        "trajectories = 2\nlevels = 4": "samples = 4\nsecond_order = true"}))
    assert second.study.n_points == 4 * (2 * 3 + 2)


def test_sobol_sample_size_must_be_a_power_of_two(tmp_path):
    path = write_study(tmp_path, **{'method = "morris"': 'method = "sobol"',
                                    "trajectories = 2\nlevels = 4": "samples = 48"})
    with pytest.raises(ConfigError, match="must be a power of 2"):
        load_sensitivity(path)


def test_cli_config_error_is_one_line_and_exit_2(tmp_path, capsys):
    path = write_study(tmp_path, **{'method = "morris"': 'method = "anova"'})
    assert cli_main(["sensitivity", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sensitivity.method must be one of" in err


def test_cli_dry_run_lists_the_design(tmp_path, capsys):
    path = write_study(tmp_path)
    assert cli_main(["sensitivity", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "8 design points" in out and "= 8 runs" in out
    assert "output crs1 = 'crs_max_grade >= 1'" in out


# -- tiny real studies -------------------------------------------------------------------


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """Compile (or load) every kernel in this process before worker processes start."""
    from abm.config import config_from_dict
    from abm.io.run import run_to_file
    import tomllib
    cfg = config_from_dict(tomllib.loads(TINY_BASE))
    run_to_file(cfg, path=tmp_path_factory.mktemp("warm") / "w.h5", log=lambda m: None)


def manifest_rows(folder: Path) -> list[dict]:
    with open(folder / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_tiny_patient_study_on_the_local_pool_and_resume(tmp_path, warm, capsys):
    path = write_study(tmp_path)
    out = tmp_path / "out"
    assert cli_main(["sensitivity", str(path), "--out", str(out), "--workers", "2", "-q"]) == 0
    folder = out / "tiny_study"
    ds = xr.load_dataset(folder / "sensitivity.nc", engine="h5netcdf")
    assert ds.attrs["method"] == "morris" and ds.attrs["trajectories"] == 2
    assert ds.attrs["seed"] == 5 and ds.attrs["software_version"]
    assert "[sensitivity.parameters]" in ds.attrs["config_text"]
    assert "git_commit" in ds.attrs and "runs_missing" in ds.attrs
    assert ds.sizes == {"point": 8, "parameter": 3, "output": 3, "run": 8}
    assert list(ds["output"].values) == ["crs1", "il6", "cmax"]
    for v in ("mu", "mu_star", "sigma", "mu_star_conf", "mu_star_low", "mu_star_high",
              "design", "value", "runs_done", "rank"):
        assert v in ds, v
    assert np.all(ds["runs_done"].values == 1) and np.isfinite(ds["value"].values).all()
    assert np.isfinite(ds["mu_star"].values).all()
    # the design values are those the runs used
    rows = manifest_rows(folder / "design")
    kill = sorted(float(r["product.kill_rate_per_h"]) for r in rows)
    assert np.allclose(kill, sorted(ds["design"].sel(parameter="product.kill_rate_per_h").values))
    for name in ("morris_crs1.png", "morris_il6.png", "morris_cmax.png", "summary.md"):
        assert (folder / name).stat().st_size > 0
    summary = (folder / "summary.md").read_text()
    assert "| rank | parameter | mu* |" in summary and "product.kill_rate_per_h" in summary
    # the endpoint list is what the simulator writes
    import h5py
    with h5py.File(folder / "design" / f"{rows[0]['run_id']}.h5", "r") as h5:
        written = set(h5["endpoints"])
    assert set(ENDPOINTS) <= written, sorted(set(ENDPOINTS) - written)
    assert set(ALIASES.values()) <= written

    # again without --resume: a one-line error; with --resume: every run re-used
    capsys.readouterr()
    assert cli_main(["sensitivity", str(path), "--out", str(out), "-q"]) == 2
    assert "--resume" in capsys.readouterr().err
    stamps = {p.name: p.stat().st_mtime_ns for p in (folder / "design").glob("*.h5")}
    res = run_sensitivity(load_sensitivity(path), out=out, resume=True, figures=False)
    assert (res.batch.skipped, res.batch.attempted, res.batch.done) == (8, 0, 8)
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "design").glob("*.h5")} == stamps
    again = xr.load_dataset(res.dataset, engine="h5netcdf")
    assert np.array_equal(again["mu_star"].values, ds["mu_star"].values)

    # a run that is lost: its point is reported, not dropped silently
    from abm.studies.sensitivity import analyse_study
    victim = rows[5]
    (folder / "design" / f"{victim['run_id']}.h5").unlink()
    res = analyse_study(load_sensitivity(path), folder, figures=False)
    lost = xr.load_dataset(res.dataset, engine="h5netcdf")
    p = int(victim["sweep_point"])
    assert res.missing_points == [p] and int(lost["runs_done"].values[p]) == 0
    assert victim["run_id"] in lost.attrs["runs_missing"]
    assert np.isnan(lost["value"].values[p]).all()
    assert list(lost["trajectories_used"].values) == [1, 1, 1]
    text = res.summary.read_text()
    assert "design points lack runs" in text and victim["run_id"] in text


def test_tiny_population_study_runs_on_a_dask_local_cluster(tmp_path, warm):
    """Must-show: a study runs on a Dask LocalCluster."""
    from abm.batch.executors import DaskExecutor
    path = write_study(tmp_path, **{'base = "tiny_base.toml"': 'base = "pop.toml"\n'
                                    'population_size = 2',
                                    '"tumour.initial_cells" = [30, 80]\n': ""})
    cfg = load_sensitivity(path)
    assert (cfg.mode, cfg.study.n_points, cfg.n_runs) == ("population", 6, 12)
    with DaskExecutor(local_workers=2) as dask:
        assert len(dask.client.nthreads()) == 2
        res = run_sensitivity(cfg, out=tmp_path / "out", executor=dask)
    assert (res.batch.done, res.batch.failed) == (12, 0)
    ds = xr.load_dataset(res.dataset, engine="h5netcdf")
    assert ds.attrs["mode"] == "population" and ds.attrs["population_size"] == 2
    assert np.all(ds["runs_expected"].values == 2) and np.all(ds["runs_done"].values == 2)
    assert set(np.unique(ds["value"].sel(output="crs1").values)) <= {0.0, 0.5, 1.0}
    assert np.isfinite(ds["mu_star"].values).all()
    rows = manifest_rows(res.folder / "design")
    assert len({r["worker"] for r in rows}) == 2
    # paired: a patient has one seed at every design point
    seeds: dict = {}
    for r in rows:
        seeds.setdefault(r["member"], set()).add(r["seed"])
    assert all(len(s) == 1 for s in seeds.values()) and len(seeds) == 2
    assert len(res.figures) == 3 and all(f.exists() for f in res.figures)
