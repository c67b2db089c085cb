"""Validation of the eight mechanisms of MODEL.md section 10 at the default parameters.

Each mechanism is checked on virtual patients simulated with the default
parameters (``configs/trial_patient.toml``: 96 x 96 patch, day -1 to 28) and
printed as one block -- the check, the measured figures with intervals or
p-values, PASS or FAIL. The exit code is 0 only if all eight pass.

Designs (seeds are paired: with ``common_seeds`` every arm of a batch sees the
same virtual patients *and* the same random numbers, so two arms of one
patient are identical until the arms' rules first differ):

* ``mech_paired`` (``--n`` patients x 4 arms): CD28 and 4-1BB at the same dose
  (2e8) and burden (9.5e10), default clinician; CD28 with the clinician preset
  ``no_tocilizumab``; CD28 with ``brain.endothelial_response = false``. Weight,
  lymphodepletion depth, CD19 density and baseline endothelial activation are
  drawn per patient (as in configs/trial_cd28.toml) and the same in every arm.
  Checks 2, 4, 5, 6 (and 7, 8 on the event logs).
* ``mech_burden`` (``--n-burden`` patients x 4 burdens 1e9, 1e10, 1e11, 1e12;
  CD28 2e8, same covariate draws): check 3 (replaced by ``--burden-batch``).
* ``mech_infusion`` (``--n-infusion`` patients, day -1 to 3): every patient has
  an infusion reaction with fever (``events.reaction_probability = 1``,
  ``events.fever_probability = 1``): check 8.
* checks 1 and 7 call the model's functions directly (blood model alone; the
  ICANS grading table).

Usage::

    python scripts/validate_mechanisms.py                      # full validation: 170 runs, ~11 min on 2 free cores
    python scripts/validate_mechanisms.py --resume             # continue an interrupted one
    python scripts/validate_mechanisms.py --analyse-only       # re-analyse the runs in --out
    python scripts/validate_mechanisms.py --quick              # smoke test: NOT the validation
    python scripts/validate_mechanisms.py --burden-batch runs/tumor_burden   # reuse a burden batch

Output (``--out``, default ``runs/validate_mechanisms/``; ``--quick`` defaults to
``runs/validate_mechanisms_quick/``): ``batches/<name>/`` (normal batch
folders: ``abm analyze`` works on them), ``results.json``, ``results.md`` and
the figures ``il7_15_vs_depth.png``, ``cd28_vs_41bb.png``,
``risk_vs_burden.png``, ``tocilizumab.png``. See docs/validation.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import hashlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BASE = "trial_patient.toml"            # relative to configs/
DOSE = 2e8                             # CAR-T cells, both products (check 2)
BURDEN = 9.5e10                        # cells (ZUMA-1 median MTV, Kimmel 2021)
BURDEN_LEVELS = (1e9, 1e10, 1e11, 1e12)
ALPHA = 0.05
IL7_BAND = (2.5, 3.0)
IL6_MYELOID_MIN = 0.90
TCZ_WINDOW_H = 72.0                    # hours after the first tocilizumab dose compared between arms

#: Patient covariates drawn per virtual patient (as in configs/trial_cd28.toml), the same in every arm.
COVARIATES = {
    "patient.weight_kg": {"dist": "truncnormal", "mean": 80.0, "sd": 17.0, "low": 45.0, "high": 150.0},
    "lymphodepletion.depth": {"dist": "truncnormal", "mean": 0.85, "sd": 0.07, "low": 0.5, "high": 0.97},
    "tumour.antigen_median_molecules": {"dist": "lognormal", "median": 1e4, "sigma": 0.5},
    "tumour.antigen_negative_fraction": {"dist": "beta", "a": 1.0, "b": 30.0},
    "patient.baseline_endothelial_activation": {"dist": "beta", "a": 1.5, "b": 8.0},
}

#: Arms of the paired batch: name -> (product preset, clinician preset, endothelial response).
ARMS = {
    "cd28": ("cd28", "default", True),
    "41bb": ("4-1bb", "default", True),
    "cd28_no_tcz": ("cd28", "no_tocilizumab", True),
    "cd28_endo_off": ("cd28", "default", False),
}

#: Time series read from each run file (absent ones are NaN).
SERIES = ("crs_grade", "icans_grade", "plasma_il6", "plasma_ifng", "blood_cart_per_ul", "temperature_c",
          "map_mmhg", "hypotension_support", "vasopressors", "tocilizumab_doses", "ice_score",
          "consciousness_level", "seizure_level", "motor_weakness", "oedema_level",
          "infusion_reaction_active", "tls_lab", "tls_criteria", "uric_acid_mg_dl", "potassium_mmol_l",
          "phosphate_mg_dl", "calcium_mg_dl", "endothelial_activation_systemic", "il6r_occupancy",
          "n_cart", "cart_entered_total")

CHECK_TITLES = {
    1: "80 % lymphodepletion raises IL-7/IL-15 2.5-3x",
    2: "CD28 vs 4-1BB at equal dose and burden",
    3: "Higher tumour burden raises CRS and ICANS risk",
    4: "IL-6 comes >= 90 % from myeloid cells",
    5: "Tocilizumab quenches fever and hypotension, does not prevent ICANS; serum IL-6 rises",
    6: "ICANS follows CRS and requires barrier disruption",
    7: "A single seizure with ICE 5 makes ICANS grade 3",
    8: "No CRS onset in the infusion-reaction window; TLS from labs, not fever",
}


# -- small statistics ----------------------------------------------------------------------------

def _f(x, nd=3):
    """Number for printing."""
    if x is None:
        return "n/a"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.{nd}g}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{nd}g}"


def _p(p):
    if p is None or not math.isfinite(p):
        return "p = n/a"
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 1e-4"


def _median(x):
    x = np.asarray(x, float)
    x = x[~np.isnan(x)]
    return float(np.median(x)) if x.size else math.nan


def _clean(v):
    """JSON-safe value (NaN/inf -> None, numpy scalars -> Python)."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def sign_test(a, b, alternative="less") -> dict:
    """Exact sign test of paired values ``a`` vs ``b`` (inf allowed; pairs equal or both NaN dropped).

    ``alternative="less"``: H1 ``a < b`` more often than not. NaN in one of a pair counts as +inf
    (an event that never happened comes later than any that did).
    """
    from scipy.stats import binomtest
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    both = np.isnan(a) & np.isnan(b)
    a = np.where(np.isnan(a), np.inf, a)[~both]
    b = np.where(np.isnan(b), np.inf, b)[~both]
    lt, gt = int(np.sum(a < b)), int(np.sum(a > b))
    n = lt + gt
    if n == 0:
        p = math.nan
    else:
        k = lt if alternative == "less" else gt
        p = float(binomtest(k, n, 0.5, alternative="greater").pvalue)
    return {"n_pairs": int(a.size), "a_lt_b": lt, "a_gt_b": gt, "ties": int(a.size) - n, "p": p}


def wilcoxon(a, b, alternative="greater") -> dict:
    """Paired Wilcoxon signed-rank test of ``a - b`` (finite pairs), with medians and the sign counts."""
    from scipy.stats import wilcoxon as _w
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    d = a - b
    out = {"n_pairs": int(a.size), "median_a": _median(a), "median_b": _median(b),
           "median_diff": _median(d), "a_gt_b": int(np.sum(d > 0)), "a_lt_b": int(np.sum(d < 0)),
           "p": math.nan}
    if np.any(d != 0):
        try:
            out["p"] = float(_w(a, b, alternative=alternative).pvalue)
        except ValueError:
            pass
    return out


def mcnemar_exact(a, b) -> dict:
    """Paired binary outcomes: ``b_only`` (event without a) and ``a_only``; one-sided exact p that
    ``a`` has fewer events than ``b`` (H1)."""
    from scipy.stats import binomtest
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    n = a_only + b_only
    p = float(binomtest(b_only, n, 0.5, alternative="greater").pvalue) if n else 1.0
    return {"a_events": int(a.sum()), "b_events": int(b.sum()), "a_only": a_only, "b_only": b_only,
            "p_a_fewer": p}


# -- result container --------------------------------------------------------------------------------

def result(number: int, criterion: str, passed: bool, figures: dict, lines: list[str],
           diagnosis: str = "") -> dict:
    return {"check": number, "mechanism": CHECK_TITLES[number], "criterion": criterion,
            "passed": bool(passed), "figures": _clean(figures), "lines": lines, "diagnosis": diagnosis}


# -- check 1: IL-7/IL-15 after lymphodepletion ---------------------------------------------------------

def _blood_sim(depth: float, recovery: bool, end_day: float = 6.0, random_effects: bool = False, seed: int = 11):
    from abm.config import load_config
    from abm.model.patient import BloodProcess
    from abm.build import build_simulation
    ld = {"depth": float(depth), "enabled": depth > 0}
    if not recovery:
        ld["lymphocyte_recovery_per_day"] = 0.0
    over = {"lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 100},
            "patient": {"random_effects": random_effects},
            "run": {"seed": seed, "start_day": -6.0, "end_day": end_day},
            "blood": {"infusion_day": 500.0}, "lymphodepletion": ld}
    cfg = load_config(ROOT / "configs" / BASE, over)
    return build_simulation(cfg, processes=[BloodProcess])


