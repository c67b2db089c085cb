"""The validation package: the checks that call the model directly (docs/model.md 10.1, 10.7, 10.8 controls),
the paired statistics, the parameter-consistency guard and the runner's command line.

The full validation simulates ~170 patients (docs/validation.md); only the checks that need no virtual
cohort run here (a few seconds). End-to-end runs of the package are marked ``validate`` (run with
``-m validate``).
"""

import json
import math

import numpy as np
import pytest

from validation import GROUPS, MECHANISMS, REGISTRY
from validation.__main__ import build_parser, main, resolve
from validation.check_events import tls_controls, tls_recompute
from validation.check_il7_15 import check_il7_15
from validation.check_seizure_grade import check_seizure_grade, grading_table
from validation.cohort import config_consistency
from validation.icans import summarise
from validation.stats import mcnemar_exact, sign_test, wilcoxon


def test_check_1_il7_15_closed_form_and_simulated_steady_state():
    r = check_il7_15(depths=(0.5, 0.8, 0.9), n_random=2)
    f = r["figures"]
    assert r["passed"], r["lines"]
    assert f["closed_form_ratio"] == pytest.approx(1 / (1 - 0.8 * 0.8))
    assert f["simulated_ratio"] == pytest.approx(f["closed_form_ratio"], rel=1e-9)
    assert f["max_rel_error_vs_closed_form"] < 1e-9


def test_check_7_grading_table():
    r = check_seizure_grade()
    assert r["passed"] and r["figures"]["ice5_brief_seizure_grade"] == 3
    assert all(expected == got for _, expected, got in grading_table())


def test_check_8_synthetic_tls_controls():
    controls = {c["run_id"]: c for c in tls_controls()}
    for c in controls.values():
        crit, flag = tls_recompute(c)
        assert np.array_equal(flag, c["ts"]["tls_lab"] >= 1)
        assert np.array_equal(crit, c["ts"]["tls_criteria"])
        assert bool(flag.any()) == c["lysis"]
    assert controls["synthetic: fever, no lysis"]["ep"]["temperature_max_c"] >= 38.0


def test_paired_statistics():
    s = sign_test([1, 2, 3, np.nan, 5], [2, 3, 4, 1, np.nan], "less")
    # pairs: a < b three times, NaN in a counts as later (a > b), NaN in b as later (a < b)
    assert (s["a_lt_b"], s["a_gt_b"], s["ties"]) == (4, 1, 0)
    assert s["p"] == pytest.approx(6 / 32)
    w = wilcoxon([5, 6, 7, 8, 9, 10], [1, 1, 1, 1, 1, 1], "greater")
    assert w["a_gt_b"] == 6 and w["p"] == pytest.approx(1 / 64)
    m = mcnemar_exact([1, 1, 0, 0], [1, 0, 1, 1])
    assert (m["a_only"], m["b_only"]) == (1, 2) and m["p_a_fewer"] == pytest.approx(0.5)
    assert math.isnan(sign_test([np.nan], [np.nan])["p"])


def test_config_consistency_flags_an_arm_made_with_two_parameter_sets():
    def run(i, point, ifng, weight):
        return {"run_id": f"b_{i}", "batch": "b", "point": point,
                "config": {"run": {"name": f"b_{i}", "seed": i}, "patient": {"weight_kg": weight},
                           "product": {"ifng_secretion_fg_per_h": ifng}}}
    same = [run(0, 0, 1.0, 70.0), run(1, 0, 1.0, 90.0), run(2, 1, 0.5, 70.0)]
    assert config_consistency(same) == []           # seeds and drawn covariates may differ
    mixed = same + [run(3, 1, 0.25, 80.0)]
    warnings = config_consistency(mixed)
    assert len(warnings) == 1 and "sweep point 1" in warnings[0]


def test_every_mechanism_check_module_declares_its_number_title_and_cohorts():
    import importlib
    numbers = []
    for name in MECHANISMS:
        module = importlib.import_module(REGISTRY[name])
        numbers.append(module.NUMBER)
        assert module.TITLE and callable(module.run)
        assert set(module.COHORTS) <= {"mech_paired", "mech_burden", "mech_infusion"}
    assert numbers == list(range(1, 9))


def test_runner_names_groups_and_numbers():
    parser = build_parser()
    assert resolve([], parser) == list(REGISTRY)
    assert resolve(["mechanisms"], parser) == list(GROUPS["mechanisms"])
    assert resolve(["8", "1", "il7_15", "icans"], parser) == ["il7_15", "events", "icans"]
    with pytest.raises(SystemExit):
        resolve(["no_such_check"], parser)


def test_runner_list_and_help(capsys):
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in REGISTRY)
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--burden-batch" in capsys.readouterr().out


def test_icans_summary_of_recorded_runs(capsys):
    def row(arm, seed, crs, crs_day, icans, icans_day):
        r = {k: 0.0 for k in ("plasma_il6_peak", "csf_il6_peak", "neuroinflammation_max",
                              "brain_endothelial_activation_max", "q_alb_max", "brain_water_excess_max_ml",
                              "tocilizumab_doses", "seizures", "tls_lab_any", "infusion_reaction")}
        r.update(arm=arm, seed=seed, crs_max_grade=crs, crs_onset_day=crs_day, icans_max_grade=icans,
                 icans_onset_day=icans_day, crs2_h=10.0 * crs, e0=0.0)
        return r
    rows = [row("off", 1, 2, 1.0, 0, math.nan), row("on", 1, 2, 1.0, 2, 2.5), row("no_tcz", 1, 3, 1.0, 1, 3.0)]
    summarise(rows, 1, 1)
    out = capsys.readouterr().out
    assert "ICANS >= 2 0/1 (must be 0)" in out
    assert "ICANS after CRS onset in 1/1" in out


@pytest.mark.validate
def test_mechanism_validation_on_one_patient_per_arm_writes_its_results(tmp_path):
    out = tmp_path / "tiny"
    main(["mechanisms", "--quick", "--n", "1", "--n-burden", "1", "--n-infusion", "1", "--out", str(out), "-q"])
    results = json.loads((out / "results.json").read_text())
    assert [r["check"] for r in results["results"]] == list(range(1, 9))
    assert results["meta"]["n_runs"] == 4 + 4 + 1
    assert len(results["meta"]["figures"]) == 4 and (out / "results.md").exists()


@pytest.mark.validate
def test_synthetic_icans_validation_appends_its_runs(tmp_path):
    out = tmp_path / "icans.jsonl"
    assert main(["icans", "--synthetic", "--n-off", "1", "--n-policy", "1", "--workers", "1",
                 "--icans-out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["arm"] for r in rows) == ["no_tcz", "off", "on"]


@pytest.mark.validate
def test_multiscale_checks_pass_on_a_few_seeds(tmp_path):
    """The two-scale checks (docs/multiscale.md 6) on a few seeds: the 20-seed figures are in the docs."""
    out = tmp_path / "ms.json"
    assert main(["multiscale", "--n-multiscale", "6", "--multiscale-days", "3",
                 "--multiscale-out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["shot_noise"]["worst"] < 0.05 and res["consistency"]["pass"]
