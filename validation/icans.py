"""Whole-patient validation of the brain barrier and ICANS (docs/model.md 10.5 and 10.6): check ``icans``.

Three arms over the same seeds (default CD28 patients, a smaller patch and a
shorter horizon so it fits on a laptop; the patient scale S keeps the burden):

* ``off``:    endothelial response switched off (``brain.endothelial_response = false``),
              default clinician -> expect no ICANS grade >= 2;
* ``on``:     default model and clinician -> ICANS occurs, and starts after CRS onset in every
              patient that has both;
* ``no_tcz``: default model, clinician preset ``no_tocilizumab`` -> time at CRS grade >= 2
              is longer than with tocilizumab, ICANS incidence is not lower.

Usage::

    python -m validation icans --n-off 50 --n-policy 20 --workers 2 --icans-out runs/validate_icans.jsonl
    python -m validation icans --synthetic --n-off 50 --n-policy 50 --icans-out runs/validate_icans_synthetic.jsonl
    python -m validation icans --synthetic --n-off 50 --n-policy 50 --e0-beta 1.5 8 \
        --icans-out runs/validate_icans_synthetic_e0.jsonl

(``scripts/validate_icans.py`` takes the same options, with ``--out`` for ``--icans-out``.)

``--e0-beta A B`` draws each patient's baseline endothelial activation
(``patient.baseline_endothelial_activation``, default 0) from beta(A, B), from the seed, the
same in every arm (configs/batch_example.toml uses beta(1.5, 8)): a pre-existing activation
must raise the ICANS risk but never cause ICANS by itself, before infusion or before CRS.

``--synthetic`` replaces the cell rules by a synthetic patch surge of IFN-gamma and GM-CSF
(log-uniform 0.3-3x the size used in tests/model/test_patient.py, starting day 0.5-3, lasting 2-6
days, drawn from the seed) through the full patient model (random effects on): a fast check
that does not depend on the cell-rule calibration.

Each finished run is appended to the JSON-lines file, so an interrupted
validation resumes where it stopped. Prints the figures at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import time

from validation import ROOT

TITLE = "Brain barrier and ICANS in whole patients: no ICANS without the barrier, ICANS after CRS, tocilizumab"
DEFAULT_OUT = os.path.join(ROOT, "runs", "validate_icans.jsonl")
ARMS = {"off": ({"brain": {"endothelial_response": False}}),
        "on": {},
        "no_tcz": {"clinician": {"preset": "no_tocilizumab"}}}
KEYS = ("crs_max_grade", "crs_onset_day", "icans_max_grade", "icans_onset_day", "icans_duration_days",
        "plasma_il6_peak", "csf_il6_peak", "neuroinflammation_max", "brain_endothelial_activation_max",
        "q_alb_max", "brain_water_excess_max_ml", "ice_min", "seizures", "tocilizumab_doses",
        "dexamethasone_doses", "tls_lab_any", "infusion_reaction")


def baseline_activation(seed, opts):
    """The patient's baseline endothelial activation: 0, or a beta(A, B) draw from the seed."""
    if not opts.get("e0_beta"):
        return 0.0
    import numpy as np
    a, b = opts["e0_beta"]
    return float(np.random.default_rng([seed, 0xE0]).beta(a, b))


def one_run(job):
    arm, seed, opts = job
    from abm.config import load_config
    from abm.build import build_simulation
    over = {"run": {"seed": seed, "start_day": opts["start_day"], "end_day": opts["end_day"]},
            "lattice": {"shape": [opts["shape"], opts["shape"]]}, "tumour": {"initial_cells": opts["cells"]},
            "patient": {"baseline_endothelial_activation": baseline_activation(seed, opts)}}
    for k, v in ARMS[arm].items():
        over.setdefault(k, {}).update(v)
    cfg = load_config(os.path.join(ROOT, "configs/default.toml"), over)
    sim = build_simulation(cfg)
    every = cfg.run.every_steps(60.0)
    hours = {"crs2_h": 0.0, "plasma_il6_max_after_tcz": 0.0}

    def tally(s):
        sc = s.state.scalars
        if sc.get("crs_grade", 0) >= 2:
            hours["crs2_h"] += 1.0
    sim.add_writer(every, tally)
    t0 = time.time()
    sim.run()
    s = sim.state.scalars
    out = {"arm": arm, "seed": seed, "wall_s": time.time() - t0, "crs2_h": hours["crs2_h"],
           "e0": cfg.patient.baseline_endothelial_activation}
    out.update({k: float(s.get(k, float("nan"))) for k in KEYS})
    return out


