"""scripts/score_trials.py: the calibration's measure computed from finished trials."""

import importlib.util
import math
from pathlib import Path

import pytest

from abm.studies.calibrate_config import load_calibration

ROOT = Path(__file__).resolve().parents[2]
CAL = str(ROOT / "configs" / "calibration.toml")


def _script():
    spec = importlib.util.spec_from_file_location("score_trials", ROOT / "scripts" / "score_trials.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _runs(n, crs_any, crs_ge3=0):
    """n runs with ``crs_any`` of them at CRS grade 1 or more (``crs_ge3`` at grade 3)."""
    out = []
    for i in range(n):
        grade = 3 if i < crs_ge3 else (1 if i < crs_any else 0)
        out.append({"crs_max_grade": grade, "icans_max_grade": 0, "best_response": "PR",
                    "blood_cart_day7_per_ul": 10.0, "blood_cart_day14_per_ul": 5.0,
                    "blood_cart_day28_per_ul": 2.0, "blood_cart_peak_per_ul": 20.0,
                    "blood_cart_peak_day": 9.5, "blood_cart_day28_over_peak": 0.1,
                    "blood_cart_peak_over_nadir": 50.0})
    return out


def test_implausibility_of_a_rate_is_the_closed_form(monkeypatch):
    mod = _script()
    cfg = load_calibration(ROOT / "configs" / "calibration.toml")
    runs = {"cd28": _runs(100, 93, 13), "4-1bb": _runs(100, 89, 8)}
    monkeypatch.setattr(mod, "arm_endpoints", lambda folder: runs[str(folder)])
    res = mod.score(cfg, {"cd28": "cd28", "4-1bb": "4-1bb"})
    rows = {r["target"]: r for r in res["targets"]}
    # JULIET CRS any: 58 % of 111, discrepancy SD 0.08; 89 of 100 simulated
    m = (100 * 0.89 + 1) / 102
    expected = abs(0.58 - 0.89) / math.sqrt(m * (1 - m) / 100 + 0.58 * 0.42 / 111 + 0.08 ** 2)
    assert rows["4-1bb.crs_any"]["simulated"] == pytest.approx(89.0)
    assert rows["4-1bb.crs_any"]["implausibility"] == pytest.approx(expected)
    # on target: only the simulated and observed variances remain, I = 0
    assert rows["cd28.crs_any"]["implausibility"] == pytest.approx(0.0, abs=1e-12)
    imps = sorted(r["implausibility"] for r in res["targets"])
    assert res["measure"] == pytest.approx(imps[-2])          # second_max
    assert res["passes"] == (res["measure"] <= 3.0)


def test_wrong_number_of_folders_is_a_one_line_error(tmp_path, capsys):
    mod = _script()
    assert mod.main([str(tmp_path), "--config", CAL]) == 2
    err = capsys.readouterr().err
    assert "give one folder for each" in err and "\n" == err[-1] and err.count("\n") == 1


def test_folder_without_runs_is_a_one_line_error(tmp_path, capsys):
    mod = _script()
    assert mod.main([str(tmp_path), str(tmp_path), "--config", CAL]) == 2
    assert "no run files" in capsys.readouterr().err


def test_a_damaged_run_file_is_left_out_with_a_warning(tmp_path, capsys):
    mod = _script()
    (tmp_path / "trial_00000.h5").write_bytes(b"not an HDF5 file")
    with pytest.raises(mod.AbmError, match="no complete run file"):
        mod.arm_endpoints(tmp_path)
    assert "1 of 1 run files left out" in capsys.readouterr().err
