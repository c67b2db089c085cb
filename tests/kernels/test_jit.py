"""The jit wrapper: resolved entries, one specialisation per signature, the compile lock."""

import json
import os
import subprocess
import sys
from collections import namedtuple

import numpy as np
import pytest

from abm.kernels.jit import JIT_DISABLED, jit, resolved

Pair = namedtuple("Pair", ["a", "b"])


@jit
def _weighted_sum(pair, w):
    return (pair.a * w).sum() + pair.b.sum()


def test_resolved_entry_gives_the_dispatchers_result():
    args = (Pair(np.arange(5.0), np.ones(3)), 2.0)
    expected = _weighted_sum(*args)                      # compiles for these types
    entry = resolved(_weighted_sum, args)
    if not JIT_DISABLED:
        assert entry is not _weighted_sum                # the compiled entry, not the dispatcher
    assert entry(*args) == expected == 23.0


def test_unseen_argument_types_fall_back_to_the_dispatcher():
    _weighted_sum(Pair(np.arange(5.0), np.ones(3)), 2.0)
    other = (Pair(np.arange(5, dtype=np.int32), np.ones(3)), 2.0)   # never compiled for int32
    assert resolved(_weighted_sum, other) is _weighted_sum


def test_a_plain_function_standing_in_for_a_kernel_is_returned_as_is():
    # the benchmark's per-kernel timers wrap a dispatcher in a Python function
    def timed(*args):
        return _weighted_sum(*args)
    args = (Pair(np.arange(5.0), np.ones(3)), 2.0)
    assert resolved(timed, args) is timed and timed(*args) == 23.0


# -- one specialisation per signature, and the compile lock ----------------------

# Not cached: a cached _outer would be loaded from disk without compiling _inner at all,
# so a warm cache (a second run of the suite) would leave _inner.signatures empty.
@jit(cache=False)
def _inner(x, k):
    return x * k


@jit(cache=False)
def _outer(x):
    return _inner(x, 1) + _inner(x, 2) + _inner(x, 3)


@pytest.mark.skipif(JIT_DISABLED, reason="needs the JIT")
def test_constant_arguments_do_not_multiply_specialisations():
    assert _outer(2.0) == 12.0
    # the three literal call sites share one compiled signature (float64, int64)
    assert len(_inner.signatures) == 1


SCRIPT = r"""
import json, os, sys, time
folder, me = sys.argv[1], sys.argv[2]
from abm.kernels.jit import compile_stats
from abm.kernels import matrix_exp
import numpy as np
open(os.path.join(folder, "ready-" + me), "w").close()
while len([f for f in os.listdir(folder) if f.startswith("ready-")]) < 2:
    time.sleep(0.001)           # both processes ask for the kernel at the same moment
matrix_exp.expm_small(np.eye(3))
print(json.dumps(compile_stats()))
"""


@pytest.mark.skipif(JIT_DISABLED, reason="needs the JIT")
def test_two_processes_compile_a_kernel_once_between_them(tmp_path):
    """Started together on an empty cache, one process compiles and the other loads."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), str(i)], env=env,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(2)]
    stats = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        stats.append(json.loads(out.strip().splitlines()[-1]))
    # expm_small and the helper it calls: compiled once in all, loaded by the other process
    assert sum(s["cache_misses"] for s in stats) == 2, stats
    assert sum(s["cache_hits"] for s in stats) == 1, stats


def test_a_held_lock_is_reentrant_and_released(tmp_path, monkeypatch):
    from abm.kernels import jit as J
    monkeypatch.setattr(J, "CACHE_DIR", str(tmp_path))
    with J._compile_lock("k"):
        with J._compile_lock("k"):   # a nested compile of the same kernel does not wait
            pass
    with J._compile_lock("k"):       # released on exit
        pass