def check_il7_15(depths=(0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95), n_random: int = 20) -> dict:
    """MODEL.md 10.1 with the blood model alone (no CAR-T: infusion after the end).

    The closed form ``1 / (1 - f d)`` of the default config at its default depth, and the simulated steady
    state (lymphocyte recovery off, so the depleted level is held) of the typical patient (random effects off)
    relative to its pre-regimen level, at several depths. PASS: both in [2.5, 3] at the default depth
    (0.8) and the simulation equals the closed form to 1e-6.
    """
    from abm.config import load_config
    cfg = load_config(ROOT / "configs" / BASE)
    ld = cfg.lymphodepletion
    d0 = ld.depth
    closed = ld.steady_state_ratio()
    sims = {}
    for d in sorted(set(depths) | {d0}):
        sim = _blood_sim(d, recovery=False)
        c0 = sim.state.scalars["plasma_il7_15"]
        sim.run()
        sims[d] = sim.state.scalars["plasma_il7_15"] / c0
    simulated = sims[d0]
    worst = max(abs(sims[d] - ld.steady_state_ratio(d)) / ld.steady_state_ratio(d) for d in sims)
    # course of the typical patient with lymphocyte recovery (as in a run): the peak fold
    sim = _blood_sim(d0, recovery=True, end_day=28.0)
    c0 = sim.state.scalars["plasma_il7_15"]
    course_t, course_y = [], []
    sim.add_writer(sim.config.run.every_steps(60.0),
                   lambda s: (course_t.append(s.state.time_day), course_y.append(s.state.scalars["plasma_il7_15"] / c0)))
    sim.run()
    i = int(np.argmax(course_y))
    # per-patient spread with random effects (lymphocyte baseline, production) at the default depth
    rnd = []
    for seed in range(1, n_random + 1):
        s = _blood_sim(d0, recovery=False, random_effects=True, seed=seed)
        c = s.state.scalars["plasma_il7_15"]
        s.run()
        rnd.append(s.state.scalars["plasma_il7_15"] / c)
    lo, hi = IL7_BAND
    passed = lo <= closed <= hi and lo <= simulated <= hi and worst < 1e-6
    figs = {"default_depth": d0, "consumption_fraction": ld.il7_15_consumption_fraction,
            "closed_form_ratio": closed, "simulated_ratio": simulated, "max_rel_error_vs_closed_form": worst,
            "depths": {str(d): r for d, r in sims.items()},
            "peak_fold_with_recovery": course_y[i], "peak_day_with_recovery": course_t[i],
            "random_effects_range": [min(rnd), max(rnd)], "random_effects_median": _median(rnd)}
    lines = [f"closed form 1/(1 - f d), f = {ld.il7_15_consumption_fraction:g}, d = {d0:g}: {closed:.3f}x",
             f"simulated steady state (blood model, typical patient, recovery off): {simulated:.3f}x "
             f"(max relative difference from the closed form over {len(sims)} depths {worst:.1e})",
             f"info: with lymphocyte recovery (as in a run) the typical patient peaks at {course_y[i]:.2f}x "
             f"on day {course_t[i]:.1f}; with random effects (N0, production; {n_random} patients, recovery off) "
             f"{min(rnd):.2f}-{max(rnd):.2f}x (median {_median(rnd):.2f}x)"]
    res = result(1, f"closed form and simulated steady state at depth {d0:g} both within {lo:g}-{hi:g}x, and "
                    "equal to 1e-6", passed, figs, lines)
    res["_course"] = (course_t, course_y)
    return res


# -- check 7: the grading table ------------------------------------------------------------------------

def grading_table() -> list[tuple[str, int, int]]:
    """(case, expected, got) for the ICANS grading function (ASTCT 2019)."""
    from abm import grading as g
    rows = [("ICE 5, no seizure", 2, g.icans_grade(ice=5)),
            ("ICE 5, one brief seizure", 3, g.icans_grade(ice=5, seizure=g.SEIZURE_BRIEF)),
            ("ICE 10, one brief seizure", 3, g.icans_grade(ice=10, seizure=g.SEIZURE_BRIEF)),
            ("ICE 5, prolonged seizure", 4, g.icans_grade(ice=5, seizure=g.SEIZURE_PROLONGED)),
            ("seizure of 2 min is brief", g.SEIZURE_BRIEF, g.seizure_level(2.0)),
            ("seizure of 10 min is prolonged", g.SEIZURE_PROLONGED, g.seizure_level(10.0)),
            ("repetitive 2-min seizure counts as prolonged", g.SEIZURE_PROLONGED, g.seizure_level(2.0, True))]
    for ice in range(11):
        base = 0 if ice == 10 else 1 if ice >= 7 else 2 if ice >= 3 else 3
        rows.append((f"ICE {ice}", base, g.icans_grade(ice=ice)))
        rows.append((f"ICE {ice} + brief seizure", max(base, 3), g.icans_grade(ice=ice, seizure=g.SEIZURE_BRIEF)))
    return rows


def check_seizure_grade(runs=None) -> dict:
    """MODEL.md 10.7: the grading function (exact table) and, over simulated runs, every recorded ICANS grade
    recomputed from its recorded domains, and the grade at recorded brief seizures with ICE 3-6."""
    from abm import grading as g
    table = grading_table()
    bad = [(c, e, x) for c, e, x in table if e != x]
    key = g.icans_grade(ice=5, seizure=g.SEIZURE_BRIEF)
    lines = [f"icans_grade(ice=5, seizure=brief) = {key} (expected 3); grading table: "
             f"{len(table) - len(bad)}/{len(table)} cases as ASTCT 2019"]
    lines += [f"  MISMATCH {c}: expected {e}, got {x}" for c, e, x in bad]
    figs = {"ice5_brief_seizure_grade": key, "table_cases": len(table), "table_mismatches": len(bad)}
    passed = not bad and key == 3
    if runs:
        n_rec = n_mis = 0
        seizure_events = 0
        brief_ice36, brief_ice36_grade3 = 0, 0
        ice5_brief = 0
        for r in runs:
            ts = r["ts"]
            need = ("ice_score", "consciousness_level", "seizure_level", "motor_weakness", "oedema_level",
                    "icans_grade")
            if any(np.all(np.isnan(ts[k])) for k in need):
                continue
            ice, cons, sz, mw, oe, gr = (ts[k] for k in need)
            ok = ~np.isnan(gr)
            for j in np.flatnonzero(ok):
                want = g.icans_grade(int(ice[j]), int(cons[j]), int(sz[j]), mw[j] > 0, int(oe[j]))
                n_rec += 1
                n_mis += int(want != gr[j])
            sel = ok & (sz == g.SEIZURE_BRIEF) & (ice >= 3) & (ice <= 6)
            brief_ice36 += int(sel.sum())
            brief_ice36_grade3 += int(np.sum(sel & (gr >= 3)))
            ice5_brief += int(np.sum(sel & (ice == 5)))
            seizure_events += sum(1 for e in r["events"] if e[1] == "seizure")
        lines.append(f"simulated runs ({len(runs)}): {n_rec} hourly records, recorded ICANS grade = "
                     f"grading(ICE, consciousness, seizure, motor, oedema) in {n_rec - n_mis}/{n_rec}")
        lines.append(f"seizure events in the logs: {seizure_events}; records with a brief seizure counting and "
                     f"ICE 3-6: {brief_ice36} (ICE exactly 5: {ice5_brief}), graded >= 3 in {brief_ice36_grade3}")
        figs.update(records=n_rec, record_mismatches=n_mis, seizure_events=seizure_events,
                    brief_seizure_ice3_6_records=brief_ice36, brief_seizure_ice5_records=ice5_brief,
                    brief_seizure_ice3_6_grade3=brief_ice36_grade3)
        passed = passed and n_mis == 0 and brief_ice36_grade3 == brief_ice36
    return result(7, "icans_grade(ICE 5, one brief seizure) == 3 and the whole ICE x seizure table as ASTCT 2019; "
                     "every recorded ICANS grade equals the grading function of its recorded domains",
                  passed, figs, lines)


# -- batches ---------------------------------------------------------------------------------------------

def batch_tables(opts) -> dict[str, dict]:
    """The batch definitions (name -> data for ``batch_from_dict``)."""
    pop = dict(COVARIATES)
    out = {}
    names = list(ARMS)
    out["mech_paired"] = {
        "batch": {"name": "mech_paired", "root_seed": opts.seed, "base": BASE, "common_seeds": True,
                  "description": "MODEL.md 10 validation: CD28 / 4-1BB / CD28 without tocilizumab / CD28 with "
                                 "the brain endothelial response off, paired seeds, dose 2e8, burden 9.5e10",
                  "sweep": {"method": "list",
                            "product.preset": [ARMS[a][0] for a in names],
                            "clinician.preset": [ARMS[a][1] for a in names],
                            "brain.endothelial_response": [ARMS[a][2] for a in names]},
                  "population": {"size": opts.n, **pop}},
        "product": {"dose_cells": DOSE}, "patient": {"tumour_burden_cells": BURDEN}}
    if not opts.burden_batch:
        out["mech_burden"] = {
            "batch": {"name": "mech_burden", "root_seed": opts.seed + 1, "base": BASE, "common_seeds": True,
                      "description": "MODEL.md 10.3 validation: CD28 2e8 at four tumour burdens, paired seeds",
                      "sweep": {"method": "grid", "patient.tumour_burden_cells": list(BURDEN_LEVELS)},
                      "population": {"size": opts.n_burden, **pop}},
            "product": {"preset": "cd28", "dose_cells": DOSE}}
    out["mech_infusion"] = {
        "batch": {"name": "mech_infusion", "root_seed": opts.seed + 2, "base": BASE,
                  "description": "MODEL.md 10.8 validation: every patient has an infusion reaction with fever",
                  "population": {"size": opts.n_infusion, **pop}},
        "run": {"end_day": 3.0}, "product": {"preset": "cd28", "dose_cells": DOSE},
        "patient": {"tumour_burden_cells": BURDEN},
        "events": {"reaction_probability": 1.0, "fever_probability": 1.0}}
    return out


