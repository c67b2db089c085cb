"""The patient as a whole: recorded outputs, restart determinism, and (with the cell
rules) the whole-model mechanisms of docs/model.md section 10."""

import copy
import importlib.util
import json
import math

import numpy as np
import pytest

from abm.config import config_from_dict, load_config
from abm.model.coupling import bed_scale as patient_scale
from abm.model.patient import SYSTEMIC_PROCESSES
from abm.process import Process
from abm.build import build_simulation

BASE = {"lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 100},
        "run": {"seed": 21, "start_day": -5.0, "end_day": 10.0}}


def surge_config(**extra):
    data = copy.deepcopy(BASE)
    for k, v in extra.items():
        data.setdefault(k, {}).update(v)
    return config_from_dict(data)


def surge(cfg, t_on=1.0, t_off=4.0, ifng=300.0, gmcsf=100.0):
    """Synthetic patch outputs: CAR-T entry/egress, lysis and an IFN-gamma / GM-CSF surge."""
    S, vp, dt = patient_scale(cfg), cfg.blood.plasma_volume_ml_per_kg * cfg.patient.weight_kg, cfg.run.dt_s

    class Surge(Process):
        phase = "fields"

        def step(self, state):
            t, s = state.time_day, state.scalars
            on = t_on <= t < t_off
            for sp, c, hl in (("ifng", ifng, 30.0), ("gmcsf", gmcsf, 40.0)):
                s[f"exchange_{sp}_pg"] = math.log(2) / (hl * 60) * c * vp * dt / S if on else 0.0
            s["tumour_lysed_patient_step"] = 2.0 * S if on else 0.0
            s["il6_secreted_cart_pg"] = s.get("il6_secreted_cart_pg", 0.0) + (1e-5 if on else 0.0)
    return Surge


#: What docs/model.md section 9 asks the patient part to record, per time point.
SECTION_9 = ["blood_cart_per_ul", "plasma_ifng", "plasma_gmcsf", "plasma_il6", "plasma_il1", "plasma_il7_15",
             "plasma_ang2", "temperature_c", "map_mmhg", "spo2_pct", "oxygen_support", "oxygen_rung",
             "oxygen_flow_l_min", "fio2", "hypotension_support", "vasopressors", "vasopressin", "fluids_total_ml",
             "tocilizumab_total_mg", "dexamethasone_total_mg", "methylprednisolone_total_mg", "anakinra_total_mg",
             "tcz_ug_ml", "dex_nm", "il6r_occupancy", "steroid_effect", "crs_grade", "crs_max_grade",
             "alc_per_ul", "lymphocytes_cells", "potassium_mmol_l", "phosphate_mg_dl", "uric_acid_mg_dl",
             "calcium_mg_dl", "ang1_pg_ml", "ang2_ang1_ratio", "vwf_iu_dl", "blood_monocytes_per_ul"]


def test_records_section_9_with_units():
    cfg = surge_config()
    sim = build_simulation(cfg, processes=[surge(cfg), *SYSTEMIC_PROCESSES])
    row = sim.record_row()
    for key in SECTION_9:
        assert key in row, key
        assert isinstance(row[key], float), key
    meta = {}
    for p in sim.processes:
        meta.update(getattr(p, "meta", {}))
    recorded = set(row) - {"time", "step"} - {k for k in row if k.startswith("n_")}
    assert recorded <= set(meta), recorded - set(meta)
    for key in recorded:
        unit, long_name = meta[key]
        assert unit and long_name


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        assert (x == y) or (x != x and y != y), (k, x, y)


def test_restart_from_saved_state_is_bit_identical():
    cfg = surge_config(patient={"random_effects": True})
    procs = lambda: [surge(cfg), *SYSTEMIC_PROCESSES]     # noqa: E731
    ref = build_simulation(cfg, processes=procs())
    ref.run(steps=900)
    # checkpoint-like round trip of everything dynamic: step, scalars, events (JSON, as abm.io does)
    saved = json.dumps({"step": ref.state.step, "scalars": ref.state.scalars,
                        "events": ref.state.events}, allow_nan=True)
    ref.run(steps=1200)
    new = build_simulation(cfg, processes=procs())
    data = json.loads(saved)
    new.state.step = data["step"]
    new.state.scalars.clear()
    new.state.scalars.update(data["scalars"])
    new.state.events[:] = [tuple(e) for e in data["events"]]
    new.run(steps=1200)
    _same(ref.state.scalars, new.state.scalars)
    assert [tuple(e) for e in ref.state.events] == new.state.events
    assert ref.state.scalars["crs_max_grade"] >= 1        # the window covered CRS and the clinician


def test_processes_hold_only_constants():
    cfg = surge_config()
    sim = build_simulation(cfg, processes=[surge(cfg), *SYSTEMIC_PROCESSES])
    models = [p.model for p in sim.processes if hasattr(p, "model")]
    before = [repr(sorted(vars(m).items(), key=lambda kv: kv[0])) for m in models]
    sim.run(steps=1500)
    after = [repr(sorted(vars(m).items(), key=lambda kv: kv[0])) for m in models]
    assert before == after


