"""Visual predictive check of blood CAR-T kinetics: virtual trials against published points.

For each batch folder: the median and the 90 % band (5th-95th percentile) of
``blood_cart_per_ul`` over the patients at each record time, with the
published medians (axi-cel, Kimmel 2021: 27.5 / 9.1 / 2.1 cells/uL on days
7 / 14 / 28) and the reported times of the peak (CD28 7-14 d, 4-1BB 9-10 d).
Also prints, per batch, the kinetic summaries the model is checked on:
expansion over the post-infusion nadir, doubling time during expansion,
Tmax, and the half-life of the early decline.

    python scripts/plot_vpc.py runs/trial_cd28 runs/trial_41bb -o docs/figures/vpc_trials.png
"""

from __future__ import annotations

import argparse
import glob
import math
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

KIMMEL_AXICEL = {7: 27.5, 14: 9.1, 28: 2.1}
TMAX_BANDS = {"CD28": (7.0, 14.0), "4-1BB": (9.0, 10.0)}


def load(folder: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Common record times (day) and ``(patients, times)`` blood CAR-T; the product's domain."""
    rows, t_ref, domain = [], None, ""
    for f in sorted(glob.glob(str(folder / "*.h5"))):
        with h5py.File(f, "r") as h5:
            t = h5["timeseries/time"][:]
            y = h5["timeseries/blood_cart_per_ul"][:]
            if not domain and "config_json" in h5.attrs:
                import json
                domain = json.loads(h5.attrs["config_json"]).get("product", {}).get("costimulation", "")
        if t_ref is None:
            t_ref = t
        rows.append(np.interp(t_ref, t, y))
    return t_ref, np.array(rows), domain


def summaries(t: np.ndarray, y: np.ndarray) -> dict:
    """Per-patient kinetic summaries, as medians over the patients."""
    exp, dbl, tmax, half = [], [], [], []
    for row in y:
        after = t > 0.05
        i_peak = int(np.argmax(np.where(t >= 1.0, row, -1)))
        early = after & (t <= t[i_peak])
        if not early.any():
            continue
        i_nadir = int(np.flatnonzero(early)[np.argmin(row[early])])
        nadir, peak = row[i_nadir], row[i_peak]
        tmax.append(t[i_peak])
        if nadir > 0:
            exp.append(peak / nadir)
        # doubling: log-linear fit between the nadir and the peak
        seg = slice(i_nadir, i_peak + 1)
        if i_peak - i_nadir >= 3 and nadir > 0:
            slope = np.polyfit(t[seg], np.log(np.maximum(row[seg], 1e-12)), 1)[0]
            if slope > 0:
                dbl.append(math.log(2) / slope)
        # early decline: log-linear fit over the 7 days after the peak
        dec = (t >= t[i_peak]) & (t <= t[i_peak] + 7.0)
        if dec.sum() >= 3:
            slope = np.polyfit(t[dec], np.log(np.maximum(row[dec], 1e-12)), 1)[0]
            if slope < 0:
                half.append(math.log(2) / -slope)
    med = lambda v: float(np.median(v)) if v else float("nan")  # noqa: E731
    return {"expansion": med(exp), "doubling_days": med(dbl), "tmax_days": med(tmax),
            "early_half_life_days": med(half), "n": len(y),
            "day": {d: float(np.median([np.interp(d, t, r) for r in y])) for d in (7, 14, 28)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("batches", nargs="+", type=Path, help="batch folders of finished runs")
    ap.add_argument("-o", "--out", type=Path, default=Path("vpc.png"), help="figure file")
    args = ap.parse_args(argv)
    fig, axes = plt.subplots(1, len(args.batches), figsize=(6 * len(args.batches), 4.5),
                             squeeze=False, constrained_layout=True)
    for ax, folder in zip(axes[0], args.batches):
        t, y, domain = load(folder)
        lo, med, hi = np.percentile(y, [5, 50, 95], axis=0)
        ax.fill_between(t, np.maximum(lo, 1e-2), hi, color="C0", alpha=0.25, label="simulated 90 % band")
        ax.semilogy(t, np.maximum(med, 1e-2), "C0", label="simulated median")
        if domain == "CD28":
            ax.semilogy(list(KIMMEL_AXICEL), list(KIMMEL_AXICEL.values()), "ks",
                        label="axi-cel medians (Kimmel 2021)")
        if domain in TMAX_BANDS:
            ax.axvspan(*TMAX_BANDS[domain], color="0.85", zorder=0, label=f"reported Tmax ({domain})")
        s = summaries(t, y)
        ax.set_title(f"{folder.name} ({domain}, n = {s['n']}): Tmax {s['tmax_days']:.1f} d, "
                     f"x{s['expansion']:.0f}", fontsize=10)
        ax.set_xlabel("day after infusion")
        ax.set_ylabel("blood CAR-T (cells/uL)")
        ax.set_ylim(1e-2, None)
        ax.legend(fontsize=8)
        print(f"{folder}: {domain} n={s['n']}; medians: day 7 {s['day'][7]:.3g}, day 14 {s['day'][14]:.3g}, "
              f"day 28 {s['day'][28]:.3g} cells/uL; Tmax {s['tmax_days']:.3g} d; expansion over the nadir "
              f"x{s['expansion']:.3g}; doubling {s['doubling_days']:.3g} d; early decline half-life "
              f"{s['early_half_life_days']:.3g} d")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