def defaults_fingerprint(batches) -> str:
    """Hash of the resolved config of patient 0 of every arm of every batch (changes when defaults change)."""
    from abm.batch import expand_batch
    from abm.config import to_json
    h = hashlib.sha256()
    for name in sorted(batches):
        b = batches[name]
        first = [p * b.n_members for p in range(b.n_points)]      # patient 0 of every arm
        for spec in expand_batch(b, indices=first):
            cfg = json.loads(to_json(spec.resolve()))
            for sec, key in (("run", "name"), ("run", "seed")):
                cfg.get(sec, {}).pop(key, None)
            h.update(json.dumps(cfg, sort_keys=True).encode())
    return h.hexdigest()[:16]


def config_consistency(runs) -> list[str]:
    """Warnings for arms whose runs were made with different parameters (e.g. defaults edited while the
    validation ran): the run configs, less name, seed, replicate and the drawn covariates, must be equal."""
    groups: dict = {}
    for r in runs:
        cfg = json.loads(json.dumps(r["config"]))
        for sec, key in (("run", "name"), ("run", "seed"), ("run", "replicate")):
            cfg.get(sec, {}).pop(key, None)
        for path in COVARIATES:
            sec, key = path.split(".")
            cfg.get(sec, {}).pop(key, None)
        key = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
        groups.setdefault((r["batch"], r["point"]), {}).setdefault(key, []).append(r["run_id"])
    out = []
    for (batch, point), hashes in sorted(groups.items()):
        if len(hashes) > 1:
            sizes = ", ".join(f"{len(v)} runs like {v[0]}" for v in hashes.values())
            out.append(f"{batch} sweep point {point}: runs made with {len(hashes)} different parameter sets "
                       f"({sizes}); the defaults changed while the validation ran: re-run in a fresh --out")
    return out


def run_batches(opts, log) -> dict:
    from abm.batch import batch_from_dict
    from abm.batch.executors import LocalPool
    from abm.batch.runner import run_batch
    tables = batch_tables(opts)
    batches = {k: batch_from_dict(v, file=f"<validate_mechanisms:{k}>", root=ROOT / "configs")
               for k, v in tables.items()}
    folder = opts.out / "batches"
    stamp = opts.out / "defaults_fingerprint.txt"
    fp = defaults_fingerprint(batches)
    existing = [k for k in batches if (folder / k / "manifest.csv").exists()]
    if existing and not opts.resume:
        raise SystemExit(f"validate_mechanisms: {folder} already holds runs ({', '.join(existing)}); "
                         "continue with --resume, or use another --out")
    if existing and stamp.exists() and stamp.read_text().strip() != fp and not opts.analyse_only:
        raise SystemExit(f"validate_mechanisms: the default parameters (or the batch designs) changed since "
                         f"the runs in {folder} were made (fingerprint {stamp.read_text().strip()} -> {fp}); "
                         "start a fresh --out")
    opts.out.mkdir(parents=True, exist_ok=True)
    if not stamp.exists():
        stamp.write_text(fp + "\n")
    timing = {}
    tfile = opts.out / "timing.json"
    if opts.analyse_only:
        timing = json.loads(tfile.read_text()) if tfile.exists() else {}
        made = stamp.read_text().strip() if stamp.exists() else None
        return {"folders": {k: folder / k for k in batches}, "timing": timing, "fingerprint": fp,
                "fingerprint_runs": made}
    total = sum(b.n_runs for b in batches.values())
    log(f"{total} runs in {len(batches)} batches under {folder} ({opts.workers} workers)")
    tty = sys.stderr.isatty()
    with LocalPool(opts.workers) as pool:
        for name, b in batches.items():
            t0 = time.perf_counter()
            res = run_batch(b, out=folder, executor=pool, resume=opts.resume or name in existing,
                            progress=tty and not opts.quiet, verbose=not tty and not opts.quiet,
                            log=lambda m: None if opts.quiet else log(m))
            timing[name] = {"runs": b.n_runs, "done": res.done, "failed": res.failed,
                            "skipped": getattr(res, "skipped", 0), "wall_s": round(time.perf_counter() - t0, 1)}
            tfile.write_text(json.dumps(timing, indent=1) + "\n")
            if getattr(res, "interrupted", False):
                raise KeyboardInterrupt
            if res.failed:
                log(f"{name}: {res.failed} run(s) failed: {res.failures}")
    return {"folders": {k: folder / k for k in batches}, "timing": timing, "fingerprint": fp, "fingerprint_runs": fp}


# -- reading runs ------------------------------------------------------------------------------------

def read_runs(folder: Path, arm_of_point=None) -> list[dict]:
    """Done runs of a batch folder: endpoints, selected series, events, manifest row."""
    import h5py
    rows = list(csv.DictReader(open(folder / "manifest.csv")))
    out = []
    for row in rows:
        path = folder / row["file"]
        if row.get("status") != "done" or not path.exists():
            continue
        with h5py.File(path, "r") as h:
            ep = {k: float(np.asarray(h["endpoints"][k][()])) for k in h["endpoints"]}
            g = h["timeseries"]
            t = np.asarray(g["time"][()], float)
            ts = {k: (np.asarray(g[k][()], float) if k in g else np.full(t.shape, np.nan)) for k in SERIES}
            ts["time"] = t
            ev = []
            if "events" in h and "kind" in h["events"]:
                e = h["events"]
                for tt, kind, grade, det in zip(e["time"][()], e["kind"][()], e["grade"][()], e["detail"][()]):
                    ev.append((float(tt), kind.decode() if isinstance(kind, bytes) else str(kind), int(grade),
                               det.decode() if isinstance(det, bytes) else str(det)))
            cfg = json.loads(h.attrs["config_json"])
        point = int(row.get("sweep_point") or 0)
        out.append({"run_id": row["run_id"], "batch": folder.name, "member": int(row.get("member") or 0),
                    "point": point,
                    "arm": arm_of_point(point, row) if arm_of_point else folder.name, "ep": ep, "ts": ts,
                    "events": ev, "config": cfg, "burden": float(cfg["patient"]["tumour_burden_cells"])})
    return out


def _by_member(runs, arm):
    return {r["member"]: r for r in runs if r["arm"] == arm}


def _paired(runs, a, b):
    A, B = _by_member(runs, a), _by_member(runs, b)
    common = sorted(set(A) & set(B))
    return [A[m] for m in common], [B[m] for m in common]


def _peak_day(r, name):
    t, y = r["ts"]["time"], r["ts"][name]
    ok = ~np.isnan(y)
    return float(t[ok][np.argmax(y[ok])]) if ok.any() else math.nan


def _value_at(r, name, day):
    t, y = r["ts"]["time"], r["ts"][name]
    ok = (t <= day + 1e-9) & ~np.isnan(y)
    return float(y[ok][-1]) if ok.any() and t[-1] >= day - 1e-6 else math.nan


# -- check 2 -------------------------------------------------------------------------------------------

