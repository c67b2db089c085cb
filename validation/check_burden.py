"""Check 3 (docs/model.md 10.3): higher tumour burden raises CRS and ICANS risk.

Reads the ``mech_burden`` cohort (four burden levels, paired seeds) or, with
``--burden-batch``, an existing batch folder in which burden varies.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from validation.report import result
from validation.stats import ALPHA, fmt, fmt_p, median

NUMBER = 3
TITLE = "Higher tumour burden raises CRS and ICANS risk"
COHORTS = ("mech_burden",)


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
                         f"{fmt(tt['ca_z'])}, one-sided {fmt_p(tt['ca_p_increasing'])}; slope {fmt(tt['slope'])} "
                         f"[{fmt(tt['slope_lo'])}, {fmt(tt['slope_hi'])}] per decade, LR {fmt_p(tt['slope_p'])}"
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
            il6 = median([r["ep"]["plasma_il6_peak_pg_ml"] for r in rs])
            ent = median([np.nanmax(r["ts"]["cart_entered_total"]) for r in rs])
            none = sum(1 for r in rs if np.nanmax(r["ts"]["n_cart"]) <= 1)
            scale = median([r["burden"] / r["config"]["tumour"]["initial_cells"] for r in rs])
            mid = math.sqrt(lo_e * hi_e)
            diag.append({"burden": mid, "n": len(rs), "patient_cells_per_patch_cell": scale,
                         "il6_peak_median": il6, "cart_entered_patch_median": ent, "patch_never_above_1_cart": none})
            lines.append(f"info, burden ~{mid:.1g} ({len(rs)} runs, S = {scale:.2g} patient cells per patch cell): "
                         f"median plasma IL-6 peak {fmt(il6)} pg/mL; median CAR-T cells that entered the patch "
                         f"{fmt(ent)}; patch never held > 1 CAR-T cell in {none}/{len(rs)}")
        out["per_level"] = diag
    res = result(3, TITLE, "Cochran-Armitage one-sided p < 0.05 for a rise with burden of CRS any grade and of ICANS any grade",
                 all(crit.values()), {**out, "criteria": crit, "source": str(source)}, lines,
                 "" if all(crit.values()) else "failed: " + ", ".join(k for k, v in crit.items() if not v))
    res["_ep"] = (x, {k: np.asarray(ep[f"{k}_max_grade"].values, float) for k in ("crs", "icans")}, bins)
    return res


def run(ctx) -> dict:
    """The ``mech_burden`` cohort, or the batch of ``--burden-batch`` (its bins then from the data)."""
    from validation.cohort import read_runs
    own = ctx.opts.burden_batch is None
    source = ctx.folders["mech_burden"] if own else ctx.opts.burden_batch
    runs = ctx.runs("mech_burden") or read_runs(ctx.opts.burden_batch, lambda p, row: "burden")
    return check_burden(source, own=own, runs=runs)
