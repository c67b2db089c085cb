"""Fast parts of scripts/validate_mechanisms.py (MODEL.md 10.1, 10.7, 10.8 controls) and its paired tests.

The full validation simulates ~170 patients (docs/validation.md); only the checks that call model
functions directly run here (a few seconds).
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "validate_mechanisms.py"


@pytest.fixture(scope="module")
def vm():
    spec = importlib.util.spec_from_file_location("validate_mechanisms", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_check_1_il7_15_closed_form_and_simulated_steady_state(vm):
    r = vm.check_il7_15(depths=(0.5, 0.8, 0.9), n_random=2)
    f = r["figures"]
    assert r["passed"], r["lines"]
    assert f["closed_form_ratio"] == pytest.approx(1 / (1 - 0.8 * 0.8))
    assert f["simulated_ratio"] == pytest.approx(f["closed_form_ratio"], rel=1e-9)
    assert f["max_rel_error_vs_closed_form"] < 1e-9


def test_check_7_grading_table(vm):
    r = vm.check_seizure_grade()
    assert r["passed"] and r["figures"]["ice5_brief_seizure_grade"] == 3
    assert all(expected == got for _, expected, got in vm.grading_table())


def test_check_8_synthetic_tls_controls(vm):
    controls = {c["run_id"]: c for c in vm.tls_controls()}
    for c in controls.values():
        crit, flag = vm._tls_recompute(c)
        assert np.array_equal(flag, c["ts"]["tls_lab"] >= 1)
        assert np.array_equal(crit, c["ts"]["tls_criteria"])
        assert bool(flag.any()) == c["lysis"]
    assert controls["synthetic: fever, no lysis"]["ep"]["temperature_max_c"] >= 38.0


def test_paired_statistics(vm):
    s = vm.sign_test([1, 2, 3, np.nan, 5], [2, 3, 4, 1, np.nan], "less")
    # pairs: a < b three times, NaN in a counts as later (a > b), NaN in b as later (a < b)
    assert (s["a_lt_b"], s["a_gt_b"], s["ties"]) == (4, 1, 0)
    assert s["p"] == pytest.approx(6 / 32)
    w = vm.wilcoxon([5, 6, 7, 8, 9, 10], [1, 1, 1, 1, 1, 1], "greater")
    assert w["a_gt_b"] == 6 and w["p"] == pytest.approx(1 / 64)
    m = vm.mcnemar_exact([1, 1, 0, 0], [1, 0, 1, 1])
    assert (m["a_only"], m["b_only"]) == (1, 2) and m["p_a_fewer"] == pytest.approx(0.5)
    assert math.isnan(vm.sign_test([np.nan], [np.nan])["p"])


def test_config_consistency_flags_an_arm_made_with_two_parameter_sets(vm):
    def run(i, point, ifng, weight):
        return {"run_id": f"b_{i}", "batch": "b", "point": point,
                "config": {"run": {"name": f"b_{i}", "seed": i}, "patient": {"weight_kg": weight},
                           "product": {"ifng_secretion_fg_per_h": ifng}}}
    same = [run(0, 0, 1.0, 70.0), run(1, 0, 1.0, 90.0), run(2, 1, 0.5, 70.0)]
    assert vm.config_consistency(same) == []           # seeds and drawn covariates may differ
    mixed = same + [run(3, 1, 0.25, 80.0)]
    warnings = vm.config_consistency(mixed)
    assert len(warnings) == 1 and "sweep point 1" in warnings[0]