def check_products(runs) -> dict:
    a, b = _paired(runs, "cd28", "41bb")
    n = len(a)
    ep = lambda rs, k: np.array([r["ep"].get(k, math.nan) for r in rs])   # noqa: E731
    ifng = wilcoxon(ep(a, "plasma_ifng_peak_pg_ml"), ep(b, "plasma_ifng_peak_pg_ml"), "greater")
    il6 = wilcoxon(ep(a, "plasma_il6_peak_pg_ml"), ep(b, "plasma_il6_peak_pg_ml"), "greater")
    ifng_day_a = np.array([_peak_day(r, "plasma_ifng") for r in a])
    ifng_day_b = np.array([_peak_day(r, "plasma_ifng") for r in b])
    il6_day_a = np.array([_peak_day(r, "plasma_il6") for r in a])
    il6_day_b = np.array([_peak_day(r, "plasma_il6") for r in b])
    ifng_day = {**sign_test(ifng_day_a, ifng_day_b, "less"), "median_a": _median(ifng_day_a),
                "median_b": _median(ifng_day_b)}
    il6_day = {**sign_test(il6_day_a, il6_day_b, "less"), "median_a": _median(il6_day_a),
               "median_b": _median(il6_day_b)}
    on_a, on_b = ep(a, "crs_onset_day"), ep(b, "crs_onset_day")
    onset = {**sign_test(on_a, on_b, "less"), "median_a": _median(on_a), "median_b": _median(on_b),
             "crs_a": int(np.sum(~np.isnan(on_a))), "crs_b": int(np.sum(~np.isnan(on_b)))}
    both = ~np.isnan(on_a) & ~np.isnan(on_b)
    onset["wilcoxon_both_p"] = wilcoxon(on_b[both], on_a[both], "greater")["p"] if both.sum() else math.nan
    d28_a = np.array([_value_at(r, "blood_cart_per_ul", 28.0) for r in a])
    d28_b = np.array([_value_at(r, "blood_cart_per_ul", 28.0) for r in b])
    d28 = wilcoxon(d28_b, d28_a, "greater")
    peak = wilcoxon(ep(a, "blood_cart_peak_per_ul"), ep(b, "blood_cart_peak_per_ul"), "greater")
    kept = wilcoxon(d28_b / ep(b, "blood_cart_peak_per_ul"), d28_a / ep(a, "blood_cart_peak_per_ul"), "greater")
    peak_day = {"median_a": _median(ep(a, "blood_cart_peak_day")), "median_b": _median(ep(b, "blood_cart_peak_day"))}
    crit = {"ifng_higher": ifng["p"] < ALPHA, "il6_higher": il6["p"] < ALPHA,
            "ifng_earlier": ifng_day["p"] < ALPHA, "il6_earlier": il6_day["p"] < ALPHA,
            "crs_earlier": onset["p"] < ALPHA and onset["median_a"] < onset["median_b"],
            "41bb_persists": d28["p"] < ALPHA}
    lines = [f"{n} paired patients (same seeds and covariates), dose {DOSE:.0e}, burden {BURDEN:.2g}; "
             "CD28 vs 4-1BB, medians; one-sided paired tests",
             f"plasma IFN-g peak {_f(ifng['median_a'])} vs {_f(ifng['median_b'])} pg/mL (CD28 higher in "
             f"{ifng['a_gt_b']}/{ifng['n_pairs']}, Wilcoxon {_p(ifng['p'])}) [{'ok' if crit['ifng_higher'] else 'NO'}]",
             f"plasma IL-6 peak {_f(il6['median_a'])} vs {_f(il6['median_b'])} pg/mL (CD28 higher in "
             f"{il6['a_gt_b']}/{il6['n_pairs']}, Wilcoxon {_p(il6['p'])}) [{'ok' if crit['il6_higher'] else 'NO'}]",
             f"IFN-g peak day {_f(ifng_day['median_a'])} vs {_f(ifng_day['median_b'])} (CD28 earlier in "
             f"{ifng_day['a_lt_b']}, later in {ifng_day['a_gt_b']}, sign test {_p(ifng_day['p'])}) "
             f"[{'ok' if crit['ifng_earlier'] else 'NO'}]",
             f"IL-6 peak day {_f(il6_day['median_a'])} vs {_f(il6_day['median_b'])} (CD28 earlier in "
             f"{il6_day['a_lt_b']}, later in {il6_day['a_gt_b']}, sign test {_p(il6_day['p'])}) "
             f"[{'ok' if crit['il6_earlier'] else 'NO'}]",
             f"CRS onset day {_f(onset['median_a'])} vs {_f(onset['median_b'])} (CRS in {onset['crs_a']} vs "
             f"{onset['crs_b']}; CD28 earlier in {onset['a_lt_b']}, later in {onset['a_gt_b']}, no CRS = later; "
             f"sign test {_p(onset['p'])}; Wilcoxon over {int(both.sum())} with both {_p(onset['wilcoxon_both_p'])}) "
             f"[{'ok' if crit['crs_earlier'] else 'NO'}]",
             f"blood CAR-T day 28 {_f(d28['median_a'])} (4-1BB) vs {_f(d28['median_b'])} (CD28) cells/uL (4-1BB higher "
             f"in {d28['a_gt_b']}/{d28['n_pairs']}, Wilcoxon {_p(d28['p'])}) [{'ok' if crit['41bb_persists'] else 'NO'}]",
             f"info: blood CAR-T peak {_f(peak['median_a'])} vs {_f(peak['median_b'])} /uL on day "
             f"{_f(peak_day['median_a'])} vs {_f(peak_day['median_b'])}; day-28 level / peak {_f(kept['median_b'])} "
             f"(CD28) vs {_f(kept['median_a'])} (4-1BB), Wilcoxon for 4-1BB higher {_p(kept['p'])}"]
    figs = {"n_pairs": n, "ifng_peak": ifng, "il6_peak": il6, "ifng_peak_day": ifng_day, "il6_peak_day": il6_day,
            "crs_onset": onset, "blood_cart_d28": d28, "blood_cart_d28_over_peak": kept, "blood_cart_peak": peak,
            "blood_cart_peak_day": peak_day, "criteria": crit}
    diag = ""
    if not all(crit.values()):
        diag = "failed: " + ", ".join(k for k, v in crit.items() if not v)
    return result(2, "CD28 vs 4-1BB, paired, one-sided p < 0.05 each: higher IFN-g and IL-6 peaks, earlier IFN-g and "
                     "IL-6 peaks, earlier CRS onset (sign test, no CRS counted as later, and a lower median); "
                     "higher blood CAR-T at day 28 with 4-1BB", all(crit.values()), figs, lines, diag)


# -- check 3 ---------------------------------------------------------------------------------------------

def check_burden(source: Path, own: bool, runs=None) -> dict:
    """Trend of CRS any / ICANS any (and >= 3, for information) over tumour burden.

    ``runs`` (from :func:`read_runs` of the same folder) adds per-level diagnostics: plasma IL-6 peak, CAR-T
    cells that entered the patch, patients whose patch never held more than one CAR-T cell.
    """
    from analysis.batch import close_files, open_batch
    from analysis.risk import binned_risk, trend_test
    ds = open_batch(source, progress=False)
    ep = ds.abm.endpoints()
    x = np.asarray(ep["burden_cells"].values, float)
    bins = None
    if own:
        lv = np.log10(np.array(sorted(set(np.round(x, -3)))))
        bins = 10 ** np.concatenate([[lv[0] - 0.5], (lv[:-1] + lv[1:]) / 2, [lv[-1] + 0.5]])
    out, lines, crit = {}, [], {}
    lines.append(f"{len(x)} runs from {source} (burden {x.min():.2g}-{x.max():.2g} cells); Cochran-Armitage "
                 "over burden bins (scores log10 burden) and Firth-logistic slope per 10-fold burden")
    for kind in ("crs", "icans"):
        g = np.asarray(ep[f"{kind}_max_grade"].values, float)
        for k in (1, 3):
            ev = np.where(np.isnan(g), np.nan, (g >= k).astype(float))
            tt = trend_test(x, ev, bins=bins)
            br = binned_risk(x, ev, bins)
            key = f"{kind}_{'any' if k == 1 else 'ge3'}"
            risks = [(float(r.x_mid), int(r.k), int(r.n), float(r.lo), float(r.hi)) for r in br.itertuples()]
            ps = [kk / nn for _, kk, nn, _, _ in risks]
            out[key] = {**{c: tt[c] for c in ("n", "k", "ca_z", "ca_p_increasing", "slope", "slope_lo",
                                              "slope_hi", "slope_p", "odds_ratio", "note")},
                        "bins": [{"burden": m, "k": kk, "n": nn, "lo": lo, "hi": hi} for m, kk, nn, lo, hi in risks],
                        "nondecreasing": bool(all(p2 >= p1 for p1, p2 in zip(ps, ps[1:])))}
            binstr = ", ".join(f"{m:.0e}: {kk}/{nn} ({100 * kk / nn:.0f} %, {100 * lo:.0f}-{100 * hi:.0f})"
                               for m, kk, nn, lo, hi in risks)
            tag = ""
            if k == 1:
                crit[key] = bool(tt["ca_p_increasing"] < ALPHA)
                tag = f" [{'ok' if crit[key] else 'NO'}]"
            lines.append(f"{kind.upper()} {'any grade' if k == 1 else 'grade >= 3'}: {binstr}; CA z = "
                         f"{_f(tt['ca_z'])}, one-sided {_p(tt['ca_p_increasing'])}; slope {_f(tt['slope'])} "
                         f"[{_f(tt['slope_lo'])}, {_f(tt['slope_hi'])}] per decade, LR {_p(tt['slope_p'])}"
                         f"{' (' + tt['note'] + ')' if tt['note'] else ''}{tag}"
                         + ("" if k == 1 else " (info)"))
    close_files()
    if runs:
        levels = np.array(sorted({r["burden"] for r in runs}))
        edges = bins if bins is not None else \
            10.0 ** np.arange(np.floor(np.log10(levels.min())), np.ceil(np.log10(levels.max())) + 1)
        diag = []
        for lo_e, hi_e in zip(edges[:-1], edges[1:]):
            rs = [r for r in runs if lo_e <= r["burden"] < hi_e or (hi_e == edges[-1] and r["burden"] == hi_e)]
            if not rs:
                continue
            il6 = _median([r["ep"]["plasma_il6_peak_pg_ml"] for r in rs])
            ent = _median([np.nanmax(r["ts"]["cart_entered_total"]) for r in rs])
            none = sum(1 for r in rs if np.nanmax(r["ts"]["n_cart"]) <= 1)
            scale = _median([r["burden"] / r["config"]["tumour"]["initial_cells"] for r in rs])
            mid = math.sqrt(lo_e * hi_e)
            diag.append({"burden": mid, "n": len(rs), "patient_cells_per_patch_cell": scale,
                         "il6_peak_median": il6, "cart_entered_patch_median": ent, "patch_never_above_1_cart": none})
            lines.append(f"info, burden ~{mid:.1g} ({len(rs)} runs, S = {scale:.2g} patient cells per patch cell): "
                         f"median plasma IL-6 peak {_f(il6)} pg/mL; median CAR-T cells that entered the patch "
                         f"{_f(ent)}; patch never held > 1 CAR-T cell in {none}/{len(rs)}")
        out["per_level"] = diag
    res = result(3, "Cochran-Armitage one-sided p < 0.05 for a rise with burden of CRS any grade and of ICANS any grade",
                 all(crit.values()), {**out, "criteria": crit, "source": str(source)}, lines,
                 "" if all(crit.values()) else "failed: " + ", ".join(k for k, v in crit.items() if not v))
    res["_ep"] = (x, {k: np.asarray(ep[f"{k}_max_grade"].values, float) for k in ("crs", "icans")}, bins)
    return res


