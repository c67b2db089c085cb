"""Population-level calibration runs: the two virtual trials with parameter overrides.

One stage of the staged fit described in docs/calibration.md section 4. Runs
the first ``--n`` patients of ``configs/trial_cd28.toml`` and
``configs/trial_41bb.toml`` (the same virtual patients every time: same root
seeds and covariates) with the given overrides, and prints the four rates of
docs/model.md section 11 against their targets, the CRS / ICANS onset and the blood
CAR-T kinetics against Kimmel 2021 / Stein 2019::

    python scripts/calibrate_trials.py --n 40 --tag base
    python scripts/calibrate_trials.py --n 40 --tag il6 --set brain.il6_ec50_pg_ml=150
    python scripts/calibrate_trials.py --trials 41bb --set product.division_time_h=24

``--set`` takes ``section.key=value`` (TOML value: strings in double quotes),
applied to every run of the trials given by ``--trials`` (on top of the
product preset; to change one product only, run its trial alone). Results go to
``runs/calibration/<tag>/<trial>/`` (a normal batch folder: ``abm analyze``
works on it) and one JSON line per trial is appended to
``runs/calibration/log.jsonl``.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
import time
import tomllib
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from abm.batch import load_batch                     # noqa: E402
from abm.batch.runner import run_batch               # noqa: E402
from abm.batch.executors import LocalPool            # noqa: E402
from analysis.report import CALIBRATION, in_band     # noqa: E402
from analysis.risk import wilson_interval            # noqa: E402

TRIALS = {"cd28": ("configs/trial_cd28.toml", "CD28"), "41bb": ("configs/trial_41bb.toml", "4-1BB")}
ENDPOINTS = ("crs_max_grade", "icans_max_grade", "crs_onset_day", "icans_onset_day",
             "blood_cart_peak_per_ul", "blood_cart_peak_day", "plasma_il6_peak_pg_ml")


def parse_set(items) -> dict:
    out: dict = {}
    for item in items or []:
        key, _, val = item.partition("=")
        *heads, last = [k.strip('"') for k in _split_key(key)]
        d = out
        for h in heads:
            d = d.setdefault(h, {})
        d[last] = tomllib.loads(f"x = {val}")["x"]
    return out


def _split_key(key: str) -> list[str]:
    """``a.b`` or ``"4-1bb".x`` -> parts."""
    parts, cur, quoted = [], "", False
    for ch in key:
        if ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def summarise(folder: Path, costim: str) -> dict:
    files = sorted(glob.glob(str(folder / "*.h5")))
    ep = {k: [] for k in ENDPOINTS}
    blood = {7: [], 14: [], 28: []}
    for f in files:
        with h5py.File(f) as h:
            for k in ENDPOINTS:
                ep[k].append(float(h["endpoints"][k][()]))
            t = h["timeseries/time"][()]
            y = h["timeseries/blood_cart_per_ul"][()]
            for d in blood:
                blood[d].append(float(np.interp(d, t, y)) if t[-1] >= d - 1e-9 else math.nan)
    ep = {k: np.array(v) for k, v in ep.items()}
    n = len(files)
    out = {"n": n}
    crs, icans = ep["crs_max_grade"], ep["icans_max_grade"]
    target = CALIBRATION[costim]
    for i, (name, x) in enumerate((("crs_any", crs >= 1), ("crs_3", crs >= 3),
                                   ("icans_any", icans >= 1), ("icans_3", icans >= 3))):
        k = int(x.sum())
        lo, hi = wilson_interval(k, n)
        out[name] = {"k": k, "p": k / n, "lo": float(lo), "hi": float(hi), "target": target[1 + i] / 100,
                     "in_band": bool(in_band(k / n, lo, hi, target[1 + i] / 100))}
    out["crs_onset_median"] = float(np.nanmedian(ep["crs_onset_day"])) if np.isfinite(ep["crs_onset_day"]).any() else None
    out["icans_onset_median"] = float(np.nanmedian(ep["icans_onset_day"])) if np.isfinite(ep["icans_onset_day"]).any() else None
    out["cart_peak_median"] = float(np.median(ep["blood_cart_peak_per_ul"]))
    out["cart_peak_day_median"] = float(np.nanmedian(ep["blood_cart_peak_day"]))
    out["il6_peak_median"] = float(np.median(ep["plasma_il6_peak_pg_ml"]))
    for d, v in blood.items():
        out[f"cart_d{d}_median"] = float(np.nanmedian(v))
    out["crs_grades"] = np.bincount(crs.astype(int), minlength=5).tolist()
    out["icans_grades"] = np.bincount(icans.astype(int), minlength=5).tolist()
    return out


def show(trial: str, s: dict) -> None:
    print(f"  {trial}: n = {s['n']}")
    for name in ("crs_any", "crs_3", "icans_any", "icans_3"):
        r = s[name]
        print(f"    {name:10s} {r['k']:3d} = {100 * r['p']:5.1f} % ({100 * r['lo']:.0f}-{100 * r['hi']:.0f})"
              f"  target {100 * r['target']:.0f} %  {'in band' if r['in_band'] else 'OUT'}")
    print(f"    grades CRS {s['crs_grades']}  ICANS {s['icans_grades']}")
    print(f"    onset median: CRS {s['crs_onset_median']}, ICANS {s['icans_onset_median']} (day)")
    print(f"    blood CAR-T median: peak {s['cart_peak_median']:.1f}/uL on day {s['cart_peak_day_median']:.1f};"
          f" d7 {s['cart_d7_median']:.2f} d14 {s['cart_d14_median']:.2f} d28 {s['cart_d28_median']:.2f}"
          f" (axi-cel 27.5 / 9.1 / 2.1; tisa-cel peak day ~9.3); IL-6 peak {s['il6_peak_median']:.0f} pg/mL")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="patients per trial (the first n of each)")
    ap.add_argument("--trials", default="cd28,41bb", help="comma-separated: cd28, 41bb")
    ap.add_argument("--set", nargs="*", default=[], help="section.key=value overrides (TOML values)")
    ap.add_argument("--tag", default="base", help="name of this calibration point (output folder)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--resume", action="store_true", help="keep finished runs of this tag")
    args = ap.parse_args(argv)
    overrides = parse_set(args.set)
    out = ROOT / "runs" / "calibration" / args.tag
    results = {}
    with LocalPool(args.workers) as pool:
        for trial in args.trials.split(","):
            path, costim = TRIALS[trial]
            ov = {**overrides, "batch": {"name": trial}}
            batch = load_batch(ROOT / path, ov)
            t0 = time.perf_counter()
            res = run_batch(batch, out=out, executor=pool, resume=args.resume,
                            only=f"0-{args.n - 1}", log=lambda m: None)
            s = summarise(out / trial, costim)
            s["wall_s"] = round(time.perf_counter() - t0, 1)
            s["failed"] = res.failed
            results[trial] = s
    print(f"calibration point '{args.tag}': {' '.join(args.set) or '(defaults)'}")
    for trial, s in results.items():
        show(trial, s)
    with open(ROOT / "runs" / "calibration" / "log.jsonl", "a") as fh:
        for trial, s in results.items():
            fh.write(json.dumps({"tag": args.tag, "set": args.set, "trial": trial, **s}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
