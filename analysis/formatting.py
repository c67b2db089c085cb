"""Number formatting and markdown tables shared by the reports.

Every function returns text; none reads files or computes statistics.
"""

from __future__ import annotations

import numpy as np

from analysis.risk import median_iqr


def format_p(p) -> str:
    """A p-value: ``< 0.001``, three decimals below 0.1, else two; ``n/a`` if missing."""
    if p is None or not np.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def format_pct(p, lo, hi, k=None, n=None) -> str:
    """A rate with its interval, in %: ``"40 % (20-63) 4/10"`` (k/n when given)."""
    if n == 0 or p is None or not np.isfinite(p):
        return "n/a"
    s = f"{100 * p:.0f} % ({100 * lo:.0f}-{100 * hi:.0f})"
    return s + (f" {k}/{n}" if k is not None else "")


def format_num(v, fmt="{:.3g}") -> str:
    """A value for a table cell: text as is, integers exact, NaN as ``n/a``, None empty."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, (float, np.floating)) and not np.isfinite(v):
        return "n/a"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return fmt.format(float(v))


def format_median_iqr(v, fmt="{:.3g}") -> str:
    """Median [first quartile, third quartile] of the finite values; ``n/a`` if none."""
    med, q1, q3 = median_iqr(v)
    if not np.isfinite(med):
        return "n/a"
    return f"{fmt.format(med)} [{fmt.format(q1)}, {fmt.format(q3)}]"


def covariate_label(covariate: str) -> str:
    """The words for a covariate in headings and notes."""
    return "tumour burden" if covariate == "burden_cells" else covariate


def md_table(header, rows) -> str:
    """A markdown table (cells escaped for ``|``)."""
    esc = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines)


__all__ = ["format_p", "format_pct", "format_num", "format_median_iqr", "covariate_label",
           "md_table"]
