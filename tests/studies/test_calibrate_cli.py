"""``abm calibrate``: config errors, dry run, a tiny real calibration, its dataset and resume.

The real calibration is tiny (24 x 24 lattice, days -1 to 2, one parameter, 4
points x 2 patients, one wave, a 2-draw check): about half a minute in this
process once the Numba cache is warm.
"""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from abm.cli import main as cli_main
from abm.errors import ConfigError
from abm.studies.calibrate_config import load_calibration
from tests.helpers.studies import cd28_arm_batch

ROOT = Path(__file__).resolve().parents[2]

ARM = cd28_arm_batch(2)

CALIBRATION = """\
[calibration]
name = "tiny"
seed = 3
waves = 1
points = 4
samples = 200
candidates = 5000

[calibration.parameters]
"kinetics.lymphoid_to_blood_per_day" = {low = 0.03, high = 0.3, scale = "log"}

[calibration.arms.cd28]
batch = "arm.toml"
patients = 2

[[calibration.targets]]
arm = "cd28"
summary = "crs_any"
discrepancy_sd = 0.1

[[calibration.targets]]
arm = "cd28"
summary = "cart_cmax"
observed = 5.0
sd = 0.2
discrepancy_sd = 0.1

[calibration.check]
draws = 2
patients = 1

[run]
start_day = -1.0
end_day = 2.0
snapshot_every_h = 72.0
checkpoint_every_h = 72.0

[lattice]
shape = [24, 24]

[tumour]
initial_cells = 280
"""


def write(folder: Path, text: str = CALIBRATION, arm: str = ARM) -> Path:
    (folder / "arm.toml").write_text(arm)
    path = folder / "cal.toml"
    path.write_text(text)
    return path


def edit(old: str, new: str, text: str = CALIBRATION) -> str:
    assert old in text
    return text.replace(old, new)


# -- config errors: one line, naming the key --------------------------------------------

