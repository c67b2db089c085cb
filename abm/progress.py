"""Progress of a long loop: a tqdm bar on a terminal, steady log lines elsewhere.

On a terminal (stderr is a tty) a tqdm bar shows the progress. When stderr is
a file or a pipe (``abm run cfg.toml > log.txt 2>&1``, a cluster job's log),
one INFO line is logged instead each time the loop passes another 10 % of its
total or 30 s of wall time have gone by since the last line, whichever comes
first, and once at the end. The lines are also logged while a bar is shown,
flagged so that only a log file (``--log-file``) keeps them.

The wall interval is ``every_s`` or, by default, the environment variable
``ABM_PROGRESS_EVERY_S`` (seconds, default 30; 0 logs at every update, as the
tests do).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Callable

#: Seconds between two progress lines at most (unless ABM_PROGRESS_EVERY_S says otherwise).
DEFAULT_EVERY_S = 30.0
#: A line at least every 1/PARTS of the total (10 %).
PARTS = 10
ENV_EVERY_S = "ABM_PROGRESS_EVERY_S"


def interval_s() -> float:
    """The wall interval between progress lines, s (from ``ABM_PROGRESS_EVERY_S``)."""
    raw = os.environ.get(ENV_EVERY_S, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_EVERY_S
    except ValueError:
        return DEFAULT_EVERY_S
    return value if value >= 0 and math.isfinite(value) else DEFAULT_EVERY_S


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Progress of ``total`` units, reported as a bar or as log lines.

    Args:
        total: units of the whole task (steps of the run, runs of the batch).
        done: units already done before this call (a resumed run), not counted in rates.
        describe: ``describe(progress) -> str``, the text of one log line
            (use :attr:`rate_per_s` and :attr:`eta_s`).
        logger: where lines go.
        desc, unit: label and unit of the bar.
        bar: True / False to force a bar or lines; None: a bar when stderr is
            a terminal, or when nothing would print the lines (logging not
            configured).
        every_s: wall interval between lines (default :func:`interval_s`).
    """

    def __init__(self, total: int, *, describe: Callable[["Progress"], str],
                 logger: logging.Logger, done: int = 0, desc: str = "", unit: str = "it",
                 bar: bool | None = None, every_s: float | None = None):
        self.total = max(int(total), 0)
        self.done = self.done0 = int(done)
        self.describe = describe
        self.logger = logger
        self.every_s = interval_s() if every_s is None else float(every_s)
        self.t0 = self.t_last = time.monotonic()
        self._next_mark = self._mark_after(self.done)
        self._last_logged = self.done
        if bar is None:
            bar = _isatty(sys.stderr) or not logger.hasHandlers()
        self.bar = None
        if bar:
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, initial=self.done, unit=unit, desc=desc,
                            file=sys.stderr, mininterval=0.5, dynamic_ncols=True, smoothing=0.1,
                            leave=False)
        self._extra = {"abm_progress": "bar" if self.bar is not None else "lines"}

    def _mark_after(self, done: int) -> float:
        """The first count past the next 10 % mark (integers: no rounding slips)."""
        if self.total <= 0:
            return math.inf
        k = done * PARTS // self.total + 1
        return min(-(-k * self.total // PARTS), self.total)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.t0

    @property
    def rate_per_s(self) -> float:
        """Units per second in this call (NaN before the first)."""
        n, t = self.done - self.done0, self.elapsed_s
        return n / t if n > 0 and t > 0 else math.nan

    @property
    def eta_s(self) -> float:
        """Seconds left at the current rate (NaN when unknown)."""
        r = self.rate_per_s
        return (self.total - self.done) / r if r > 0 else math.nan

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        """``n`` more units done; ``postfix``: text beside the bar."""
        self.done += n
        if self.bar is not None:
            if postfix is not None:
                self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(n)
        self.tick()

    def tick(self) -> None:
        """Log a line if a 10 % mark was passed or the wall interval is over (cheap otherwise)."""
        now = time.monotonic()
        if self.done >= self._next_mark or now - self.t_last >= self.every_s:
            self._log(now)

    def _log(self, now: float) -> None:
        self.t_last = now
        self._next_mark = self._mark_after(self.done)
        self._last_logged = self.done
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info(self.describe(self), extra=self._extra)

    def close(self) -> None:
        """Close the bar; log the last line if the end was not logged yet."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.done != self._last_logged:
            self._log(time.monotonic())


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


__all__ = ["Progress", "interval_s", "format_eta", "DEFAULT_EVERY_S", "PARTS",
           "ENV_EVERY_S"]