def synthetic_run(job):
    """One patient without cell rules: a synthetic patch surge of IFN-gamma / GM-CSF (as in
    tests/model/test_patient.py) whose size and timing vary with the seed, through the full patient model."""
    arm, seed, opts = job
    import numpy as np
    from abm.config import config_from_dict
    from abm.model.coupling import bed_scale
    from abm.model.patient import SYSTEMIC_PROCESSES
    from abm.process import Process
    from abm.build import build_simulation
    data = {"lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 100},
            "run": {"seed": seed, "start_day": -1.0, "end_day": 14.0},
            "patient": {"baseline_endothelial_activation": baseline_activation(seed, opts)}}
    for k, v in ARMS[arm].items():
        data.setdefault(k, {}).update(v)
    cfg = config_from_dict(data)
    r = np.random.default_rng(seed)
    amp, t_on = math.exp(r.uniform(math.log(0.3), math.log(3.0))), r.uniform(0.5, 3.0)
    t_off = t_on + r.uniform(2.0, 6.0)
    S, vp, dt = bed_scale(cfg), cfg.blood.plasma_volume_ml_per_kg * cfg.patient.weight_kg, cfg.run.dt_s

    class Surge(Process):
        phase = "fields"

        def step(self, state):
            s, on = state.scalars, t_on <= state.time_day < t_off
            for sp, c, hl in (("ifng", 300.0 * amp, 30.0), ("gmcsf", 100.0 * amp, 40.0)):
                s[f"exchange_{sp}_pg"] = math.log(2) / (hl * 60) * c * vp * dt / S if on else 0.0
    sim = build_simulation(cfg, processes=[Surge, *SYSTEMIC_PROCESSES])
    hours = {"crs2_h": 0.0}

    def tally(x):
        if x.state.scalars.get("crs_grade", 0) >= 2:
            hours["crs2_h"] += 1.0
    sim.add_writer(cfg.run.every_steps(60.0), tally)
    t0 = time.time()
    sim.run()
    s = sim.state.scalars
    out = {"arm": arm, "seed": seed, "wall_s": time.time() - t0, "crs2_h": hours["crs2_h"], "surge": amp,
           "e0": cfg.patient.baseline_endothelial_activation}
    out.update({k: float(s.get(k, float("nan"))) for k in KEYS})
    return out