# -- check 4 ---------------------------------------------------------------------------------------------

def check_il6_source(runs) -> dict:
    cd28 = [r for r in runs if r["config"]["product"].get("preset") == "cd28" and r["config"]["run"]["end_day"] >= 28]
    f = np.array([r["ep"].get("il6_myeloid_fraction", math.nan) for r in cd28])
    ok = ~np.isnan(f)
    below = [(r["run_id"], float(x)) for r, x in zip(cd28, f) if x == x and x < IL6_MYELOID_MIN]
    figs = {"n": int(ok.sum()), "min": float(np.min(f[ok])) if ok.any() else math.nan,
            "median": _median(f), "q05": float(np.quantile(f[ok], 0.05)) if ok.any() else math.nan,
            "n_below": len(below), "below": below[:10], "nan": int((~ok).sum())}
    passed = ok.any() and not below and figs["nan"] == 0
    lines = [f"il6_myeloid_fraction over {figs['n']} CD28 patients (all arms and burdens, full course): "
             f"median {figs['median']:.4f}, 5th percentile {figs['q05']:.4f}, min {figs['min']:.4f}; "
             f"below {IL6_MYELOID_MIN:.2f}: {len(below)}" + (f"; undefined (no IL-6 secreted): {figs['nan']}"
                                                            if figs["nan"] else "")]
    if below:
        lines.append("  below: " + ", ".join(f"{i} {x:.3f}" for i, x in below[:5]))
    return result(4, f"il6_myeloid_fraction >= {IL6_MYELOID_MIN:.2f} in every CD28 patient", passed, figs, lines)


# -- check 5 ---------------------------------------------------------------------------------------------

def _window(r, t0, hours):
    t = r["ts"]["time"]
    return (t >= t0 - 1e-9) & (t <= t0 + hours / 24.0 + 1e-9)


def _record_h(r):
    t = r["ts"]["time"]
    return float(np.median(np.diff(t))) * 24.0 if t.size > 1 else 1.0


def _first_dose_day(r):
    t, d = r["ts"]["time"], r["ts"]["tocilizumab_doses"]
    ev = [e[0] for e in r["events"] if e[1] == "tocilizumab"]
    if ev:
        return min(ev)
    sel = d > 0
    return float(t[sel][0]) if sel.any() else math.nan


def tocilizumab_pairs(runs):
    """(tcz run, no-tcz run, first-dose day) for the CD28 patients given tocilizumab in the default arm."""
    a, b = _paired(runs, "cd28", "cd28_no_tcz")
    out = []
    for x, y in zip(a, b):
        td = _first_dose_day(x)
        if td == td:
            out.append((x, y, td))
    return out


def check_tocilizumab(runs) -> dict:
    a, b = _paired(runs, "cd28", "cd28_no_tcz")
    pairs = tocilizumab_pairs(runs)
    H = TCZ_WINDOW_H
    fever, hypo, press, e_sys, il6max, il6_at, ratio, ic_after = ([], []), ([], []), ([], []), ([], []), \
        ([], []), [], [], ([], [])
    for x, y, td in pairs:
        for i, r in enumerate((x, y)):
            w = _window(r, td, H)
            ts, dh = r["ts"], _record_h(r)
            fever[i].append(float(np.sum(ts["temperature_c"][w] >= 38.0)) * dh)
            hypo[i].append(float(np.sum((ts["map_mmhg"][w] < 65.0) | (ts["hypotension_support"][w] >= 1))) * dh)
            press[i].append(float(np.sum(ts["vasopressors"][w] >= 1)) * dh)
            e_sys[i].append(float(np.nanmean(ts["endothelial_activation_systemic"][w])))
            il6max[i].append(float(np.nanmax(ts["plasma_il6"][w])))
            after = r["ts"]["time"] >= td - 1e-9
            ic_after[i].append(bool(np.nanmax(ts["icans_grade"][after]) >= 1))
            if i == 0:
                j = int(np.argmax(w))
                il6_at.append(float(ts["plasma_il6"][max(j - 1, 0)]))
        ratio.append(il6max[0][-1] / il6_at[-1] if il6_at[-1] > 0 else math.nan)
    n = len(pairs)
    same = 0.0          # the two arms of a patient must be identical before the first dose
    for x, y, td in pairs:
        pre = x["ts"]["time"] < td - 1e-9
        for k in ("plasma_il6", "temperature_c", "map_mmhg", "blood_cart_per_ul", "icans_grade"):
            if pre.any():
                same = max(same, float(np.nanmax(np.abs(x["ts"][k][pre] - y["ts"][k][pre]))))
    tf = wilcoxon(fever[0], fever[1], "less")
    th = wilcoxon(hypo[0], hypo[1], "less")
    tp = wilcoxon(press[0], press[1], "less")
    te = wilcoxon(e_sys[0], e_sys[1], "less")
    ti = wilcoxon(il6max[0], il6max[1], "greater")
    mc = mcnemar_exact(ic_after[0], ic_after[1])
    icans_any = mcnemar_exact([r["ep"]["icans_max_grade"] >= 1 for r in a], [r["ep"]["icans_max_grade"] >= 1 for r in b])
    icans_2 = mcnemar_exact([r["ep"]["icans_max_grade"] >= 2 for r in a], [r["ep"]["icans_max_grade"] >= 2 for r in b])
    rise = int(np.sum(np.array(ratio) > 1.0))
    crit = {"fever_quenched": tf["p"] < ALPHA, "hypotension_quenched": th["p"] < ALPHA,
            "il6_rises": ti["p"] < ALPHA and _median(ratio) > 1.0,
            "icans_not_prevented": mc["a_events"] >= 1 and mc["p_a_fewer"] >= ALPHA}
    lines = [f"{len(a)} paired CD28 patients, default clinician vs preset no_tocilizumab; {n} got tocilizumab "
             f"(first dose median day {_f(_median([p[2] for p in pairs]))}); the arms are identical until that dose, "
             f"compared over the {H:g} h after it (with vs without, medians; paired one-sided Wilcoxon); largest "
             f"difference between the arms before the dose {same:.1g}",
             f"fever (T >= 38 C): {_f(tf['median_a'])} vs {_f(tf['median_b'])} h (less with tocilizumab in "
             f"{tf['a_lt_b']}/{tf['n_pairs']}, {_p(tf['p'])}) [{'ok' if crit['fever_quenched'] else 'NO'}]",
             f"hypotension (MAP < 65 or on fluids/vasopressors): {_f(th['median_a'])} vs {_f(th['median_b'])} h (less in "
             f"{th['a_lt_b']}, more in {th['a_gt_b']}, {_p(th['p'])}) [{'ok' if crit['hypotension_quenched'] else 'NO'}]; "
             f"vasopressor hours {sum(press[0]):.0f} vs {sum(press[1]):.0f} in all ({_p(tp['p'])}); mean systemic "
             f"endothelial activation {_f(te['median_a'])} vs {_f(te['median_b'])} ({_p(te['p'])})",
             f"plasma IL-6 max in the window {_f(ti['median_a'])} vs {_f(ti['median_b'])} pg/mL (higher with tocilizumab "
             f"in {ti['a_gt_b']}/{ti['n_pairs']}, {_p(ti['p'])}); with tocilizumab it rose above its level at the dose "
             f"in {rise}/{n} (median {_f(_median(ratio))}x) [{'ok' if crit['il6_rises'] else 'NO'}]",
             f"ICANS after the first dose: {mc['a_events']}/{n} with vs {mc['b_events']}/{n} without (discordant "
             f"{mc['a_only']} with only / {mc['b_only']} without only; exact one-sided p that tocilizumab lowers it "
             f"{mc['p_a_fewer']:.2g}) [{'ok' if crit['icans_not_prevented'] else 'NO'}]",
             f"info: all {len(a)} patients, ICANS any {icans_any['a_events']} vs {icans_any['b_events']}, "
             f">= 2 {icans_2['a_events']} vs {icans_2['b_events']}"]
    figs = {"n_patients": len(a), "n_tocilizumab": n, "fever_h": tf, "hypotension_h": th, "vasopressor_h": tp,
            "systemic_endothelial_activation": te, "il6_max": ti, "il6_rise_ratio_median": _median(ratio),
            "il6_rose": rise, "icans_after_dose": mc, "icans_any_all": icans_any, "icans_ge2_all": icans_2,
            "window_h": H, "max_difference_before_dose": same, "criteria": crit}
    res = result(5, f"over the {H:g} h after the first tocilizumab dose, paired with the same patient without "
                    "tocilizumab: fewer fever hours and fewer hypotension hours (one-sided p < 0.05 each), higher "
                    "plasma IL-6 (p < 0.05, median rise above the level at the dose > 1x); ICANS still occurs after "
                    "tocilizumab (>= 1 patient) and is not significantly lower (exact McNemar one-sided p >= 0.05)",
                 n > 0 and all(crit.values()), figs, lines,
                 "" if n and all(crit.values()) else ("no patient got tocilizumab" if not n else
                                                      "failed: " + ", ".join(k for k, v in crit.items() if not v)))
    res["_pairs"] = pairs
    return res


