"""One batch per folder: ``<batch folder>/batch.lock`` names the process driving it.

The lock file is created atomically (written under a temporary name, then
hard-linked to ``batch.lock``, which fails if it exists) and holds one JSON
line: ``host``, ``pid``, the process's start time (``pid_start``, Linux clock
ticks since boot, so a reused pid is not mistaken for the owner) and
``started`` (UTC). A second ``abm batch`` on the folder is refused in one
line naming the owner. A lock whose owner is on this host and no longer
alive (the batch was killed) is stale: it is taken over, with a log line. A
lock of another host is never taken over (its process cannot be checked):
delete the file once that batch is known to be gone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
from pathlib import Path

from abm.errors import AbmError

_log = logging.getLogger(__name__)

LOCK = "batch.lock"


class BatchLockedError(AbmError):
    """Another process drives this batch folder."""


def _pid_start(pid: int) -> str:
    """The start time of ``pid`` (clock ticks since boot; "" where /proc is absent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by another user
        return True
    now = _pid_start(pid)
    return not (start and now and now != start)


class BatchLock:
    """Hold ``<folder>/batch.lock`` (a context manager; :meth:`release` removes it)."""

    def __init__(self, folder, log=None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self._log = log or _log.warning
        self.held = False

    def _owner(self) -> dict:
        pid = os.getpid()
        return {"host": socket.gethostname(), "pid": pid, "pid_start": _pid_start(pid),
                "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}

    def _create(self) -> bool:
        tmp = self.folder / f".{LOCK}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self._owner()) + "\n")
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def acquire(self) -> "BatchLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._create():
                self.held = True
                return self
            try:
                owner = json.loads(self.path.read_text())
                host, pid = str(owner["host"]), int(owner["pid"])
                start, since = str(owner.get("pid_start", "")), owner.get("started", "?")
            except FileNotFoundError:
                continue   # released meanwhile
            except (OSError, ValueError, KeyError, TypeError):
                self._log(f"{self.path}: unreadable lock file; taking it over")
                self.path.unlink(missing_ok=True)
                continue
            if host != socket.gethostname():
                raise BatchLockedError(
                    f"{self.folder} is being run by process {pid} on host {host} (since "
                    f"{since}); if that batch is gone, delete {self.path}")
            if _alive(pid, start) and pid != os.getpid():
                raise BatchLockedError(
                    f"{self.folder} is being run by process {pid} on this host (since {since}); "
                    "wait for it to finish or stop it, then use --resume")
            self._log(f"{self.path}: its batch (process {pid} on {host}, since {since}) is no "
                      "longer running; taking the folder over")
            self.path.unlink(missing_ok=True)
        raise BatchLockedError(f"{self.path}: could not take the lock (another batch is "
                               "starting in this folder?)")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


__all__ = ["BatchLock", "BatchLockedError", "LOCK"]
