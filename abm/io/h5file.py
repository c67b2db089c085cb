"""Opening run files: the ``.part`` name of a file being written, and one-line errors.

Every module that opens an output file for writing or resuming goes through
:func:`open_run_file`, which turns each way a file can be unusable (missing,
a folder, not HDF5, locked, left open by a killed writer, another schema
version) into one :class:`~abm.errors.FileFormatError` line.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import h5py

from abm.errors import AbmError, FileFormatError
from abm.io.h5repair import clear_status_flags, is_unclosed_error, open_readonly
from abm.io.schema import SCHEMA_VERSION

#: Suffix of a file still being written (renamed away when the run completes).
PART_SUFFIX = ".part"


class StorageError(AbmError):
    """A file could not be written: disk full, quota exceeded, an I/O error, ..."""


_ERRNO_IN_TEXT = re.compile(r"errno = (\d+)")


def _errno_of(exc: BaseException) -> int | None:
    if isinstance(exc, OSError) and exc.errno:
        return int(exc.errno)
    m = _ERRNO_IN_TEXT.search(str(exc))   # HDF5 reports the system errno in its text
    return int(m.group(1)) if m else None


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n}"


def free_space(path) -> str:
    """Free space on the file system holding ``path`` (e.g. ``"1.2 MB free"``)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return f"{_size(shutil.disk_usage(p).free)} free"
    except OSError:
        return "free space unknown"


#: errno values of a storage that cannot take more data (as opposed to a bad path).
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS)


def is_disk_full(exc: BaseException) -> bool:
    """True for a failure of the storage itself: full, over quota, read-only, I/O error."""
    return _errno_of(exc) in DISK_ERRNOS


def is_storage_failure(exc: BaseException) -> bool:
    """An OSError, or an HDF5 error (h5py raises some as RuntimeError) naming a system errno."""
    return isinstance(exc, OSError) or _errno_of(exc) is not None


def quiet_failed_deallocs() -> None:
    """After a failed write HDF5 reports the same error again from every object h5py frees
    ("Can't decrement id ref count", printed as ignored exceptions): drop those."""
    import sys
    previous = sys.unraisablehook
    if getattr(previous, "_abm_quiet", False):
        return

    def hook(unraisable):
        text = str(unraisable.exc_value)
        if "decrement id ref count" in text or "_dealloc" in repr(unraisable.object):
            return
        previous(unraisable)

    hook._abm_quiet = True
    sys.unraisablehook = hook


def storage_error(exc: BaseException, path) -> StorageError:
    """A one-line :class:`StorageError` for an I/O failure while writing ``path``."""
    quiet_failed_deallocs()
    code = _errno_of(exc)
    if code:
        reason = f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"
    else:
        text = str(exc).strip().splitlines()
        reason = text[0][:200] if text else type(exc).__name__
    return StorageError(f"{path}: write failed: {reason}; {free_space(path)} on its file system")


#: How long opening a locked file is retried before it is reported (a writer that is
#: closing, or exiting, releases its lock within this time).
LOCK_WAIT_S = 3.0


def lock_holders(path) -> list[str]:
    """The processes holding a lock on ``path``, as ``"PID (command)"`` (Linux, from
    /proc/locks; empty where that cannot be read).

    A flock belongs to an open file, and /proc/locks names the process that took
    it: a holder named "exited" passed the open file on to a child it started.
    """
    try:
        st = os.stat(path)
        with open("/proc/locks") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) > 5 and parts[5] == key and parts[4].isdigit():
            pid = parts[4]
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = " ".join(fh.read().decode(errors="replace").replace("\0", " ").split())
            except OSError:
                cmd = "exited"
            out.append(f"{pid} ({cmd[:80] or '?'})")
    return out


def _locked_error(path: Path) -> FileFormatError:
    holders = lock_holders(path)
    by = f" by process {', '.join(holders)}" if holders else ""
    return FileFormatError(f"{path}: is locked{by}; is another abm process writing it?")


def part_path(path: Path) -> Path:
    """The name under which ``path`` is written until the run completes."""
    return path.with_name(path.name + PART_SUFFIX)


@contextmanager
def open_output(path, mode: str = "r"):
    """Open an output file, turning every failure into one-line :class:`FileFormatError`."""
    h5 = open_run_file(path, mode)
    try:
        yield h5
    finally:
        h5.close()


def open_run_file(path, mode: str = "r") -> h5py.File:
    """Open an output file (``mode`` as for h5py), or raise a one-line :class:`FileFormatError`.

    A file whose writer was killed is opened read-only as it is (``mode="r"``)
    or, for writing, after clearing its "open for write" flag, as ``h5clear -s`` does.
    """
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path}: no such file")
    if path.is_dir():
        raise FileFormatError(f"{path}: is a directory, not an output file")
    if not h5py.is_hdf5(path):
        raise FileFormatError(f"{path}: not an HDF5 file")
    attempt, deadline = 0, time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            h5 = h5py.File(path, mode)
            break
        except OSError as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "lock" in msg.lower():
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise _locked_error(path) from None
            if is_unclosed_error(exc) and attempt == 0:
                if mode == "r":   # a killed writer's file, read without changing it
                    h5 = open_readonly(path)
                    break
                # killed writer: no process holds the lock (HDF5 checks it first),
                # so clear the superblock's "open for write" flag, as h5clear -s does
                if clear_status_flags(path):
                    attempt = 1
                    continue
                raise FileFormatError(f"{path}: was not closed cleanly and abm cannot repair "
                                      "it; try 'h5clear -s' on it") from None
            raise FileFormatError(f"{path}: truncated or corrupted HDF5 file ({msg})") from None
    version = h5.attrs.get("schema_version")
    if version is None:
        h5.close()
        raise FileFormatError(f"{path}: not an abm output file (no schema_version attribute)")
    if int(version) != SCHEMA_VERSION:
        h5.close()
        raise FileFormatError(f"{path}: schema version {int(version)} cannot be written or "
                              f"resumed by abm with schema version {SCHEMA_VERSION}")
    return h5