# -- check 6 ---------------------------------------------------------------------------------------------

def check_icans_crs(runs) -> dict:
    on = [r for r in runs if r["config"]["brain"].get("endothelial_response", True)
          and r["config"]["run"]["end_day"] >= 28]
    both, after, lags, without, before_inf = 0, 0, [], [], 0
    for r in on:
        ic, crs = r["ep"]["icans_onset_day"], r["ep"]["crs_onset_day"]
        if r["ep"]["icans_max_grade"] >= 1:
            if ic < 0:
                before_inf += 1
            if crs == crs:
                both += 1
                lags.append(ic - crs)
                after += int(ic > crs)
            else:
                without.append(r["run_id"])
    off_a, on_a = _paired(runs, "cd28_endo_off", "cd28")
    off2 = sum(1 for r in off_a if r["ep"]["icans_max_grade"] >= 2)
    off1 = sum(1 for r in off_a if r["ep"]["icans_max_grade"] >= 1)
    on2 = sum(1 for r in on_a if r["ep"]["icans_max_grade"] >= 2)
    off_max = max((r["ep"]["icans_max_grade"] for r in off_a), default=math.nan)
    eoff = _median([r["ep"].get("brain_barrier_activation_max", math.nan) for r in off_a])
    eon = _median([r["ep"].get("brain_barrier_activation_max", math.nan) for r in on_a])
    crit = {"icans_after_crs": both == after and not without, "off_no_grade2": off2 == 0 and len(off_a) > 0}
    lines = [f"{len(on)} runs with the endothelial response on (all arms, all burdens): ICANS in "
             f"{both + len(without)}; with both CRS and ICANS {both}, ICANS onset after CRS onset in {after}/{both} "
             f"(lag median {_f(_median(lags))} d, min {_f(min(lags) if lags else math.nan)} d); ICANS without CRS "
             f"{len(without)}; ICANS before infusion {before_inf} [{'ok' if crit['icans_after_crs'] else 'NO'}]",
             f"endothelial response off, {len(off_a)} patients: ICANS >= 2 in {off2} (any {off1}, max grade "
             f"{_f(off_max)}); the same patients with it on: ICANS >= 2 in {on2}; median peak barrier activation "
             f"A {_f(eoff)} off vs {_f(eon)} on [{'ok' if crit['off_no_grade2'] else 'NO'}]"]
    figs = {"n_on": len(on), "with_both": both, "icans_after_crs": after, "lag_median_d": _median(lags),
            "lag_min_d": min(lags) if lags else math.nan, "icans_without_crs": len(without),
            "icans_without_crs_runs": without[:10], "icans_before_infusion": before_inf,
            "off_n": len(off_a), "off_icans_ge2": off2, "off_icans_any": off1, "off_max_grade": off_max,
            "on_paired_icans_ge2": on2, "barrier_activation_max_off": eoff, "barrier_activation_max_on": eon,
            "criteria": crit}
    return result(6, "every run (endothelial response on) with ICANS has CRS and ICANS onset > CRS onset; "
                     "with brain.endothelial_response = false no ICANS grade >= 2",
                  all(crit.values()), figs, lines,
                  "" if all(crit.values()) else "failed: " + ", ".join(k for k, v in crit.items() if not v))


# -- check 8 ---------------------------------------------------------------------------------------------

def _tls_recompute(r):
    """Cairo-Bishop flags recomputed from the recorded labs (not from temperature) at every record."""
    from abm.model.events import cairo_bishop_criteria
    ev = r["config"]["events"]
    lo, hi = ev["tls_window_days"]
    infusion = r["config"]["blood"]["infusion_day"]
    ts = r["ts"]
    labs = ("uric_acid_mg_dl", "potassium_mmol_l", "phosphate_mg_dl", "calcium_mg_dl")
    base = {k: float(ts[k][0]) for k in labs}
    crit = np.zeros(ts["time"].size)
    for j, t in enumerate(ts["time"]):
        if lo <= t - infusion <= hi:
            crit[j] = len(cairo_bishop_criteria({k: float(ts[k][j]) for k in labs}, base, ev["tls_relative_change"]))
    return crit, crit >= ev["tls_min_criteria"]


def tls_controls(lysis_cells: float = 5e11) -> list[dict]:
    """Synthetic controls through the full patient model (default parameters, no cell rules): tumour lysis
    without fever, fever without lysis, and both. A synthetic process puts ``lysis_cells`` patient cells of
    lysis into blood evenly over days 1-2 and / or a patch IFN-gamma / GM-CSF surge on days 0.5-3 (the fever
    drive of scripts/validate_icans.py --synthetic). Returns run-like dicts (``ts``, ``config``, ``ep``)."""
    from abm.config import config_from_dict
    from abm.model.blood import patient_scale
    from abm.model.patient import PATIENT_PROCESSES
    from abm.process import Process
    from abm.build import build_simulation
    out = []
    for name, lyse, hot in (("lysis, no fever", True, False), ("fever, no lysis", False, True),
                            ("lysis and fever", True, True)):
        cfg = config_from_dict({"lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 100},
                                "patient": {"tumour_burden_cells": 1e12},
                                "run": {"seed": 7, "start_day": -1.0, "end_day": 7.0}})
        S, vp, dt = patient_scale(cfg), cfg.blood.plasma_volume_ml, cfg.run.dt_s
        per_step = lysis_cells / (1.0 / (cfg.run.dt_min / 1440.0)) / S

        class Synthetic(Process):
            phase = "fields"

            def step(self, state, lyse=lyse, hot=hot):
                sc, t = state.scalars, state.time_day
                sc["tumour_lysed_step"] = per_step if lyse and 1.0 <= t < 2.0 else 0.0
                on = hot and 0.5 <= t < 3.0
                for sp, c, hl in (("ifng", 600.0, 30.0), ("gmcsf", 200.0, 40.0)):
                    sc[f"exchange_{sp}_pg"] = math.log(2) / (hl * 60) * c * vp * dt / S if on else 0.0
        sim = build_simulation(cfg, processes=[Synthetic, *PATIENT_PROCESSES])
        rec = {k: [] for k in ("time", "uric_acid_mg_dl", "potassium_mmol_l", "phosphate_mg_dl", "calcium_mg_dl",
                               "tls_lab", "tls_criteria", "temperature_c")}

        def grab(x, rec=rec):
            rec["time"].append(x.state.time_day)
            for k in list(rec)[1:]:
                rec[k].append(float(x.state.scalars.get(k, math.nan)))
        grab(sim)
        sim.add_writer(cfg.run.every_steps(60.0), grab)
        sim.run()
        ts = {k: np.asarray(v, float) for k, v in rec.items()}
        out.append({"run_id": f"synthetic: {name}", "ts": ts, "config": cfg.to_dict(), "lysis": lyse, "fever": hot,
                    "ep": {"tls_lab_any": sim.state.scalars["tls_lab_any"],
                           "temperature_max_c": float(np.nanmax(ts["temperature_c"]))}})
    return out


