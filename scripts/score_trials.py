"""Score finished virtual trials against a calibration's targets, as its history matching would.

The adoption rule of docs/calibration.md 7.11: a candidate set of defaults is
kept only if the two 100-patient trials at that point pass the calibration's
own measure. This computes it from the trial folders (``abm batch
configs/trial_cd28.toml`` and ``configs/trial_41bb.toml``), one folder per arm
of the calibration file::

    python scripts/score_trials.py runs/trial_cd28 runs/trial_41bb
    python scripts/score_trials.py A B --config configs/calibration.toml --json score.json

For every target: the arm's summary over the trial's runs (a rate, or log10 of
a median for the kinetics), and its implausibility

    I = |z - y| / sqrt(V_sim + V_obs + V_disc)

with ``V_sim`` the emulator's rate variance over ``n`` patients
(:func:`abm.studies.emulator.rate_variance`) and the bootstrap
variance of the log median for the kinetics. The measure is the calibration's
(``second_max``: the second-largest I); exit status 0 when it is within the
cut-off, 1 when not.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from abm.errors import AbmError
from abm.studies.calibrate_config import load_calibration
from abm.studies.calibrate_targets import run_endpoints, summarise
from abm.studies.emulator import combine, implausibility, rate_variance


def arm_endpoints(folder: Path) -> list[dict]:
    """The per-run endpoints of every complete run file in ``folder`` (unreadable ones are left
    out with a warning, as the calibration leaves out failed runs)."""
    files = sorted(folder.glob("*.h5"))
    if not files:
        raise AbmError(f"{folder}: no run files (*.h5); give a batch folder such as runs/trial_cd28")
    out, bad = [], []
    for path in files:
        try:
            out.append(run_endpoints(path))
        except AbmError as e:
            bad.append(f"{path.name}: {e}")
    if bad:
        print(f"score_trials: {folder}: {len(bad)} of {len(files)} run files left out (first: {bad[0]})",
              file=sys.stderr)
    if not out:
        raise AbmError(f"{folder}: no complete run file; finish the batch (abm batch ... --resume)")
    return out


def score(cfg, folders: dict[str, Path], seed: int = 0) -> dict:
    """Summaries, implausibilities and the measure of the trials in ``folders`` (arm -> folder)."""
    rng = np.random.default_rng(seed)
    eps = {arm: arm_endpoints(f) for arm, f in folders.items()}
    rows = []
    for t in cfg.targets:
        vals = [e[t.summary.endpoint] for e in eps[t.arm]]
        y, v, n = summarise(t.summary, vals, rng=rng)
        target = t.target(n)
        if target.rate_n:
            v = rate_variance(y, n)
        i = float(implausibility(y, v, target))
        natural = 100.0 * y if t.summary.kind == "rate" else 10.0 ** y
        observed = 100.0 * t.observed if t.summary.kind == "rate" else t.observed
        rows.append({"target": t.name, "n": int(n), "simulated": natural, "observed": observed,
                     "unit": "%" if t.summary.kind == "rate" else t.summary.unit, "implausibility": i})
    imps = np.array([r["implausibility"] for r in rows])
    measure = float(combine(imps[None, :], cfg.measure)[0])
    return {"targets": rows, "measure": measure, "measure_name": cfg.measure, "cutoff": cfg.cutoff,
            "mean_implausibility": float(np.nanmean(imps)), "passes": measure <= cfg.cutoff}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path,
                    help="one batch folder per arm of the calibration, in the order of its arms")
    ap.add_argument("--config", default="configs/calibration.toml", help="calibration file (its targets)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args(argv)
    try:
        cfg = load_calibration(args.config)
        arms = [a.name for a in cfg.arms]
        if len(args.folders) != len(arms):
            raise AbmError(f"{args.config} has {len(arms)} arms ({', '.join(arms)}): give one folder for each, "
                           f"in that order ({len(args.folders)} given)")
        res = score(cfg, dict(zip(arms, args.folders)))
    except AbmError as e:
        print(f"score_trials: {e}", file=sys.stderr)
        return 2
    for r in res["targets"]:
        print(f"{r['target']:18s} n {r['n']:4d}  simulated {r['simulated']:8.2f}  target {r['observed']:8.2f} "
              f"{r['unit']:9s} I {r['implausibility']:5.2f}")
    verdict = "within" if res["passes"] else "beyond"
    print(f"measure ({res['measure_name']}) {res['measure']:.2f}, {verdict} the cut-off {res['cutoff']:g}; "
          f"mean I {res['mean_implausibility']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=lambda x: None if math.isnan(x) else x))
    return 0 if res["passes"] else 1


if __name__ == "__main__":
    sys.exit(main())
