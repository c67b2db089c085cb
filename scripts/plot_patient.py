"""Time-course figure of one virtual patient from a run's HDF5 file.

Usage::

    python scripts/plot_patient.py runs/default/default_seed20261121.h5 -o docs/figures/default_patient.png

Reads the ``/timeseries`` group (one dataset per recorded scalar, dimension
``time`` in days relative to infusion) and the ``/events`` group with h5py,
and draws eight panels: CAR-T, plasma cytokines, temperature, MAP and SpO2,
support and drugs, CRS grade, lymphocytes and IL-7/IL-15, endothelial and
tumour-lysis markers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def load(path: Path) -> tuple[dict[str, np.ndarray], list[tuple[float, str, int, str]], dict]:
    """Time series (name -> array), events and root attributes of a run file."""
    with h5py.File(path, "r") as f:
        g = f["timeseries"]
        ts = {k: g[k][()] for k in g if isinstance(g[k], h5py.Dataset) and g[k].ndim == 1}
        events = []
        if "events" in f and "time" in f["events"]:
            e = f["events"]
            dec = (lambda x: x.decode() if isinstance(x, bytes) else str(x))
            events = [(float(t), dec(k), int(gr), dec(d)) for t, k, gr, d in
                      zip(e["time"][()], e["kind"][()], e["grade"][()], e["detail"][()])]
        attrs = {k: f.attrs[k] for k in f.attrs}
    return ts, events, attrs


def plot(ts: dict, events: list, title: str = "") -> plt.Figure:
    t = ts["time"]
    fig, axes = plt.subplots(4, 2, figsize=(13, 13), sharex=True, constrained_layout=True)
    ax = axes.ravel()

    def get(name):
        return ts.get(name, np.full_like(t, np.nan))

    # (a) CAR-T
    a = ax[0]
    a.semilogy(t, np.maximum(get("blood_cart_per_ul"), 1e-3), color="C3", label="blood CAR-T")
    a.set_ylabel("blood CAR-T (cells/uL)")
    a.set_ylim(1e-2, None)
    if "tumour_cells" in ts:
        # the whole patient's populations (abm/model/kinetics.py)
        b = a.twinx()
        for name, label, style in (("cart_total_cells", "CAR-T, whole patient", "C0-"),
                                   ("tumour_cart_cells", "CAR-T in the tumour", "C0:"),
                                   ("tumour_cells", "tumour cells", "k-"),
                                   ("b_cells", "normal B cells", "C2--")):
            b.semilogy(t, np.maximum(get(name), 1.0), style, lw=1, label=label)
        b.set_ylabel("cells (whole patient)")
        b.legend(loc="upper right", fontsize=8)
    elif "n_cart" in ts:
        b = a.twinx()
        b.plot(t, get("n_cart"), color="C0", lw=1, label="patch CAR-T")
        b.set_ylabel("patch CAR-T (cells)")
        b.legend(loc="upper right", fontsize=8)
    a.legend(loc="upper left", fontsize=8)
    a.set_title("CAR-T cells")

    # (b) plasma cytokines
    a = ax[1]
    for name, label in (("plasma_il6", "IL-6"), ("plasma_ifng", "IFN-gamma"), ("plasma_gmcsf", "GM-CSF"),
                        ("plasma_il1", "IL-1"), ("plasma_il7_15", "IL-7/IL-15")):
        a.semilogy(t, np.maximum(get(name), 1e-2), label=label)
    a.set_ylabel("plasma concentration (pg/mL)")
    a.legend(fontsize=8, ncol=2)
    a.set_title("Plasma cytokines")

    # (c) temperature
    a = ax[2]
    a.plot(t, get("temperature_c"), color="C3")
    a.axhline(38.0, color="k", lw=0.8, ls="--")
    a.set_ylabel("temperature (deg C)")
    a.set_title("Core temperature (fever >= 38.0 C dashed)")

    # (d) MAP and SpO2
    a = ax[3]
    a.plot(t, get("map_mmhg"), color="C0", label="MAP")
    a.axhline(65.0, color="C0", lw=0.8, ls="--")
    a.set_ylabel("mean arterial pressure (mmHg)", color="C0")
    b = a.twinx()
    b.plot(t, get("spo2_pct"), color="C2", label="SpO2")
    b.axhline(92.0, color="C2", lw=0.8, ls="--")
    b.set_ylabel("SpO2 (%)", color="C2")
    b.set_ylim(70, 100.5)
    a.set_title("Blood pressure and oxygenation (targets dashed)")

    # (e) support and drugs
    a = ax[4]
    a.step(t, get("vasopressors") + 0.5 * get("vasopressin"), where="post", label="vasopressors (+0.5 vasopressin)")
    a.step(t, get("oxygen_support"), where="post", label="oxygen support level (0-3)")
    a.step(t, get("fluids_total_ml") / 1000.0, where="post", label="fluids given (L)")
    marks = {"tocilizumab": ("v", "C3"), "dexamethasone": ("s", "C4"), "methylprednisolone": ("D", "C5"),
             "anakinra": ("^", "C6")}
    top = max(3.5, np.nanmax(get("fluids_total_ml")) / 1000.0 + 0.5)
    for kind, (m, c) in marks.items():
        tt = [e[0] for e in events if e[1] == kind]
        if tt:
            a.plot(tt, [top] * len(tt), m, color=c, ls="none", label=f"{kind} dose")
    a.set_ylabel("support (count, level, L)")
    a.set_ylim(-0.2, top * 1.35)
    a.legend(fontsize=7, loc="upper left", ncol=2)
    a.set_title("Support and drugs given")

    # (f) CRS grade and drug effects
    a = ax[5]
    a.step(t, get("crs_grade"), where="post", color="k", label="ASTCT CRS grade")
    a.set_ylabel("CRS grade")
    a.set_ylim(-0.2, 4.4)
    b = a.twinx()
    b.plot(t, get("il6r_occupancy"), color="C3", lw=1, label="IL-6R occupancy")
    b.plot(t, get("steroid_effect"), color="C4", lw=1, label="steroid effect")
    b.set_ylabel("drug effect (fraction)")
    b.set_ylim(-0.02, 1.05)
    b.legend(fontsize=8, loc="upper right")
    a.legend(fontsize=8, loc="upper left")
    a.set_title("CRS grade and drug effects")

    # (g) lymphocytes and IL-7/IL-15
    a = ax[6]
    a.plot(t, get("alc_per_ul"), color="C1", label="host lymphocytes (ALC)")
    a.set_ylabel("absolute lymphocyte count (cells/uL)", color="C1")
    b = a.twinx()
    b.plot(t, get("plasma_il7_15"), color="C9", label="IL-7/IL-15")
    b.set_ylabel("IL-7/IL-15 (pg/mL)", color="C9")
    a.set_title("Lymphodepletion and homeostatic cytokines")
    a.set_xlabel("day after infusion")

    # (h) markers
    a = ax[7]
    a.plot(t, get("ang2_ang1_ratio"), color="C5", label="ANG-2/ANG-1")
    a.set_ylabel("ANG-2 / ANG-1 (ratio)", color="C5")
    b = a.twinx()
    b.plot(t, get("uric_acid_mg_dl"), color="C7", label="uric acid (mg/dL)")
    b.plot(t, get("phosphate_mg_dl"), color="C8", label="phosphate (mg/dL)")
    b.plot(t, get("potassium_mmol_l"), color="C6", label="potassium (mmol/L)")
    b.set_ylabel("serum labs (mg/dL; K mmol/L)")
    b.legend(fontsize=7, loc="upper right")
    a.set_title("Endothelial and tumour-lysis markers")
    a.set_xlabel("day after infusion")

    for a in ax:
        a.axvline(0.0, color="0.7", lw=0.8)
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="HDF5 file written by `abm run`")
    p.add_argument("-o", "--out", type=Path, default=Path("docs/figures/default_patient.png"),
                   help="output PNG (default: docs/figures/default_patient.png)")
    args = p.parse_args(argv)
    ts, events, attrs = load(args.run)
    seed = attrs.get("seed", "?")
    fig = plot(ts, events, title=f"{args.run.name} (seed {seed})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
