"""Compilation is paid once per machine: a second process loads kernels from the disk cache."""

import json
import os
import subprocess
import sys

from abm.kernels.jit import JIT_DISABLED

import pytest

SCRIPT = r"""
import json, time
t0 = time.perf_counter()
from abm.config import config_from_dict
from abm.build import build_simulation
from abm.kernels.jit import compile_stats
cfg = config_from_dict({"lattice": {"shape": [24, 24]}, "tumour": {"initial_cells": 50},
                        "run": {"start_day": 0.0, "end_day": 0.05, "seed": 1}})
sim = build_simulation(cfg)
sim.run()
print(json.dumps(dict(compile_stats(), seconds=time.perf_counter() - t0)))
"""


@pytest.mark.skipif(JIT_DISABLED, reason="needs the JIT")
def test_second_process_hits_cache(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = []
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                             env=env, timeout=600)
        assert res.returncode == 0, res.stderr
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["cache_misses"] > 0, first        # compiled in the first process
    assert second["cache_misses"] == 0, second     # nothing recompiled in the second
    assert second["cache_hits"] > 0, second      # loaded from the on-disk cache
    print(f"cold {first['seconds']:.2f} s, warm {second['seconds']:.2f} s")