def summarise(rows, n_off, n_policy):
    by = {a: [r for r in rows if r["arm"] == a] for a in ARMS}
    nan = float("nan")

    def frac(rs, f):
        return f"{sum(1 for r in rs if f(r))}/{len(rs)}"

    def med(xs):
        xs = [x for x in xs if x == x]
        return statistics.median(xs) if xs else nan

    def early(r):
        """ICANS onset before CRS onset (or without CRS), or before infusion (day 0)."""
        ic, crs = r["icans_onset_day"], r["crs_onset_day"]
        return r["icans_max_grade"] >= 1 and (ic < 0.0 or crs != crs or ic <= crs)

    print("\n== ICANS validation (docs/model.md 10.5, 10.6) ==")
    e0s = [r.get("e0", 0.0) for r in rows]
    if any(e0s):
        print(f"baseline endothelial activation E0: median {med(e0s):.3f}, max {max(e0s):.3f}")
    off = by["off"]
    print(f"[off] endothelial response off, {len(off)} patients: CRS any {frac(off, lambda r: r['crs_max_grade'] >= 1)}, "
          f"ICANS any {frac(off, lambda r: r['icans_max_grade'] >= 1)}, "
          f"ICANS >= 2 {frac(off, lambda r: r['icans_max_grade'] >= 2)} (must be 0); "
          f"max ICANS grade {max((r['icans_max_grade'] for r in off), default=nan):g}; "
          f"ICANS starting before CRS onset or infusion {sum(1 for r in off if early(r))}; "
          f"median peak neuro-inflammation {med(r['neuroinflammation_max'] for r in off):.3f}, "
          f"Q_alb max {max((r['q_alb_max'] for r in off), default=nan):.4f}")
    for arm in ("on", "no_tcz"):
        rs = by[arm]
        both = [r for r in rs if r["crs_max_grade"] >= 1 and r["icans_max_grade"] >= 1]
        after = [r for r in both if r["icans_onset_day"] > r["crs_onset_day"]]
        lags = [r["icans_onset_day"] - r["crs_onset_day"] for r in both]
        print(f"[{arm}] {len(rs)} patients: CRS any {frac(rs, lambda r: r['crs_max_grade'] >= 1)}, "
              f">= 2 {frac(rs, lambda r: r['crs_max_grade'] >= 2)}, >= 3 {frac(rs, lambda r: r['crs_max_grade'] >= 3)}; "
              f"ICANS any {frac(rs, lambda r: r['icans_max_grade'] >= 1)}, >= 2 {frac(rs, lambda r: r['icans_max_grade'] >= 2)}, "
              f">= 3 {frac(rs, lambda r: r['icans_max_grade'] >= 3)}; ICANS after CRS onset in {len(after)}/{len(both)} "
              f"with both (median lag {med(lags):.2f} d, min {min(lags, default=nan):.2f} d); "
              f"ICANS without CRS {sum(1 for r in rs if r['icans_max_grade'] >= 1 and r['crs_max_grade'] < 1)}, "
              f"ICANS starting before CRS onset or infusion {sum(1 for r in rs if early(r))}")
        if any(r.get("e0", 0.0) for r in rs):
            cut = med([r.get("e0", 0.0) for r in rs])
            for name, part in (("E0 <= median", [r for r in rs if r.get("e0", 0.0) <= cut]),
                               ("E0 > median", [r for r in rs if r.get("e0", 0.0) > cut])):
                print(f"      {name} ({cut:.3f}): ICANS any {frac(part, lambda r: r['icans_max_grade'] >= 1)}, "
                      f">= 2 {frac(part, lambda r: r['icans_max_grade'] >= 2)}, "
                      f">= 3 {frac(part, lambda r: r['icans_max_grade'] >= 3)}; median peak N "
                      f"{med(r['neuroinflammation_max'] for r in part):.2f}, water excess "
                      f"{med(r['brain_water_excess_max_ml'] for r in part):.1f} mL")
        print(f"      time at CRS >= 2: mean {statistics.fmean([r['crs2_h'] for r in rs]) if rs else nan:.1f} h; "
              f"median plasma IL-6 peak {med(r['plasma_il6_peak'] for r in rs):.0f} pg/mL, "
              f"CSF IL-6 peak {med(r['csf_il6_peak'] for r in rs):.1f} pg/mL, "
              f"brain E max {med(r['brain_endothelial_activation_max'] for r in rs):.2f}, "
              f"Q_alb max {med(r['q_alb_max'] for r in rs):.4f}, "
              f"tocilizumab doses {sum(r['tocilizumab_doses'] for r in rs):g}, "
              f"seizures {sum(r['seizures'] for r in rs):g}, TLS {sum(r['tls_lab_any'] for r in rs):g}, "
              f"infusion reactions {sum(r['infusion_reaction'] for r in rs):g}")
    on = {r["seed"]: r for r in by["on"]}
    no = {r["seed"]: r for r in by["no_tcz"]}
    common = sorted(set(on) & set(no))
    if common:
        d2 = [no[s]["crs2_h"] - on[s]["crs2_h"] for s in common]
        ic_on = sum(1 for s in common if on[s]["icans_max_grade"] >= 1)
        ic_no = sum(1 for s in common if no[s]["icans_max_grade"] >= 1)
        print(f"[tocilizumab vs none, {len(common)} paired seeds] time at CRS >= 2: with {statistics.fmean(on[s]['crs2_h'] for s in common):.1f} h, "
              f"without {statistics.fmean(no[s]['crs2_h'] for s in common):.1f} h (longer without in "
              f"{sum(1 for d in d2 if d > 0)}, equal in {sum(1 for d in d2 if d == 0)}); "
              f"ICANS any: with {ic_on}, without {ic_no}; "
              f"median plasma IL-6 peak with {med(on[s]['plasma_il6_peak'] for s in common):.0f} vs without "
              f"{med(no[s]['plasma_il6_peak'] for s in common):.0f} pg/mL; median CSF IL-6 peak with "
              f"{med(on[s]['csf_il6_peak'] for s in common):.1f} vs without {med(no[s]['csf_il6_peak'] for s in common):.1f} pg/mL")


