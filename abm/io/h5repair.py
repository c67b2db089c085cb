"""Opening HDF5 files whose writer was killed (no abm imports: the reader uses it too).

HDF5 (file format 1.10, superblock version 3) sets "open for write" flags in
the superblock while a file is open for writing. A writer killed by SIGKILL
leaves them set, and HDF5 then refuses to open the file ("file is already
open for write"). :func:`clear_status_flags` clears them in place, as
``h5clear -s`` does (used when resuming); :func:`open_readonly` opens such a
file for reading without changing it, through a file object that presents
the superblock with the flags cleared.
"""

from __future__ import annotations

import io
from pathlib import Path

import h5py

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SB_LEN = 48          # superblock v3 with 8-byte offsets; checksum in the last 4 bytes
_FLAGS_AT = 11


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``: the checksum of HDF5 metadata."""
    M = 0xFFFFFFFF

    def rot(x, k):
        return ((x << k) | (x >> (32 - k))) & M

    n = len(data)
    a = b = c = (0xDEADBEEF + n + initval) & M
    i = 0
    while n > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & M
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & M
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & M
        a = (a - c) & M; a ^= rot(c, 4); c = (c + b) & M      # noqa: E702
        b = (b - a) & M; b ^= rot(a, 6); a = (a + c) & M      # noqa: E702
        c = (c - b) & M; c ^= rot(b, 8); b = (b + a) & M      # noqa: E702
        a = (a - c) & M; a ^= rot(c, 16); c = (c + b) & M     # noqa: E702
        b = (b - a) & M; b ^= rot(a, 19); a = (a + c) & M     # noqa: E702
        c = (c - b) & M; c ^= rot(b, 4); b = (b + a) & M      # noqa: E702
        n -= 12
        i += 12
    if n == 0:
        return c
    tail = data[i:] + bytes(12 - n)
    a = (a + int.from_bytes(tail[0:4], "little")) & M
    b = (b + int.from_bytes(tail[4:8], "little")) & M
    c = (c + int.from_bytes(tail[8:12], "little")) & M
    v = [a, b, c]
    for x, y, k in ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14),
                    (2, 1, 24)):   # lookup3 final(a, b, c)
        v[x] ^= v[y]
        v[x] = (v[x] - rot(v[y], k)) & M
    return v[2]


def _cleared_superblock(path) -> bytes | None:
    """The first 48 bytes with the status flags cleared, or None if not a v3 superblock."""
    with open(path, "rb") as f:
        sb = bytearray(f.read(_SB_LEN))
    if (len(sb) < _SB_LEN or sb[:8] != _SIGNATURE or sb[8] != 3 or sb[9] != 8
            or int.from_bytes(sb[44:48], "little") != lookup3(bytes(sb[:44]))):
        return None
    sb[_FLAGS_AT] = 0
    sb[44:48] = lookup3(bytes(sb[:44])).to_bytes(4, "little")
    return bytes(sb)


def cleared_superblock(path) -> bytes | None:
    """The first bytes of ``path`` with the "open for write" flags cleared (a copy of a
    file being written then opens cleanly); None if it has no v3 superblock."""
    return _cleared_superblock(path)


def is_unclosed_error(exc: BaseException) -> bool:
    return "already open for write" in str(exc)


def clear_status_flags(path) -> bool:
    """Clear the "open for write" flags of a v3 superblock in place; False if not one."""
    sb = _cleared_superblock(path)
    if sb is None:
        return False
    with open(path, "r+b") as f:
        f.write(sb)
    return True


class _PatchedFile(io.RawIOBase):
    """A read-only file whose first bytes are replaced by ``head``."""

    def __init__(self, path, head: bytes):
        self._f = open(path, "rb")
        self._head = head

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        return self._f.seek(offset, whence)

    def tell(self):
        return self._f.tell()

    def readinto(self, buf):
        pos = self._f.tell()
        n = self._f.readinto(buf)
        if pos < len(self._head) and n:
            k = min(n, len(self._head) - pos)
            memoryview(buf)[:k] = self._head[pos:pos + k]
        return n

    def close(self):
        self._f.close()
        super().close()


def open_readonly(path, **kwargs) -> h5py.File:
    """``h5py.File(path, "r")``, also for a file whose writer was killed (not modified)."""
    try:
        return h5py.File(path, "r", **kwargs)
    except OSError as exc:
        if not is_unclosed_error(exc):
            raise
        head = _cleared_superblock(path)
        if head is None:
            raise
        return h5py.File(_PatchedFile(Path(path), head), "r", **kwargs)


def readonly_fileobj(path):
    """A file object for ``xr.open_dataset`` if ``path`` is an unclosed file, else ``path``."""
    try:
        h5py.File(path, "r").close()
        return path
    except OSError as exc:
        if not is_unclosed_error(exc):
            raise
    head = _cleared_superblock(path)
    return _PatchedFile(Path(path), head) if head is not None else path