def test_synthetic_patient_course():
    """Blood, drugs, physiology, clinician and grade together on a synthetic CAR-T surge."""
    cfg = surge_config(patient={"random_effects": False})
    sim = build_simulation(cfg, processes=[surge(cfg), *SYSTEMIC_PROCESSES])
    rows = []
    sim.add_writer(10, lambda s: rows.append(s.record_row()))
    sim.run()
    ts = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    s = sim.state.scalars
    assert s["crs_max_grade"] >= 2 and s["crs_active"] == 0          # CRS, resolved
    assert 1.0 <= s["crs_onset_day"] <= 1.5
    assert s["tocilizumab_doses"] >= 1
    assert ts["temperature_c"].max() >= 38.0 and ts["temperature_c"][-1] < 37.5
    assert ts["plasma_il6"].max() > 100.0
    # the synthetic surge has no patch myeloid cells: the share is the systemic pool's
    # (the >= 90 % of docs/model.md 10.4 is tested on the real default patient, -m slow)
    cart = patient_scale(cfg) * s["il6_secreted_cart_pg"]
    pool = s["il6_secreted_systemic_pg"]
    assert s["il6_myeloid_fraction"] == pytest.approx(pool / (pool + cart), rel=1e-12)
    assert s["il6_myeloid_fraction"] > 0.5
    assert ts["potassium_mmol_l"].max() > 4.2
    ends = {}
    for p in sim.processes:
        if hasattr(p, "endpoints"):
            p.endpoints(sim.state, ends)
    for key in ("crs_max_grade", "crs_onset_day", "crs_duration_days", "blood_cart_peak_per_ul",
                "tocilizumab_total_mg", "fluids_total_ml"):
        assert key in ends
    kinds = [e[1] for e in sim.state.events]
    assert kinds.index("crs_onset") < kinds.index("tocilizumab") < kinds.index("crs_resolved")


# -- whole model (needs the cell rules) -----------------------------------------------------

HAVE_CELLS = importlib.util.find_spec("abm.model.agents") is not None
needs_cells = pytest.mark.skipif(not HAVE_CELLS, reason="cell rules (abm.model.agents) not available yet")


def default_run(end_day: float, seed: int | None = None):
    cfg = load_config("configs/default.toml", {"run": {"end_day": end_day}} if seed is None else
                      {"run": {"end_day": end_day, "seed": seed}})
    sim = build_simulation(cfg)
    rows = []
    sim.add_writer(cfg.run.every_steps(60.0), lambda s: rows.append(s.record_row()))
    sim.run()
    return sim, {k: np.array([r.get(k, np.nan) for r in rows], dtype=float) for k in rows[0]}


@pytest.mark.slow
@needs_cells
def test_default_patient_il6_comes_mostly_from_myeloid_cells(root, monkeypatch):
    """docs/model.md 10.4: in a default CD28 patient with CRS >= 90 % of IL-6 mass is myeloid."""
    monkeypatch.chdir(root)
    sim, ts = default_run(14.0)
    s = sim.state.scalars
    assert s["crs_max_grade"] >= 1, "the default patient should have CRS"
    assert s["il6_myeloid_fraction"] >= 0.9


@pytest.mark.slow
@needs_cells
def test_default_patient_course(root, monkeypatch):
    """The default patient model over 5 seeds: CAR-T peak in week 2, cytokine surge, fever, CRS that resolves.

    The peak in week 2 is a known miss at the current defaults (reported as xfail, below).

    One seed is one realisation (a poor expander is a legitimate default
    patient), so the course is checked on the population: the medians of the
    blood peak day and of the expansion over the day-2 level, and the other
    features in at least 4 of the 5 patients. The expansion bound is 3x: the
    model's blood expansion is known to be low against axi-cel
    (docs/calibration.md 5.2; 5 seeds give 1.5-12.7x, median 4.7x); the
    check is that a clear expansion follows the infusion.
    """
    monkeypatch.chdir(root)
    peak_day, expansion, surge, fever, crs = [], [], 0, 0, 0
    for seed in range(1, 6):
        sim, ts = default_run(28.0, seed=seed)
        s = sim.state.scalars
        peak_day.append(s["blood_cart_peak_day"])
        day2 = ts["blood_cart_per_ul"][(ts["time"] > 1.5) & (ts["time"] < 2.5)].mean()
        expansion.append(s["blood_cart_peak_per_ul"] / day2)
        surge += ts["plasma_il6"].max() > 10 * ts["plasma_il6"][0]
        fever += ts["temperature_c"].max() >= 38.0
        crs += s["crs_max_grade"] >= 1 and s["crs_active"] == 0
    assert np.median(expansion) > 3, expansion
    assert surge >= 4 and fever >= 4 and crs >= 4, (surge, fever, crs)
    assert 3.0 <= np.median(peak_day) <= 14.0, peak_day
    if np.median(peak_day) < 7.0:
        # a known miss at the defaults of docs/calibration.md 7.15: seeds 1-5 peak on days 4.0, 5.7,
        # 4.9, 9.7 and 7.7 (the CD28 trial's median Tmax is 7.0 d, IQR 5.5-8.5), axi-cel in week 2
        pytest.xfail(f"blood CAR-T peak median day {np.median(peak_day):.1f} < 7 (calibration.md 7.15)")