def check_events(runs, with_controls: bool = True) -> dict:
    ir_runs = ir_overlap = crs_in = 0
    ir_fever_records = ir_fever_crs = 0
    ir_windows = []
    for r in runs:
        starts = [e[0] for e in r["events"] if e[1] == "infusion_reaction"]
        if not starts:
            continue
        ir_runs += 1
        ends = [e[0] for e in r["events"] if e[1] == "infusion_reaction_resolved"]
        s0 = starts[0]
        e0 = min([e for e in ends if e >= s0], default=math.inf)
        ir_windows.append((s0, e0))
        onsets = [e[0] for e in r["events"] if e[1] == "crs_onset"]
        crs_in += sum(1 for t in onsets if s0 - 1e-9 <= t < e0 - 1e-9)
        ts = r["ts"]
        act = ts["infusion_reaction_active"] >= 1
        fev = act & (ts["temperature_c"] >= 38.0)
        ir_fever_records += int(fev.sum())
        ir_fever_crs += int(np.sum(fev & (ts["crs_grade"] >= 1)))
        ir_overlap += int(np.any(act & (ts["crs_grade"] >= 1)))
    n_rec = n_flag_mis = n_crit_mis = any_mis = 0
    tls_any = fever_no_tls = tls_runs_recomputed = 0
    fever_records = 0
    for r in runs:
        crit, flag = _tls_recompute(r)
        ts = r["ts"]
        rec_flag = ts["tls_lab"] >= 1
        n_rec += flag.size
        n_flag_mis += int(np.sum(flag != rec_flag))
        n_crit_mis += int(np.sum(crit != ts["tls_criteria"]))
        tls_runs_recomputed += int(flag.any())
        tls_any += int(r["ep"].get("tls_lab_any", 0) >= 1)
        any_mis += int(bool(flag.any()) != bool(r["ep"].get("tls_lab_any", 0) >= 1))
        fev = ts["temperature_c"] >= 38.0
        fever_records += int(fev.sum())
        fever_no_tls += int(np.sum(fev & ~flag & ~rec_flag))
    controls = tls_controls() if with_controls else []
    ctrl_lines, ctrl_ok = [], True
    for c in controls:
        crit, flag = _tls_recompute(c)
        mis = int(np.sum(flag != (c["ts"]["tls_lab"] >= 1))) + int(np.sum(crit != c["ts"]["tls_criteria"]))
        tls = c["ep"]["tls_lab_any"] >= 1
        ok = mis == 0 and tls == c["lysis"] and bool(flag.any()) == c["lysis"]
        ctrl_ok = ctrl_ok and ok
        ctrl_lines.append(f"{c['run_id'].split(': ')[1]}: T max {c['ep']['temperature_max_c']:.1f} C, TLS "
                          f"{'yes' if tls else 'no'} (max criteria {int(np.max(crit))}), record mismatches {mis}")
    crit_ = {"no_crs_onset_in_reaction": crs_in == 0 and ir_fever_crs == 0 and ir_runs > 0,
             "tls_from_labs": n_flag_mis == 0 and n_crit_mis == 0 and any_mis == 0 and ctrl_ok}
    lines = [f"infusion reactions in {ir_runs} of {len(runs)} runs (the mech_infusion arm forces one with fever): "
             f"CRS onsets inside a reaction window {crs_in}; hourly records with the reaction's fever (>= 38 C) "
             f"{ir_fever_records}, graded CRS >= 1 in {ir_fever_crs}; runs with CRS >= 1 during a reaction "
             f"{ir_overlap} [{'ok' if crit_['no_crs_onset_in_reaction'] else 'NO'}]",
             f"TLS recomputed with the Cairo-Bishop criteria from the recorded uric acid, K, phosphate and calcium "
             f"(baseline = first record; no temperature): {n_rec} records in {len(runs)} runs, flag differs in "
             f"{n_flag_mis}, criteria count differs in {n_crit_mis}; runs with TLS: endpoint {tls_any}, recomputed "
             f"{tls_runs_recomputed} (disagree {any_mis}); febrile records without TLS {fever_no_tls}/{fever_records} "
             f"[{'ok' if crit_['tls_from_labs'] else 'NO'}]"]
    if controls:
        lines.append("synthetic controls through the patient model (5e11 cells lysed on day 1-2 / a cytokine "
                     "surge days 0.5-3): " + "; ".join(ctrl_lines))
    figs = {"runs": len(runs), "infusion_reaction_runs": ir_runs, "crs_onsets_in_reaction": crs_in,
            "reaction_fever_records": ir_fever_records, "reaction_fever_records_with_crs": ir_fever_crs,
            "runs_crs_during_reaction": ir_overlap, "tls_records": n_rec, "tls_flag_mismatches": n_flag_mis,
            "tls_criteria_mismatches": n_crit_mis, "tls_runs_endpoint": tls_any,
            "tls_runs_recomputed": tls_runs_recomputed, "tls_run_mismatches": any_mis,
            "febrile_records": fever_records, "febrile_records_without_tls": fever_no_tls,
            "synthetic_controls": ctrl_lines, "criteria": crit_}
    diag = ""
    if not all(crit_.values()):
        diag = "failed: " + ", ".join(k for k, v in crit_.items() if not v)
    if tls_any == 0:
        diag = (diag + "; " if diag else "") + ("no simulated patient met the TLS lab criteria; TLS itself is "
                                                "shown by the synthetic controls")
    return result(8, "no CRS onset (and no CRS grade >= 1 on the reaction's fever) inside any infusion-reaction "
                     "window (>= 1 reaction seen); the recorded TLS flags equal the Cairo-Bishop criteria "
                     "recomputed from the recorded labs at every record, and synthetic lysis gives TLS while a synthetic fever "
                     "without lysis does not",
                  all(crit_.values()), figs, lines, diag)


# -- figures -------------------------------------------------------------------------------------------

def _band(runs, name, grid):
    ys = []
    for r in runs:
        t, y = r["ts"]["time"], r["ts"][name]
        ys.append(np.interp(grid, t, y, left=np.nan, right=np.nan))
    ys = np.array(ys)
    return np.nanpercentile(ys, 25, axis=0), np.nanmedian(ys, axis=0), np.nanpercentile(ys, 75, axis=0)


def make_figures(results, runs, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from analysis.risk import fit_logistic, wilson_interval
    made = []
    r1 = results.get(1)
    if r1 and "_course" in r1:
        from abm.config import load_config
        ld = load_config(ROOT / "configs" / BASE).lymphodepletion
        fig, ax = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
        d = np.linspace(0, 0.97, 200)
        ax[0].plot(d, [ld.steady_state_ratio(x) for x in d], color="#444", label="closed form 1/(1 - f d)")
        dep = sorted((float(k), v) for k, v in r1["figures"]["depths"].items())
        ax[0].plot([k for k, _ in dep], [v for _, v in dep], "o", color="#d95f02",
                   label="simulated steady state (blood model)")
        ax[0].axhspan(*IL7_BAND, color="#1b9e77", alpha=0.15, label="MODEL.md 10.1: 2.5-3x")
        ax[0].axvline(ld.depth, color="#1b9e77", ls="--", lw=1, label=f"default depth {ld.depth:g}")
        ax[0].set_xlabel("lymphodepletion depth (fraction of lymphocytes removed)")
        ax[0].set_ylabel("IL-7/IL-15 steady state / baseline")
        ax[0].legend(fontsize=8)
        ax[0].set_title("IL-7/IL-15 vs lymphodepletion depth")
        t, y = r1["_course"]
        ax[1].plot(t, y, color="#7570b3", label="with lymphocyte recovery (typical patient)")
        ax[1].axhline(r1["figures"]["closed_form_ratio"], color="#444", ls=":", label="held depletion (closed form)")
        ax[1].axvspan(-5, -2, color="#999", alpha=0.2, label="Flu/Cy days -5..-3")
        ax[1].set_xlabel("day after infusion")
        ax[1].set_ylabel("IL-7/IL-15 / baseline")
        ax[1].legend(fontsize=8, loc="center right")
        ax[1].set_title("course at the default depth")
        fig.savefig(out / "il7_15_vs_depth.png", dpi=110)
        plt.close(fig)
        made.append("il7_15_vs_depth.png")
    a, b = _paired(runs, "cd28", "41bb")
    if a:
        grid = np.linspace(-1, 28, 29 * 12 + 1)
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.3), layout="constrained")
        for ax, name, lab in zip(axes, ("plasma_il6", "plasma_ifng", "blood_cart_per_ul"),
                                 ("plasma IL-6 (pg/mL)", "plasma IFN-gamma (pg/mL)", "blood CAR-T (cells/uL)")):
            for rs, arm, col in ((a, "CD28", "#d95f02"), (b, "4-1BB", "#1b9e77")):
                q1, md, q3 = _band(rs, name, grid)
                ax.plot(grid, md, color=col, label=f"{arm} median (n = {len(rs)})")
                ax.fill_between(grid, q1, q3, color=col, alpha=0.2, lw=0, label=f"{arm} IQR")
            ax.set_yscale("log")
            ax.set_xlabel("day after infusion")
            ax.set_ylabel(lab)
            ax.legend(fontsize=8)
        axes[0].set_title(f"same patients, dose {DOSE:.0e}, burden {BURDEN:.2g}")
        fig.savefig(out / "cd28_vs_41bb.png", dpi=110)
        plt.close(fig)
        made.append("cd28_vs_41bb.png")
    r3 = results.get(3)
    if r3 and "_ep" in r3:
        x, g, bins = r3["_ep"]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
        for ax, kind in zip(axes, ("crs", "icans")):
            for k, col in ((1, "#fc8d59"), (3, "#b30000")):
                ev = (g[kind] >= k).astype(float)
                ev[np.isnan(g[kind])] = np.nan
                from analysis.risk import binned_risk
                br = binned_risk(x, ev, bins)
                ax.errorbar(br["x_mid"] * (0.93 if k == 1 else 1.07), br["p"], yerr=[br["p"] - br["lo"], br["hi"] - br["p"]], fmt="o",
                            color=col, capsize=3, label=f"{'any grade' if k == 1 else 'grade >= 3'} (95 % Wilson)")
                fit = fit_logistic(x, ev)
                if fit is not None:
                    gx = np.logspace(np.log10(np.nanmin(x)), np.log10(np.nanmax(x)), 100)
                    p, lo, hi = fit.predict(gx)
                    ax.plot(gx, p, color=col, lw=1.2)
                    ax.fill_between(gx, lo, hi, color=col, alpha=0.12, lw=0)
            ax.set_xscale("log")
            ax.set_ylim(-0.05, 1.05)
            ax.set_xlabel("tumour burden (cells)")
            ax.set_ylabel(f"P({kind.upper()})")
            ax.set_title(f"{kind.upper()} risk vs burden (Firth-logistic fit, 95 % band)")
            ax.legend(fontsize=8)
        fig.savefig(out / "risk_vs_burden.png", dpi=110)
        plt.close(fig)
        made.append("risk_vs_burden.png")
    r5 = results.get(5)
    if r5 and r5.get("_pairs"):
        pairs = r5["_pairs"]
        rel = np.linspace(-1, 4, 121)
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
        for ax, name, lab, log in zip(axes, ("temperature_c", "map_mmhg", "plasma_il6"),
                                      ("temperature (C)", "MAP (mmHg)", "plasma IL-6 (pg/mL)"), (False, False, True)):
            for i, (arm, col) in enumerate((("tocilizumab", "#7570b3"), ("no tocilizumab", "#e7298a"))):
                ys = np.array([np.interp(td + rel, pr[i]["ts"]["time"], pr[i]["ts"][name], left=np.nan,
                                         right=np.nan) for *pr, td in pairs])
                ax.plot(rel, np.nanmedian(ys, 0), color=col, label=f"{arm} (n = {len(pairs)})")
                ax.fill_between(rel, np.nanpercentile(ys, 25, 0), np.nanpercentile(ys, 75, 0), color=col,
                                alpha=0.2, lw=0)
            ax.axvline(0, color="#444", ls="--", lw=1)
            if name == "temperature_c":
                ax.axhline(38, color="#999", lw=0.8)
            if name == "map_mmhg":
                ax.axhline(65, color="#999", lw=0.8)
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("days from the first tocilizumab dose")
            ax.set_ylabel(lab)
            ax.legend(fontsize=8)
        axes[0].set_title("same patients with and without tocilizumab: median, IQR")
        fig.savefig(out / "tocilizumab.png", dpi=110)
        plt.close(fig)
        made.append("tocilizumab.png")
    return made


