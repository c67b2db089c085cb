"""A run file locked by another process: a short wait, then one line naming the holder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import h5py
import pytest

from abm.errors import FileFormatError
from abm.io import h5file
from abm.io.h5file import lock_holders, open_run_file
from abm.io.schema import SCHEMA_VERSION

# holds the file open for writing (HDF5 takes an exclusive lock) for argv[2] seconds
HOLDER = textwrap.dedent("""
    import sys, time, h5py
    f = h5py.File(sys.argv[1], "r+")
    print("open", flush=True)
    time.sleep(float(sys.argv[2]))
    f.close()
""")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc/locks")


@pytest.fixture
def run_file(tmp_path):
    path = tmp_path / "x.h5.part"
    with h5py.File(path, "w") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
    return path


def _hold(path, seconds: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "open"
    return p


def test_a_held_lock_is_reported_with_its_process(run_file, monkeypatch):
    monkeypatch.setattr(h5file, "LOCK_WAIT_S", 0.3)
    p = _hold(run_file, 30)
    try:
        assert [h.split()[0] for h in lock_holders(run_file)] == [str(p.pid)]
        t0 = time.monotonic()
        with pytest.raises(FileFormatError) as info:
            open_run_file(run_file, "r+")
        assert time.monotonic() - t0 >= 0.3   # waited before giving up
        msg = str(info.value)
        assert f"is locked by process {p.pid} (" in msg and "\n" not in msg
    finally:
        p.kill()
        p.wait()
    assert lock_holders(run_file) == []


def test_a_lock_released_within_the_wait_is_not_an_error(run_file):
    p = _hold(run_file, 0.5)
    try:
        h5 = open_run_file(run_file, "r+")   # waits for the holder to close
        h5.close()
    finally:
        p.wait()
