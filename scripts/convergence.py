"""Convergence of patient endpoints in the number of patches K and the patch size.

Runs the default patient (``configs/default.toml``, from day -1) over
``--seeds`` seeds at each fidelity (K patches of a given lattice, the tumour
filling the same share of each patch) and compares every fidelity with the
finest one: for each endpoint, the median at each fidelity and whether it
lies inside the 95 % bootstrap interval of the finest fidelity's median; for
the grade and response distributions, a chi-square-free comparison of the
shares (the share at each fidelity inside the finest one's 95 % Wilson
interval). Writes a JSON file (each run as it finishes: a second call
continues an interrupted one), a Markdown table and a figure (``--figure``:
each endpoint's median and 95 % bootstrap interval at each fidelity, the
finest one's interval shaded).

    python scripts/convergence.py --seeds 20 --workers 2 --out runs/convergence
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: (label, K, lattice edge, tumour cells per patch): same tumour share of the patch as the default.
FIDELITIES = [("K1 64^2", 1, 64, 2000), ("K1 96^2", 1, 96, 4500), ("K1 128^2", 1, 128, 8000),
              ("K4 48^2 (trial)", 4, 48, 1125), ("K4 64^2 (default)", 4, 64, 2000), ("K2 128^2", 2, 128, 8000),
              ("K4 128^2", 4, 128, 8000), ("K8 128^2", 8, 128, 8000)]
FINEST = "K8 128^2"
ENDPOINTS = ("blood_cart_peak_per_ul", "blood_cart_peak_day", "blood_cart_day28_per_ul",
             "plasma_il6_peak_pg_ml", "crs_max_grade", "icans_max_grade", "best_response_code")
#: The endpoints compared as medians (the others as shares of grades and responses).
CONTINUOUS = ENDPOINTS[:4]


def one(args) -> dict:
    label, k, edge, n0, seed = args
    from abm.build import build_simulation
    from abm.config import load_config
    cfg = load_config(ROOT / "configs" / "default.toml", overrides={
        "run": {"start_day": -1.0, "end_day": 28.0},
        "lattice": {"shape": [edge, edge], "patches": k},
        "tumour": {"initial_cells": n0}, "output": {"fields": False, "cells": False}})
    sim = build_simulation(cfg, seed=seed)
    sim.run(cfg.run.n_steps)
    ep = sim.endpoints()
    s = sim.state.scalars
    out = {k2: float(ep.get(k2, np.nan)) for k2 in ENDPOINTS if k2 in ep}
    out["blood_cart_day28_per_ul"] = float(s["blood_cart_per_ul"])
    return {"label": label, "seed": seed, **out}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint
    return tuple(float(x) for x in proportion_confint(k, n, alpha=0.05, method="wilson"))


def median_ci(values, rng, n_boot: int = 2000) -> tuple[float, float, float]:
    """Median and its 95 % bootstrap interval."""
    v = np.asarray(values, dtype=float)
    boots = np.median(rng.choice(v, size=(n_boot, v.size)), axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(np.median(v)), float(lo), float(hi)


def paired_table(by: dict) -> str:
    """Each fidelity against the finest, seed by seed (the seeds are the same patients).

    For the continuous endpoints: the median of the per-seed ratio and the
    Wilcoxon signed-rank p of the log ratio, which sees a bias the intervals
    of two unpaired medians are too wide to show.
    """
    from scipy.stats import wilcoxon
    fine = {r["seed"]: r for r in by[FINEST]}
    labels = [lab for lab, *_ in FIDELITIES if lab != FINEST and by.get(lab)]
    lines = [f"| paired against {FINEST}: median ratio (p) | " + " | ".join(labels) + " |",
             "|---|" + "---|" * len(labels)]
    for key in CONTINUOUS:
        cells = []
        for lab in labels:
            pairs = [(r[key], fine[r["seed"]][key]) for r in by[lab] if r["seed"] in fine]
            a, b = (np.array(v, dtype=float) for v in zip(*pairs))
            d = np.log(a) - np.log(b)
            p = wilcoxon(d).pvalue if np.any(d != 0) else 1.0
            cells.append(f"{np.median(a / b):.3f} ({p:.2g})")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(by: dict, path: Path) -> None:
    """One panel per endpoint: median and 95 % interval per fidelity; grade and response as shares."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rng = np.random.default_rng(2)
    # the finest fidelity last: its interval is the shaded band
    labels = [lab for lab, *_ in FIDELITIES if by.get(lab) and lab != FINEST]
    labels += [FINEST] if by.get(FINEST) else []
    panels = [("blood_cart_peak_per_ul", "blood CAR-T Cmax (cells/uL)", None),
              ("blood_cart_peak_day", "blood CAR-T Tmax (day)", None),
              ("blood_cart_day28_per_ul", "blood CAR-T day 28 (cells/uL)", None),
              ("plasma_il6_peak_pg_ml", "plasma IL-6 peak (pg/mL)", None),
              ("crs_max_grade", "CRS >= 1 / >= 3 (share)", (1, 3)),
              ("icans_max_grade", "ICANS >= 1 / >= 3 (share)", (1, 3)),
              ("best_response_code", "ORR / CR (share)", (2, 3))]
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5))
    x = np.arange(len(labels))
    for ax, (key, title, cats) in zip(axes.flat, panels):
        if cats is None:
            stats = [median_ci([r[key] for r in by[lab]], rng) for lab in labels]
            m, lo, hi = (np.array(a) for a in zip(*stats))
            ax.errorbar(x, m, yerr=[m - lo, hi - m], fmt="o", capsize=3)
            ax.axhspan(lo[-1], hi[-1], color="0.85", zorder=0)
        else:
            for c, marker in zip(cats, ("o", "s")):
                shares, los, his = [], [], []
                for lab in labels:
                    v = np.array([r[key] for r in by[lab]])
                    k = int(np.sum(v >= c))
                    lo, hi = wilson(k, v.size)
                    shares.append(k / v.size), los.append(lo), his.append(hi)
                sh = np.array(shares)
                line = ax.errorbar(x, sh, yerr=np.maximum(0.0, [sh - np.array(los), np.array(his) - sh]), fmt=marker,
                                   capsize=3, label=f">= {c}")
                ax.axhspan(los[-1], his[-1], color=line[0].get_color(), alpha=0.12, zorder=0)
            ax.set_ylim(-0.05, 1.05)
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(x, [lab.replace(" (", "\n(") for lab in labels], fontsize=7,
                      rotation=30)
    axes.flat[-1].axis("off")
    fig.suptitle(f"Convergence in patches K and patch size ({len(by[labels[-1]])} seeds; shaded: "
                 f"95 % interval of {labels[-1]})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "convergence")
    ap.add_argument("--figure", type=Path, default=None, help="figure file (default: <out>/convergence.png)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "runs.json"
    # each finished run is saved at once, so an interrupted call continues where it stopped
    rows = json.loads(saved.read_text()) if saved.exists() else []
    done = {(r["label"], r["seed"]) for r in rows}
    # seed by seed, so a run cut short leaves every fidelity with about as many seeds
    jobs = [(lab, k, e, n0, seed) for seed in range(1, args.seeds + 1) for lab, k, e, n0 in FIDELITIES
            if (lab, seed) not in done]
    # one Numba thread per worker: with more threads than cores each parallel kernel spin-waits
    # (a K = 4 run took minutes instead of seconds with 2 workers of 2 threads on 2 cores)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.workers)))
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for i, r in enumerate(pool.imap_unordered(one, jobs), 1):
            rows.append(r)
            saved.write_text(json.dumps(rows, indent=1))
            if i % 10 == 0:
                print(f"{i}/{len(jobs)} runs", flush=True)
    by = {lab: [r for r in rows if r["label"] == lab] for lab, *_ in FIDELITIES}
    rng = np.random.default_rng(1)
    lines = ["| endpoint | " + " | ".join(lab for lab, *_ in FIDELITIES) + " |",
             "|---|" + "---|" * len(FIDELITIES)]
    verdicts = {}
    for key in CONTINUOUS:
        fine = np.array([r[key] for r in by[FINEST]])
        boots = np.median(rng.choice(fine, size=(2000, fine.size)), axis=1)
        lo, hi = np.percentile(boots, [2.5, 97.5])
        cells = []
        for lab, *_ in FIDELITIES:
            m = float(np.median([r[key] for r in by[lab]]))
            ok = bool(lo <= m <= hi)
            verdicts[(key, lab)] = ok
            cells.append(f"{m:.3g}{'' if ok or lab == FINEST else ' (out)'}")
        lines.append(f"| {key} median (finest 95 % CI {lo:.3g}-{hi:.3g}) | " + " | ".join(cells) + " |")
    for key, cats in (("crs_max_grade", (1, 3)), ("icans_max_grade", (1, 3)), ("best_response_code", (2, 3))):
        for c in cats:
            fine = np.array([r[key] for r in by[FINEST]])
            lo, hi = wilson(int(np.sum(fine >= c)), fine.size)
            cells = []
            for lab, *_ in FIDELITIES:
                v = np.array([r[key] for r in by[lab]])
                p = float(np.mean(v >= c))
                # (the Wilson bounds of a share of 0 or 1 miss it by a rounding error)
                ok = lo - 1e-9 <= p <= hi + 1e-9
                verdicts[(f"{key}>={c}", lab)] = ok
                cells.append(f"{100 * p:.0f} %{'' if ok or lab == FINEST else ' (out)'}")
            name = {"crs_max_grade": "CRS", "icans_max_grade": "ICANS"}.get(key, "response")
            what = f"{name} >= {c}" if name != "response" else ("ORR" if c == 2 else "CR")
            lines.append(f"| {what} (finest 95 % CI {100 * lo:.0f}-{100 * hi:.0f} %) | " + " | ".join(cells) + " |")
    lines += ["", paired_table(by)]
    plot(by, args.figure or args.out / "convergence.png")
    table = "\n".join(lines)
    (args.out / "table.md").write_text(table + "\n")
    print(table)
    for tag in ("(default)", "(trial)"):
        outside = [key for (key, lab), ok in verdicts.items() if lab.endswith(tag) and not ok]
        print(f"{tag[1:-1]} fidelity outside the finest one's 95 % intervals: {', '.join(outside) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
