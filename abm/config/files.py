"""Reading a TOML config file defensively: what may be opened, and how deep it may nest.

Every config a user names (a run config, a batch file, a batch's ``base``)
is read by :func:`read_toml`, which refuses with one :class:`ConfigError`
line, before or instead of parsing:

* a path that is not a regular file (a folder, a FIFO, a device): checked
  with ``os.stat`` first, so a FIFO is never opened (opening it would block);
* a file larger than :data:`MAX_CONFIG_BYTES`;
* text that is not UTF-8 or not TOML;
* a file with no keys at all (0 bytes, or only blanks and comments): such a
  file is almost always a mistake (an unsaved editor buffer, a failed copy)
  and would otherwise run the default patient with a drawn seed;
* tables or arrays nested more than :data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

from abm.errors import ConfigError

#: Largest config file read (bytes); real configs are a few kB.
MAX_CONFIG_BYTES = 16 * 1024 * 1024
#: Deepest nesting of tables and arrays; the deepest real key has 3 levels.
MAX_DEPTH = 32


def read_toml(path, *, key: str | None = None, owner: str | None = None) -> dict:
    """Parse the TOML file ``path`` into a dict, or raise a one-line :class:`ConfigError`.

    Args:
        path: the file.
        key, owner: when the path comes from a key of another file (``batch.base``),
            that key and file, so that "not found" names them.
    """
    path = Path(path)
    shown = _shown(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if key:
            raise ConfigError(f"{key} names a file that does not exist (looked for "
                              f"{_shown(path.absolute())})", path=owner, key=key) from None
        raise ConfigError(f"config file not found (looked for {_shown(path.absolute())})",
                          path=shown) from None
    except (OSError, ValueError) as exc:   # ValueError: a NUL byte in the path
        raise ConfigError(f"cannot be read ({_reason(exc)})", path=shown) from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError("is a directory, not a TOML config file", path=shown)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"is not a regular file (a {_kind(st.st_mode)}); give a TOML "
                          "config file", path=shown)
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"is {st.st_size} bytes, larger than any config "
                          f"({MAX_CONFIG_BYTES} bytes at most)", path=shown)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("is not a UTF-8 text file", path=shown) from None
    except OSError as exc:
        raise ConfigError(f"cannot be read ({_reason(exc)})", path=shown) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"is not valid TOML: {exc}", path=shown) from None
    except RecursionError:
        raise ConfigError(f"nests tables or arrays more than {MAX_DEPTH} levels deep",
                          path=shown) from None
    if not data:
        raise ConfigError("is empty (no keys); give at least one key, e.g. [run] seed = 1, "
                          "or use configs/default.toml for the default patient", path=shown)
    check_depth(data, file=shown)
    return data


def check_depth(data, *, file: str | None = None, limit: int = MAX_DEPTH) -> None:
    """Refuse tables or arrays nested deeper than ``limit`` (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            raise ConfigError(f"nests tables or arrays more than {limit} levels deep",
                              path=file)
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]


def _shown(path: Path) -> str:
    """The path as text, with control characters escaped (a message stays one line)."""
    return repr(str(path))[1:-1]


__all__ = ["read_toml", "check_depth", "MAX_CONFIG_BYTES", "MAX_DEPTH"]