# -- report -----------------------------------------------------------------------------------------------

def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def print_block(r: dict, file=sys.stdout) -> None:
    print(f"\n[{r['check']}] {r['mechanism']}  ->  {'PASS' if r['passed'] else 'FAIL'}", file=file)
    print(f"    check: {r['criterion']}", file=file)
    for line in r["lines"]:
        print(f"    {line}", file=file)
    if r["diagnosis"]:
        print(f"    note: {r['diagnosis']}", file=file)


def markdown(results: list[dict], meta: dict) -> str:
    out = ["# Mechanism validation (MODEL.md section 10)", "",
           f"Command: `{meta['command']}`  ", f"Date: {meta['date']}; commit {meta['commit']}"
           f"{' (+ uncommitted changes)' if meta['dirty'] else ''}; defaults fingerprint {meta['fingerprint']}  ",
           f"Runs: {meta['n_runs']} ({meta['workers']} workers), wall time {meta['wall_s']:.0f} s"
           + (" (analysis only; batches: " + ", ".join(f"{k} {v['wall_s']:.0f} s" for k, v in meta["batches"].items())
              + ")" if meta["analyse_only"] else "")
           + ("  \n**--quick: a smoke test, not the validation.**" if meta["quick"] else "")
           + (f"  \nRuns made by `{sb['command']}` on {sb['date']} (commit {sb['commit']}, defaults fingerprint "
              f"{sb['fingerprint']}), wall time {sb['wall_s']:.0f} s"
              if (sb := meta.get("simulated_by")) else ""), "",
           *[f"**WARNING: {w}**  " for w in meta.get("warnings", [])],
           "| # | mechanism | measured | result |", "|---|---|---|---|"]
    for r in results:
        meas = "<br>".join(line.replace("|", "\\|") for line in r["lines"])
        out.append(f"| {r['check']} | {r['mechanism']} | {meas} | **{'PASS' if r['passed'] else 'FAIL'}** |")
    out += ["", "Criteria:", ""]
    out += [f"{r['check']}. {r['criterion']}" + (f" -- note: {r['diagnosis']}" if r["diagnosis"] else "")
            for r in results]
    return "\n".join(out) + "\n"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--n", type=int, default=None, help="patients per arm of the paired batch (default 24; quick 4)")
    ap.add_argument("--n-burden", type=int, default=None, help="patients per burden level (default 16; quick 4)")
    ap.add_argument("--n-infusion", type=int, default=None, help="patients with a forced infusion reaction "
                                                                 "(default 10; quick 3)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default runs/validate_mechanisms/, quick: runs/validate_mechanisms_quick/)")
    ap.add_argument("--quick", action="store_true",
                    help="a few patients per arm: a smoke test of the script, NOT the validation")
    ap.add_argument("--resume", action="store_true", help="continue the batches already in --out")
    ap.add_argument("--burden-batch", type=Path, default=None,
                    help="an existing batch folder with burden varying (e.g. runs/tumor_burden) for check 3")
    ap.add_argument("--seed", type=int, default=20261001, help="root seed of the batches")
    ap.add_argument("--analyse-only", action="store_true", help="do not run anything; analyse the runs in --out")
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    a = ap.parse_args(argv)
    q = a.quick
    a.n = a.n or (4 if q else 24)
    a.n_burden = a.n_burden or (4 if q else 16)
    a.n_infusion = a.n_infusion or (3 if q else 10)
    a.out = (a.out or ROOT / "runs" / ("validate_mechanisms_quick" if q else "validate_mechanisms")).resolve()
    if a.analyse_only:
        a.resume = True
    return a


def main(argv=None) -> int:
    opts = parse_args(argv)
    t_start = time.perf_counter()

    def log(msg):
        if not opts.quiet:
            print(f"validate_mechanisms: {msg}", file=sys.stderr, flush=True)

    if opts.quick:
        log("--quick: a few patients per arm; a smoke test, NOT the validation")
    ran = run_batches(opts, log)
    t_runs = time.perf_counter() - t_start
    log("analysing ...")
    folders = ran["folders"]
    names = list(ARMS)
    runs = read_runs(folders["mech_paired"], lambda p, row: names[p])
    runs_burden = read_runs(folders["mech_burden"], lambda p, row: "burden") if "mech_burden" in folders else []
    runs_inf = read_runs(folders["mech_infusion"], lambda p, row: "infusion")
    everything = runs + runs_burden + runs_inf
    warnings = config_consistency(everything)
    if ran.get("fingerprint_runs") and ran["fingerprint_runs"] != ran["fingerprint"]:
        print(f"validate_mechanisms: note: the defaults now (fingerprint {ran['fingerprint']}) differ from those "
              f"the runs were made with ({ran['fingerprint_runs']}); the figures are those of the runs "
              "(see product_by_arm in results.json)", file=sys.stderr)
    arm_product = {}
    for r in everything:
        arm_product.setdefault(r["arm"], r["config"]["product"])
    results = {}
    results[1] = check_il7_15()
    results[2] = check_products(runs)
    results[3] = check_burden(opts.burden_batch or folders["mech_burden"], own=opts.burden_batch is None,
                              runs=runs_burden or read_runs(opts.burden_batch, lambda p, row: "burden"))
    results[4] = check_il6_source(runs + runs_burden)
    results[5] = check_tocilizumab(runs)
    results[6] = check_icans_crs(runs + runs_burden)
    results[7] = check_seizure_grade(everything)
    results[8] = check_events(everything)
    made = [] if opts.no_figures else make_figures(results, runs, opts.out)
    ordered = [results[k] for k in sorted(results)]
    print(f"\n== Mechanisms of MODEL.md section 10 at the default parameters ({len(everything)} runs) ==")
    if opts.quick:
        print("   (--quick: a smoke test with a few patients; these figures are NOT the validation)")
    for r in ordered:
        print_block(r)
    for w in warnings:
        print(f"\nWARNING: {w}")
    n_pass = sum(r["passed"] for r in ordered)
    wall = time.perf_counter() - t_start
    meta = {"command": " ".join(["python", "scripts/validate_mechanisms.py", *(argv if argv is not None else sys.argv[1:])]),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": _git("rev-parse", "--short", "HEAD"), "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "fingerprint": ran["fingerprint"], "fingerprint_runs": ran.get("fingerprint_runs"), "quick": opts.quick, "analyse_only": opts.analyse_only,
            "workers": opts.workers,
            "n": opts.n, "n_burden": opts.n_burden if not opts.burden_batch else None, "n_infusion": opts.n_infusion,
            "burden_batch": str(opts.burden_batch) if opts.burden_batch else None,
            "n_runs": len(everything), "wall_s": wall, "runs_wall_s": t_runs, "batches": ran["timing"],
            "figures": made, "passed": n_pass, "total": len(ordered), "warnings": warnings,
            "product_by_arm": arm_product}
    prev_file = opts.out / "results.json"
    if opts.analyse_only and prev_file.exists():     # keep the record of the command that made the runs
        prev = json.loads(prev_file.read_text()).get("meta", {})
        meta["simulated_by"] = prev.get("simulated_by") or (None if prev.get("analyse_only") else {
            k: prev.get(k) for k in ("command", "date", "commit", "dirty", "fingerprint", "wall_s", "runs_wall_s")})
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in ordered]
    (opts.out / "results.json").write_text(json.dumps(_clean({"meta": meta, "results": clean}), indent=1) + "\n")
    (opts.out / "results.md").write_text(markdown(clean, meta))
    print(f"\n{n_pass}/{len(ordered)} mechanisms pass; {len(everything)} runs, wall {wall:.0f} s "
          f"(simulation {t_runs:.0f} s); results in {opts.out}/results.json, results.md"
          + (f", figures {', '.join(made)}" if made else ""))
    return 0 if n_pass == len(ordered) and not warnings else 1


if __name__ == "__main__":
    from abm.errors import AbmError
    try:
        sys.exit(main())
    except AbmError as exc:
        print(f"validate_mechanisms: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\nvalidate_mechanisms: interrupted; continue with --resume", file=sys.stderr)
        sys.exit(130)
