"""Reference statistics computed by hand, to check the analysis layer against."""

from __future__ import annotations

import math

Z = 1.959963984540054          # normal quantile for 95 %


def wilson_by_hand(k, n):
    """95 % Wilson score interval of ``k`` successes in ``n`` trials, from its formula."""
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
