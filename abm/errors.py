"""Typed errors of the simulator.

Every error a user can cause by bad input derives from :class:`AbmError`; the
CLI turns these into one readable line and exit code 2, never a traceback.
"""

from __future__ import annotations


class AbmError(Exception):
    """Base class for errors caused by user input (configs, files, arguments)."""


class ConfigError(AbmError):
    """A configuration is malformed: unknown key, wrong type, out of range, ...

    The message names the file, the key path, the offending value and what is
    allowed, e.g. ``configs/x.toml: cart.kill_rate_per_h must be >= 0 (got -0.1)``.
    """

    def __init__(self, message: str, *, path: str | None = None,
                 key: str | None = None):
        self.path = path
        self.key = key
        prefix = f"{path}: " if path else ""
        super().__init__(prefix + message)


class FileFormatError(AbmError):
    """An output file is missing, truncated, corrupt or of an unknown schema."""
