"""Opening run files: the ``.part`` name of a file being written, and one-line errors.

Every module that opens an output file for writing or resuming goes through
:func:`open_run_file`, which turns each way a file can be unusable (missing,
a folder, not HDF5, locked, left open by a killed writer, another schema
version) into one :class:`~abm.errors.FileFormatError` line.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import h5py

from abm.errors import FileFormatError
from abm.io.h5repair import clear_status_flags, is_unclosed_error, open_readonly
from abm.io.schema import SCHEMA_VERSION

#: Suffix of a file still being written (renamed away when the run completes).
PART_SUFFIX = ".part"


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
    for attempt in (0, 1):
        try:
            h5 = h5py.File(path, mode)
            break
        except OSError as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "lock" in msg.lower():
                raise FileFormatError(f"{path}: is locked; is another abm process writing it?") \
                    from None
            if is_unclosed_error(exc) and attempt == 0:
                if mode == "r":   # a killed writer's file, read without changing it
                    h5 = open_readonly(path)
                    break
                # killed writer: no process holds the lock (HDF5 checks it first),
                # so clear the superblock's "open for write" flag, as h5clear -s does
                if clear_status_flags(path):
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