def add_arguments(parser, out_flag: str = "--icans-out") -> None:
    """The options of this check (``out_flag`` names the JSON-lines file; ``--workers`` is the caller's)."""
    g = parser.add_argument_group("icans check (docs/model.md 10.5, 10.6)")
    g.add_argument("--n-off", type=int, default=50, help="patients with the endothelial response off")
    g.add_argument("--n-policy", type=int, default=20, help="patients per tocilizumab arm (same seeds)")
    g.add_argument("--first-seed", type=int, default=1)
    g.add_argument("--shape", type=int, default=48, help="patch side (sites)")
    g.add_argument("--cells", type=int, default=1000, help="initial tumour cells in the patch")
    g.add_argument("--start-day", type=float, default=-3.0)
    g.add_argument("--end-day", type=float, default=12.0)
    g.add_argument(out_flag, dest="icans_out", default=DEFAULT_OUT, metavar="FILE",
                   help="JSON-lines file of the finished runs (default runs/validate_icans.jsonl)")
    g.add_argument("--summary-only", action="store_true", help="run nothing; summarise the runs in the file")
    g.add_argument("--synthetic", action="store_true",
                   help="no cell rules: a synthetic patch surge (size and timing vary by seed) through the "
                        "full patient model; fast, independent of the cell-rule calibration")
    g.add_argument("--e0-beta", type=float, nargs=2, metavar=("A", "B"),
                   help="draw each patient's baseline endothelial activation from beta(A, B) (default: 0); "
                        "use a separate output file")


def run(a, error=None) -> int:
    """Run the missing runs of the design in ``a`` (parsed options), append them to the file, summarise."""
    def fail(msg):
        if error is None:
            raise SystemExit(f"validation: error: {msg}")
        error(msg)
    opts = {"shape": a.shape, "cells": a.cells, "start_day": a.start_day, "end_day": a.end_day,
            "e0_beta": a.e0_beta}
    out = a.icans_out
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    done = []
    if os.path.exists(out):
        with open(out) as f:
            done = [json.loads(line) for line in f if line.strip()]
    if done and any(abs(r.get("e0", 0.0) - baseline_activation(r["seed"], opts)) > 1e-12 for r in done):
        fail(f"{out} holds runs with another baseline activation (--e0-beta); use another output file")
    seen = {(r["arm"], r["seed"]) for r in done}
    jobs = []
    for i in range(max(a.n_off, a.n_policy)):
        seed = a.first_seed + i
        if i < a.n_policy:
            jobs += [("on", seed, opts), ("no_tcz", seed, opts)]
        if i < a.n_off:
            jobs.append(("off", seed, opts))
    jobs = [j for j in jobs if (j[0], j[1]) not in seen]
    print(f"{len(done)} runs done, {len(jobs)} to run ({a.shape}x{a.shape} patch, {a.cells} tumour cells, "
          f"days {a.start_day:g}..{a.end_day:g})", flush=True)
    if jobs and not a.summary_only:
        with mp.get_context("spawn").Pool(a.workers) as pool, open(out, "a") as f:
            for k, r in enumerate(pool.imap_unordered(synthetic_run if a.synthetic else one_run, jobs), 1):
                f.write(json.dumps(r) + "\n")
                f.flush()
                done.append(r)
                print(f"  {k}/{len(jobs)} {r['arm']} seed {r['seed']}: CRS {r['crs_max_grade']:g} "
                      f"(day {r['crs_onset_day']:.2f}), ICANS {r['icans_max_grade']:g} (day {r['icans_onset_day']:.2f}), "
                      f"{r['wall_s']:.0f} s", flush=True)
    summarise(done, a.n_off, a.n_policy)
    return 0


def main(argv=None) -> int:
    """The check alone, with ``--out`` for the file and ``--workers`` (the command line of scripts/validate_icans.py)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap, out_flag="--out")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    return run(a, error=ap.error)
