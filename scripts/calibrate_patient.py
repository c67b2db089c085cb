"""Calibration helper: run the default patient (or a variant) and print its key numbers.

Usage::

    python scripts/calibrate_patient.py [--config configs/default.toml] [--days 28]
        [--set section.key=value ...] [--save out.npz]

Prints a table of the course at selected days (blood CAR-T, patch CAR-T by
phenotype, tumour, plasma IL-6 / IL-1 / IFN-gamma, temperature, CRS grade,
myeloid activation) and the endpoints used in docs/calibration.md.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from abm.config import load_config
from abm.build import build_simulation


def parse_set(items):
    out: dict = {}
    for item in items:
        key, val = item.split("=", 1)
        try:
            v = json.loads(val)
        except json.JSONDecodeError:
            v = val
        d = out
        parts = key.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    return out


def merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict):
            merge(a.setdefault(k, {}), v)
        else:
            a[k] = v
    return a


def run(config: str, days: float, overrides: dict, every_min: float = 60.0):
    ov = merge({"run": {"end_day": days}}, overrides)
    cfg = load_config(config, ov)
    sim = build_simulation(cfg)
    rows = []
    sim.add_writer(cfg.run.every_steps(every_min), lambda s: rows.append(s.record_row()))
    t0 = time.time()
    sim.run()
    wall = time.time() - t0
    keys = rows[0].keys()
    ts = {k: np.array([r.get(k, np.nan) for r in rows], dtype=float) for k in keys
          if isinstance(rows[0].get(k), (int, float, np.integer, np.floating))}
    return sim, ts, wall


def summary(sim, ts) -> dict:
    s = sim.state.scalars
    t = ts["time"]

    def at(name, day):
        i = int(np.argmin(np.abs(t - day)))
        return float(ts[name][i])

    post = t >= 0
    il6 = ts["plasma_il6"]
    i6 = int(np.argmax(np.where(post, il6, -1)))
    out = {
        "blood_d2": at("blood_cart_per_ul", 2), "blood_d7": at("blood_cart_per_ul", 7),
        "blood_d14": at("blood_cart_per_ul", 14), "blood_d28": at("blood_cart_per_ul", min(28, t[-1])),
        "blood_peak": float(s.get("blood_cart_peak_per_ul", np.nan)),
        "blood_peak_day": float(s.get("blood_cart_peak_day", np.nan)),
        "il6_peak": float(il6[i6]), "il6_peak_day": float(t[i6]),
        "il1_max": float(np.nanmax(ts["plasma_il1"][post])),
        "tmax": float(np.nanmax(ts["temperature_c"])),
        "crs_max": float(s.get("crs_max_grade", np.nan)),
        "crs_onset": float(s.get("crs_onset_day", np.nan)),
        "crs_resolved": float(s.get("crs_resolved_day", np.nan)),
        "crs_episodes": float(s.get("crs_episodes", np.nan)),
        "crs_active_end": float(s.get("crs_active", np.nan)),
        "tcz_mg": float(ts["tocilizumab_total_mg"][-1]) if "tocilizumab_total_mg" in ts else np.nan,
        "dex_mg": float(ts["dexamethasone_total_mg"][-1]) if "dexamethasone_total_mg" in ts else np.nan,
        "tumour_change": float(ts["n_tumour"][-1] / ts["n_tumour"][0] - 1.0) if "n_tumour" in ts else np.nan,
        "patch_cart_max": float(np.nanmax(ts.get("n_cart", np.array([np.nan])))),
        "entered": float(s.get("cart_entered_total", np.nan)),
        "il6_myeloid_fraction": float(s.get("il6_myeloid_fraction", np.nan)),
        "icans_max": float(s.get("icans_max_grade", np.nan)),
    }
    return out


def table(ts, days=(0.25, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 17, 21, 24, 28)):
    t = ts["time"]
    cols = [("blood", "blood_cart_per_ul", "{:7.2f}"), ("tiss", "tissue_cart_cells", "{:8.2e}"),
            ("patch", "n_cart", "{:5.0f}"), ("eff", "n_cart_effector", "{:4.0f}"),
            ("mem", "n_cart_memory", "{:4.0f}"), ("exh", "n_cart_exhausted", "{:4.0f}"),
            ("tum", "n_tumour", "{:5.0f}"), ("kill/h", "cart_kills_interval", "{:4.0f}"),
            ("IL6", "plasma_il6", "{:7.1f}"), ("IL1", "plasma_il1", "{:6.1f}"),
            ("IFNg", "plasma_ifng", "{:6.1f}"), ("GM", "plasma_gmcsf", "{:6.1f}"), ("tIL6", "tissue_il6", "{:7.1f}"),
            ("tIFNg", "tissue_ifng", "{:7.1f}"), ("mye", "myeloid_mean_activation", "{:5.2f}"),
            ("sys", "sys_myeloid_activation", "{:5.2f}"), ("T", "temperature_c", "{:5.1f}"),
            ("MAP", "map_mmhg", "{:5.1f}"), ("CRS", "crs_grade", "{:3.0f}"), ("occ", "il6r_occupancy", "{:4.2f}")]
    print("  day " + " ".join(f"{c[0]:>{len(c[2].format(0))}}" for c in cols))
    for d in days:
        if d > t[-1] + 1e-9:
            break
        i = int(np.argmin(np.abs(t - d)))
        vals = []
        for _, k, f in cols:
            v = ts.get(k)
            vals.append(f.format(float(v[i])) if v is not None else f.format(float("nan")))
        print(f"{d:5.2f} " + " ".join(vals))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.toml")
    ap.add_argument("--days", type=float, default=28.0)
    ap.add_argument("--set", nargs="*", default=[])
    ap.add_argument("--save", default=None)
    a = ap.parse_args()
    sim, ts, wall = run(a.config, a.days, parse_set(a.set))
    table(ts)
    for ev in sim.state.events:
        if ev[1] in ("tocilizumab", "dexamethasone", "methylprednisolone", "crs_onset", "crs_grade",
                     "crs_resolved", "icans_onset", "icans_grade", "icans_resolved", "fluid_bolus",
                     "vasopressor_up"):
            print(f"  event {ev[0]:7.3f} {ev[1]} {ev[2]} {ev[3]}")
    summ = summary(sim, ts)
    print(json.dumps({k: round(v, 3) for k, v in summ.items()}))
    print(f"wall {wall:.0f} s")
    if a.save:
        np.savez_compressed(a.save, **ts)


if __name__ == "__main__":
    main()
