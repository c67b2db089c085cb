"""Markdown tables shared by the batch and the comparison report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.formatting import format_num, format_p, format_pct, md_table


def calibration_markdown(cal: pd.DataFrame, group_label: str = "product") -> str:
    """:func:`calibration_table` as markdown: one row per (group, outcome)."""
    rows = []
    for r in cal.itertuples():
        rows.append([str(r.group), r.cohort, r.outcome.replace("ICANS", "neurotox / ICANS"),
                     str(r.n), str(r.k) if r.n else "n/a",
                     format_pct(r.p, r.lo, r.hi) if r.n else "not available",
                     f"{100 * r.target:.0f} %", r.verdict])
    return md_table([group_label, "target trial", "outcome", "n", "k",
                     "simulated % (95 % CI)", "target", "in band?"], rows)


def trend_markdown(trend: pd.DataFrame, group_label: str | None = None) -> str:
    """:func:`analysis.risk.trend_table` as the report's table."""
    rows = []
    for r in trend.itertuples():
        first = [str(r.group)] if group_label else []
        if not r.available:
            rows.append(first + [r.outcome, "0", "0", "not available", "", "", ""])
            continue
        lo, hi = (format_num(v, "{:+.2f}") if np.isfinite(v) else ("-inf" if v < 0 else "+inf")
                  for v in (r.slope_lo, r.slope_hi))
        slope = "n/a" if not np.isfinite(r.slope) else \
            f"{r.slope:+.2f} [{lo}, {hi}]".replace("+0.00 ", "0.00 ")
        rows.append(first + [r.outcome, str(r.n), str(r.k), format_num(r.ca_z, "{:+.2f}"),
                             format_p(r.ca_p_increasing), slope, format_p(r.slope_p)]
                    + [r.note or ""])
    header = ([group_label] if group_label else []) + [
        "outcome", "n", "events", "CA z", "one-sided p (increasing)",
        "logistic slope per decade [95 % CI]", "p (slope)", "note"]
    return md_table(header, [r + [""] * (len(header) - len(r)) for r in rows])


def posterior_markdown(frame: pd.DataFrame, group_label: str | None = None,
                       conf: float = 0.95) -> str:
    """:func:`analysis.uncertainty.posterior_frame` as the report's table: the pooled rate
    with its Wilson interval beside the per-draw range and the total interval."""
    a = 100 * (1 - conf) / 2
    pct = f"{100 * conf:g} %"
    rows = []
    for r in frame.itertuples():
        first = [str(r.group)] if group_label else []
        if not r.available or not r.n:
            rows.append(first + [r.outcome] + ["not available"] + [""] * 3)
            continue
        rows.append(first + [
            r.outcome, format_pct(r.p, r.lo, r.hi, int(r.k), int(r.n)),
            f"{100 * r.draw_median:.0f} % ({100 * r.param_lo:.0f}-{100 * r.param_hi:.0f})",
            f"{100 * r.total_lo:.0f}-{100 * r.total_hi:.0f} %", str(int(r.n_draws))])
    header = ([group_label] if group_label else []) + [
        "outcome", f"pooled % ({pct} Wilson) k/n",
        f"per-draw rates: median ({a:g}-{100 - a:g} %)", f"total {pct} (two-stage bootstrap)",
        "draws"]
    return md_table(header, rows)


__all__ = ["calibration_markdown", "trend_markdown", "posterior_markdown"]
