"""Logging set-up of the command line: console lines ``abm: ...``, an optional log file.

Modules report through ``logging.getLogger(__name__)`` and never configure
logging; :func:`configure` (called once by :func:`abm.cli.main`) does:

* console (stderr): ``abm: <message>``; level DEBUG with ``-v``, INFO by
  default, WARNING with ``-q`` (warnings and errors only);
* ``--log-file PATH``: the same messages with a timestamp, level and logger
  name, at DEBUG with ``-v`` and INFO otherwise (so ``-q --log-file run.log``
  keeps the terminal quiet and the file complete).

Only the project's loggers (``abm``, ``analysis``, ``benchmarks``,
``validation``) take the chosen level; other libraries stay at WARNING, so
``-v`` shows no font-manager or cluster chatter.

Two flags on a record steer where it goes (``extra=``):

* ``abm_progress="bar"``: a progress line written while a tqdm bar shows the
  same on the terminal: the console skips it, the log file keeps it;
* ``abm_console=False``: a result line already printed on stdout (see
  :func:`result`): only the log file gets it.

In Python, nothing is printed unless logging is configured, e.g.
``logging.basicConfig(level=logging.INFO)`` or ``abm.logs.configure()``.
"""

from __future__ import annotations

import contextlib
import logging
import sys

from abm.errors import AbmError

#: Loggers whose level follows -v / -q.
PROJECT_LOGGERS = ("abm", "analysis", "benchmarks", "validation")

FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return (getattr(record, "abm_progress", None) != "bar"
                and getattr(record, "abm_console", True))


class _ConsoleFormatter(logging.Formatter):
    """``abm: message`` (other libraries: ``abm: name: message``)."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            msg = f"{msg}\n{record.exc_text}"
        if record.name.split(".")[0] not in PROJECT_LOGGERS:
            msg = f"{record.name}: {msg}"
        return f"abm: {msg}"


class ConsoleHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (pytest swaps it) and around a live tqdm bar."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):   # set by StreamHandler.__init__; the current stderr is used
        pass

    def emit(self, record: logging.LogRecord) -> None:
        tqdm_mod = sys.modules.get("tqdm")
        if tqdm_mod is not None and getattr(tqdm_mod.tqdm, "_instances", None):
            try:   # print above the bar instead of through it
                tqdm_mod.tqdm.write(self.format(record), file=sys.stderr)
                return
            except Exception:  # noqa: BLE001 - fall back to a plain line
                pass
        super().emit(record)


_installed: list[logging.Handler] = []
_saved_levels: dict[str, int] = {}


def configure(level: int = logging.INFO, log_file=None) -> None:
    """Install the console (and file) handlers on the root logger; replaces a previous set-up.

    Args:
        level: console level (``logging.DEBUG``, ``INFO`` or ``WARNING``).
        log_file: path of a log file (appended to), or None.

    Raises:
        AbmError: the log file cannot be opened (one line).
    """
    reset()
    file_handler = None
    if log_file is not None:
        try:
            file_handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        except OSError as exc:
            raise AbmError(f"--log-file {log_file}: cannot open ({exc.strerror or exc})") from None
        file_handler.setLevel(min(level, logging.INFO))
        file_handler.setFormatter(logging.Formatter(FILE_FORMAT))
    console = ConsoleHandler()
    console.setLevel(level)
    console.setFormatter(_ConsoleFormatter())
    console.addFilter(_ConsoleFilter())
    root = logging.getLogger()
    for h in (console, file_handler):
        if h is not None:
            root.addHandler(h)
            _installed.append(h)
    project_level = min(level, file_handler.level if file_handler else level)
    for name in PROJECT_LOGGERS:
        lg = logging.getLogger(name)
        _saved_levels.setdefault(name, lg.level)
        lg.setLevel(project_level)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        _saved_levels.setdefault("", root.level)
        root.setLevel(logging.WARNING)


def reset() -> None:
    """Remove what :func:`configure` installed (closing the log file); restore the levels."""
    root = logging.getLogger()
    while _installed:
        h = _installed.pop()
        root.removeHandler(h)
        h.close()
    for name, lvl in _saved_levels.items():
        logging.getLogger(name or None).setLevel(lvl)
    _saved_levels.clear()


@contextlib.contextmanager
def configured(level: int = logging.INFO, log_file=None):
    """:func:`configure` for the duration of a ``with`` block (one CLI command)."""
    configure(level, log_file)
    try:
        yield
    finally:
        reset()


def result(logger: logging.Logger, msg: str) -> None:
    """A result line: ``abm: msg`` on stdout (even with -q), and into the log file."""
    print(f"abm: {msg}", flush=True)
    logger.info(msg, extra={"abm_console": False})


def progress_mode(quiet: bool, log_file) -> bool | str:
    """The ``progress=`` of a command: bar or lines; with -q none, or lines for the log file."""
    if not quiet:
        return True
    return "lines" if log_file else False


class Say:
    """One-line messages of a library function: to ``logger``, or to a caller's callable.

    ``log`` (the ``log=`` argument of :func:`abm.io.run.run_to_file` and
    :func:`abm.batch.run_batch`) receives ``"abm: <message>"`` whatever the
    level, as before logging was used; without it messages go to ``logger``.
    """

    def __init__(self, logger: logging.Logger, log=None):
        self.logger = logger
        self.log = log

    def _emit(self, level: int, msg: str) -> None:
        if self.log is not None:
            self.log(f"abm: {msg}")
        else:
            self.logger.log(level, msg)

    def debug(self, msg: str) -> None:
        self._emit(logging.DEBUG, msg)

    def info(self, msg: str) -> None:
        self._emit(logging.INFO, msg)

    def warning(self, msg: str) -> None:
        self._emit(logging.WARNING, msg)


__all__ = ["configure", "configured", "reset", "result", "progress_mode", "Say", "ConsoleHandler",
           "PROJECT_LOGGERS"]