BAD = [
    (edit('"kinetics.lymphoid_to_blood_per_day"', '"kinetics.lymphoid_to_blod_per_day"'),
     "did you mean 'kinetics.lymphoid_to_blood_per_day'"),
    (edit("low = 0.03, high = 0.3", "low = 0.3, high = 0.03"), ".high must be > low"),
    (edit("low = 0.03, high = 0.3", "low = -0.1, high = 0.3, scale = \"linear\"").replace(
        ', scale = "log"}', "}"), "lymphoid_to_blood_per_day must be >= 0"),
    (edit('summary = "crs_any"', 'summary = "crs_anyy"'), "did you mean 'crs_any'"),
    (edit('summary = "crs_any"\ndiscrepancy_sd = 0.1', 'summary = "crs_any"'),
     "discrepancy_sd is required"),
    (edit('arm = "cd28"\nsummary = "crs_any"', 'arm = "cd19"\nsummary = "crs_any"'),
     "targets[0].arm must name an arm"),
    (edit("seed = 3\n", ""), "calibration.seed is required"),
    (edit("observed = 5.0\nsd = 0.2\n", "observed = 5.0\n"), "targets[1].sd is required"),
    (edit("observed = 5.0\nsd = 0.2\n", ""), "targets[1].observed is required"),
    (edit('"kinetics.lymphoid_to_blood_per_day"', '"patient.tumour_burden_cells"').replace(
        "low = 0.03, high = 0.3", "low = 1e9, high = 1e11"), "is a covariate of arm cd28"),
    (edit("waves = 1", "wave = 1"), "did you mean 'waves'"),
    (edit("waves = 1", 'waves = 1\nmeasure = "mean"'), "calibration.measure must be one of"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_config_errors_are_one_line_naming_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_calibration(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_cli_config_error_exits_2_with_one_line(tmp_path, capsys):
    path = write(tmp_path, edit("points = 4", "points = 1"))
    assert cli_main(["calibrate", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "calibration.points must be >= 2" in err
    assert not (tmp_path / "out").exists()


def test_missing_arm_file_and_a_sweep_in_the_arm(tmp_path, capsys):
    path = write(tmp_path, edit('batch = "arm.toml"', 'batch = "nothere.toml"'))
    assert cli_main(["calibrate", str(path), "--dry-run"]) == 2
    assert "calibration.arms.cd28.batch names a file that does not exist" in capsys.readouterr().err
    path = write(tmp_path, arm=ARM + '\n[batch.sweep]\nmethod = "list"\n"patient.weight_kg" = [70.0]\n')
    assert cli_main(["calibrate", str(path), "--dry-run"]) == 2
    assert "[batch.sweep]" in capsys.readouterr().err


def test_defaults_from_section_11_and_dry_run(tmp_path, capsys):
    cfg = load_calibration(write(tmp_path))
    crs = cfg.targets[0]
    assert (crs.observed, crs.n) == (0.93, 101)        # ZUMA-1, docs/model.md 11
    assert crs.obs_sd == pytest.approx((0.93 * 0.07 / 101) ** 0.5)
    assert cfg.arms[0].costimulation == "CD28"
    assert cli_main(["calibrate", str(tmp_path / "cal.toml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "8 runs + 2 for the check" in out and "= 10" in out


# -- a tiny real calibration --------------------------------------------------------------


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibrate")
    path = write(folder)
    out = folder / "out"
    rc = cli_main(["calibrate", str(path), "--out", str(out), "--workers", "0", "-q"])
    return path, out, rc


def test_the_dataset(calibrated):
    path, out, rc = calibrated
    assert rc == 0
    folder = out / "tiny"
    with xr.open_dataset(folder / "calibration.nc", engine="h5netcdf") as ds:
        ds.load()
    # the variable the posterior-draws batches read: samples(draw, parameter), float64
    assert ds["samples"].dims == ("draw", "parameter") and ds["samples"].dtype == np.float64
    assert list(ds["parameter"].values) == ["kinetics.lymphoid_to_blood_per_day"]
    s = ds["samples"].values
    assert 0 < len(s) <= 200 and np.all((s >= 0.03) & (s <= 0.3))
    assert ds.sizes["point"] == 4 and ds["design"].shape == (4, 1)
    assert list(ds["target"].values) == ["cd28.crs_any", "cd28.cart_cmax"]
    assert np.isfinite(ds["simulated"].values).all()
    assert (ds["simulated_n"].values == 2).all()
    assert np.isfinite(ds["implausibility"].values).all()
    assert set(np.unique(ds["nroy"].values)) <= {0, 1}
    assert ds["nroy_fraction"].shape == (1,) and 0 < float(ds["nroy_fraction"][0]) <= 1
    lo, hi = float(ds["nroy_min"][0]), float(ds["nroy_max"][0])
    assert lo <= float(ds["nroy_median"][0]) <= hi
    # the best estimate is the draw of smallest emulated implausibility, within the cut-off
    meas = ds["sample_implausibility"].values
    assert meas.shape == (len(s),) and np.all(meas <= 3.0)
    assert float(ds["best_estimate"][0]) == s[np.argmin(meas), 0]
    assert ds["check_simulated"].shape == (2, 2)
    assert set(np.unique(ds["check_covered"].values)) <= {0, 1}
    assert "[calibration]" in ds.attrs["config_toml"] and ds.attrs["software_version"]
    assert "wave1" in ds.attrs["seeds"] and "check" in ds.attrs["seeds"]
    for name in ("summary.md", "figures/nroy_pairs.png", "figures/check.png",
                 "figures/implausibility.png", "calibration.toml", "wave1/design.csv"):
        assert (folder / name).is_file(), name
    assert "Posterior predictive check" in (folder / "summary.md").read_text()


def test_each_wave_is_an_ordinary_batch_with_common_seeds(calibrated):
    _, out, _ = calibrated
    batch = out / "tiny" / "wave1" / "wave1_cd28"
    rows = list(csv.DictReader(open(batch / "manifest.csv")))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"done"}
    design = [float(r["kinetics.lymphoid_to_blood_per_day"])
              for r in csv.DictReader(open(out / "tiny" / "wave1" / "design.csv"))]
    by_point = {}
    for r in rows:
        by_point.setdefault(int(r["sweep_point"]), []).append(r)
        assert float(r["kinetics.lymphoid_to_blood_per_day"]) == design[int(r["sweep_point"])]
    # every point sees the same virtual patients with the same seeds
    seeds = [[r["seed"] for r in sorted(v, key=lambda r: int(r["member"]))]
             for _, v in sorted(by_point.items())]
    assert all(s == seeds[0] for s in seeds) and len(set(seeds[0])) == 2
    assert (batch / "batch.toml").is_file()


def test_resume_reuses_finished_waves_and_refuses_without_it(calibrated, capsys):
    path, out, _ = calibrated
    ds_path = out / "tiny" / "calibration.nc"
    with xr.open_dataset(ds_path, engine="h5netcdf") as ds:
        before = ds["samples"].values.copy()
    capsys.readouterr()
    assert cli_main(["calibrate", str(path), "--out", str(out), "--workers", "0"]) == 2
    assert "already holds a calibration" in capsys.readouterr().err
    assert cli_main(["calibrate", str(path), "--out", str(out), "--workers", "0", "--resume"]) == 0
    assert "0 run in this call" in capsys.readouterr().out
    with xr.open_dataset(ds_path, engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["samples"].values, before)
    # a resume may not change what the finished waves were made of
    changed = path.parent / "changed.toml"
    changed.write_text(edit("low = 0.03", "low = 0.05"))
    assert cli_main(["calibrate", str(changed), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "differs from the calibration" in err and "low" in err


def test_the_check_reuses_its_runs_too(calibrated):
    _, out, _ = calibrated
    rows = list(csv.DictReader(open(out / "tiny" / "check_wave1" / "check_cd28" / "manifest.csv")))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"done"}


def test_run_endpoints_match_the_analysis_accessor(calibrated):
    import math

    import analysis  # noqa: F401 - the ds.abm accessor
    from analysis.io import open_run
    from abm.studies.calibrate_targets import ENDPOINTS, run_endpoints
    _, out, _ = calibrated
    path = sorted((out / "tiny" / "wave1" / "wave1_cd28").glob("*.h5"))[0]
    mine = run_endpoints(path)
    with open_run(path) as ds:
        ep = ds.abm.endpoints()
        theirs = {k: ep[k].values.item() for k in ENDPOINTS}
    for k in ENDPOINTS:
        a, b = mine[k], theirs[k]
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), k


# -- summaries ------------------------------------------------------------------------------

def test_summaries_rates_and_log_medians():
    import math

    from abm.studies.calibrate_targets import SUMMARIES, default_target, summarise
    grades = [0.0, 1.0, 3.0, float("nan"), 2.0]
    p, var, n = summarise(SUMMARIES["crs_any"], grades)
    assert (p, n) == (0.75, 4) and var == pytest.approx(0.75 * 0.25 / 4)
    assert summarise(SUMMARIES["crs_ge3"], grades)[0] == 0.25
    best = ["CR", "PR", "SD", "", "PD"]
    assert summarise(SUMMARIES["orr"], best)[:2] == (0.5, 0.0625)
    assert summarise(SUMMARIES["cr"], best)[0] == 0.25
    value, var, n = summarise(SUMMARIES["cart_day7"], [1.0, 10.0, 100.0, float("nan")])
    assert (value, n) == (1.0, 3) and var > 0          # log10 of the median
    assert summarise(SUMMARIES["cart_day7"], [0.0])[0] == -3.0   # floored at 1e-3 cells/uL
    assert math.isnan(summarise(SUMMARIES["cart_day7"], [float("nan")])[0])
    assert default_target("4-1BB", "orr") == {"observed": 0.52, "n": 93,
                                              "source": "JULIET tisa-cel (4-1BB), n ~ 110"}
    assert default_target("CD28", "cart_day14")["observed"] == 9.1
    assert default_target("CD28", "cart_tmax") is None and default_target(None, "crs_any") is None
    # contraction: Stein 2019's biexponential decline 18.5 days after a day-9.5 peak
    from abm.studies.calibrate_targets import contraction_ratio
    assert contraction_ratio(0.0, 0.16, 0.0079, 0.0032) == pytest.approx(1.0)
    assert default_target("4-1BB", "cart_contraction")["observed"] == pytest.approx(
        0.9921 * math.exp(-0.16 * 18.5) + 0.0079 * math.exp(-0.0032 * 18.5))
    assert summarise(SUMMARIES["cart_contraction"], [0.01, 0.1, 1.0])[0] == pytest.approx(-1.0)


def test_the_shipped_calibration_config_validates(capsys):
    assert cli_main(["calibrate", str(ROOT / "configs" / "calibration.toml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "800 runs + 100 for the check" in out and "16 targets" in out
    assert cli_main(["calibrate", str(ROOT / "configs" / "calibration_41bb.toml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "320 runs + 40 for the check" in out and "9 targets" in out
