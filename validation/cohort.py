"""The virtual cohorts of the mechanism checks: batch designs, running them, reading their runs.

Seeds are paired: with ``common_seeds`` every arm of a batch sees the same
virtual patients *and* the same random numbers, so two arms of one patient
are identical until the arms' rules first differ.

* ``mech_paired`` (``--n`` patients x 4 arms): CD28 and 4-1BB at the same dose
  (2e8) and burden (9.5e10), default clinician; CD28 with the clinician preset
  ``no_tocilizumab``; CD28 with ``brain.endothelial_response = false``. Weight,
  lymphodepletion depth, CD19 density and baseline endothelial activation are
  drawn per patient (as in configs/trial_cd28.toml) and the same in every arm.
* ``mech_burden`` (``--n-burden`` patients x 4 burdens 1e9, 1e10, 1e11, 1e12;
  CD28 2e8, same covariate draws); left out with ``--burden-batch``.
* ``mech_infusion`` (``--n-infusion`` patients, day -1 to 3): every patient has
  an infusion reaction with fever (``events.reaction_probability = 1``,
  ``events.fever_probability = 1``).

The batches are ordinary batch folders under ``<out>/batches/``, so an
interrupted validation resumes and ``abm analyze`` works on them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from validation import ROOT

BASE = "trial_patient.toml"            # relative to configs/
DOSE = 2e8                             # CAR-T cells, both products (check 2)
BURDEN = 9.5e10                        # cells (ZUMA-1 median MTV, Kimmel 2021)
BURDEN_LEVELS = (1e9, 1e10, 1e11, 1e12)

#: The cohorts (batch names), in the order they are run.
COHORTS = ("mech_paired", "mech_burden", "mech_infusion")

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


def batch_tables(opts) -> dict[str, dict]:
    """The batch definitions (name -> data for ``batch_from_dict``)."""
    pop = dict(COVARIATES)
    out = {}
    names = list(ARMS)
    out["mech_paired"] = {
        "batch": {"name": "mech_paired", "root_seed": opts.seed, "base": BASE, "common_seeds": True,
                  "description": "docs/model.md 10 validation: CD28 / 4-1BB / CD28 without tocilizumab / CD28 with "
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
                      "description": "docs/model.md 10.3 validation: CD28 2e8 at four tumour burdens, paired seeds",
                      "sweep": {"method": "grid", "patient.tumour_burden_cells": list(BURDEN_LEVELS)},
                      "population": {"size": opts.n_burden, **pop}},
            "product": {"preset": "cd28", "dose_cells": DOSE}}
    out["mech_infusion"] = {
        "batch": {"name": "mech_infusion", "root_seed": opts.seed + 2, "base": BASE,
                  "description": "docs/model.md 10.8 validation: every patient has an infusion reaction with fever",
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


def run_batches(opts, log, cohorts=COHORTS) -> dict:
    """Run (or with ``opts.resume`` continue) the batches of ``cohorts`` under ``<opts.out>/batches/``.

    The defaults fingerprint always covers every batch of the design, so that runs made for some
    checks and those made later for the others are known to share their parameters. Returns the batch
    folders, the per-batch timing and the fingerprints now and of the runs (``--analyse-only``).
    """
    from abm.batch import batch_from_dict
    from abm.batch.executors import LocalPool
    from abm.batch.runner import run_batch
    tables = batch_tables(opts)
    batches = {k: batch_from_dict(v, file=f"<validate_mechanisms:{k}>", root=ROOT / "configs")
               for k, v in tables.items()}
    folder = opts.out / "batches"
    stamp = opts.out / "defaults_fingerprint.txt"
    fp = defaults_fingerprint(batches)
    needed = {k: b for k, b in batches.items() if k in cohorts}
    existing = [k for k in needed if (folder / k / "manifest.csv").exists()]
    if existing and not opts.resume:
        raise SystemExit(f"validation: {folder} already holds runs ({', '.join(existing)}); "
                         "continue with --resume, or use another --out")
    if existing and stamp.exists() and stamp.read_text().strip() != fp and not opts.analyse_only:
        raise SystemExit(f"validation: the default parameters (or the batch designs) changed since "
                         f"the runs in {folder} were made (fingerprint {stamp.read_text().strip()} -> {fp}); "
                         "start a fresh --out")
    opts.out.mkdir(parents=True, exist_ok=True)
    if not stamp.exists() and (needed or opts.analyse_only):
        stamp.write_text(fp + "\n")
    tfile = opts.out / "timing.json"
    # a run of some checks keeps the timing of the batches it does not run
    timing = json.loads(tfile.read_text()) if tfile.exists() and (opts.resume or len(needed) < len(batches)) else {}
    if opts.analyse_only:
        made = stamp.read_text().strip() if stamp.exists() else None
        return {"folders": {k: folder / k for k in batches}, "timing": timing, "fingerprint": fp,
                "fingerprint_runs": made}
    if not needed:
        return {"folders": {k: folder / k for k in batches}, "timing": timing, "fingerprint": fp,
                "fingerprint_runs": fp}
    total = sum(b.n_runs for b in needed.values())
    log(f"{total} runs in {len(needed)} batches under {folder} ({opts.workers} workers)")
    tty = sys.stderr.isatty()
    with LocalPool(opts.workers) as pool:
        for name, b in needed.items():
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


def by_member(runs, arm):
    """The runs of one arm by virtual patient (batch member)."""
    return {r["member"]: r for r in runs if r["arm"] == arm}


def paired(runs, a, b):
    """The runs of arms ``a`` and ``b`` of the patients that have both, in the same order."""
    A, B = by_member(runs, a), by_member(runs, b)
    common = sorted(set(A) & set(B))
    return [A[m] for m in common], [B[m] for m in common]


def peak_day(r, name):
    """Day of the maximum of a series of run ``r`` (NaN if the series is all NaN)."""
    t, y = r["ts"]["time"], r["ts"][name]
    ok = ~np.isnan(y)
    return float(t[ok][np.argmax(y[ok])]) if ok.any() else math.nan


def value_at(r, name, day):
    """Last recorded value of a series at or before ``day`` (NaN if the run ended earlier)."""
    t, y = r["ts"]["time"], r["ts"][name]
    ok = (t <= day + 1e-9) & ~np.isnan(y)
    return float(y[ok][-1]) if ok.any() and t[-1] >= day - 1e-6 else math.nan

