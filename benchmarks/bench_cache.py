"""Compile cost is paid once per machine: a cold process versus the processes after it.

Each row is one fresh Python process that imports the package, builds the
default virtual patient (``configs/default.toml``) and takes its first
step. All of them share one new, empty ``NUMBA_CACHE_DIR``: the first
process compiles every kernel the step needs and stores the machine code,
the later ones load it. Reported per process:

* ``start to first step (s)``: wall time from launching the interpreter to
  the end of the first step (what a user waits before a run starts moving);
* ``import``, ``build``, ``first step``: the parts measured inside the process
  (first step = compile, or load from the cache);
* ``cache hits`` / ``misses``: compiled functions loaded from / written to
  the cache (:func:`abm.kernels.jit.compile_stats`); a warm process has no
  misses, i.e. it compiled nothing.

A last row repeats the cold process on another empty cache with helper
processes compiling alongside it, as ``abm run`` does (:mod:`abm.io.warmup`;
at least one helper, one per idle CPU beyond the first).

Target (README.md, Performance): a second process reaches its first step in < 1 s
of compile/cache-load time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "default.toml"

COLUMNS = ["process", "start to first step (s)", "import (s)", "build (s)", "first step (s)",
           "cache hits", "cache misses", "cpu (s)"]

#: Run in the child: times from interpreter start (approximately: the
#: ``-c`` code starts right after interpreter start-up) to the first step.
CHILD = r"""
import time
t0 = time.perf_counter()
import json, os, sys
sys.path.insert(0, {root!r})
from abm.config import load_config
from abm.kernels.jit import compile_stats, set_threads
from abm.build import build_simulation
from abm.io import warmup
t1 = time.perf_counter()
set_threads(1)
cfg = load_config({config!r})
helpers = warmup.start(cfg, helpers={helpers}) if {helpers} else None   # as `abm run` does
sim = build_simulation(cfg)
t2 = time.perf_counter()
sim.step()
t3 = time.perf_counter()
if helpers is not None:
    helpers.stop()
print(json.dumps(dict(import_s=t1 - t0, build_s=t2 - t1, first_step_s=t3 - t2,
                      cpu_s=time.process_time(), stats=compile_stats())))
"""


def one_process(cache_dir: str, helpers: int = 0) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    code = CHILD.format(root=str(ROOT), config=str(CONFIG), helpers=int(helpers))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=1200)
    wall = time.perf_counter() - t0
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["start_to_first_step_s"] = wall
    return res


def run(quick: bool) -> dict:
    warm_reps = 1 if quick else 3
    rows = []
    from abm.io.warmup import default_helpers
    n_help = max(1, default_helpers())
    with tempfile.TemporaryDirectory(prefix="abm-bench-cache-") as cache:
        runs = [("cold (empty cache)", one_process(cache))]
        runs += [(f"warm #{i + 1}", one_process(cache)) for i in range(warm_reps)]
    with tempfile.TemporaryDirectory(prefix="abm-bench-cache-") as cache:
        helped = one_process(cache, n_help)   # main process only: helpers' CPU not counted
    for label, r in runs:
        rows.append({"process": label, "start to first step (s)": r["start_to_first_step_s"],
                     "import (s)": r["import_s"], "build (s)": r["build_s"],
                     "first step (s)": r["first_step_s"], "cache hits": r["stats"]["cache_hits"],
                     "cache misses": r["stats"]["cache_misses"], "cpu (s)": r["cpu_s"], "raw": r})
    rows.append({"process": f"cold, {n_help} helper process(es) (abm run)",
                 "start to first step (s)": helped["start_to_first_step_s"],
                 "import (s)": helped["import_s"], "build (s)": helped["build_s"],
                 "first step (s)": helped["first_step_s"],
                 "cache hits": helped["stats"]["cache_hits"],
                 "cache misses": helped["stats"]["cache_misses"], "cpu (s)": helped["cpu_s"],
                 "raw": helped})
    cold = runs[0][1]
    warm_first = sorted(r["first_step_s"] for _, r in runs[1:])
    warm_total = sorted(r["start_to_first_step_s"] for _, r in runs[1:])
    med_first = warm_first[len(warm_first) // 2]
    med_total = warm_total[len(warm_total) // 2]
    misses = max(r["stats"]["cache_misses"] for _, r in runs[1:])
    notes = [
        f"cold process: {cold['start_to_first_step_s']:.1f} s to its first step, of which "
        f"{cold['first_step_s']:.1f} s compiling ({cold['stats']['cache_misses']} functions)",
        f"warm processes (same cache): {med_total:.2f} s to the first step (median), of which "
        f"{med_first:.2f} s loading compiled kernels; {misses} recompiled "
        f"({'compile paid once per machine' if misses == 0 else 'SOME KERNELS RECOMPILED'})",
        f"target: cache load < 1 s: {'met' if med_first < 1.0 else 'NOT met'}",
        f"cold with {n_help} helper process(es) compiling alongside (abm run, "
        f"abm/io/warmup.py): {helped['start_to_first_step_s']:.1f} s to the first step; "
        "its cpu column is the main process only; the helpers' hits are the main process's "
        "loads of kernels they compiled",
        "the cache lives in $NUMBA_CACHE_DIR/<hash of abm/kernels/*.py> (default "
        "~/.cache/cart-abm/numba/...): editing a kernel starts a fresh one",
    ]
    return {"title": "Compile cache: cold versus warm process (default patient, first step)",
            "columns": COLUMNS, "rows": rows, "notes": notes,
            "cold_first_step_s": cold["first_step_s"], "warm_first_step_s": med_first,
            "warm_start_to_first_step_s": med_total,
            "cold_helped_start_to_first_step_s": helped["start_to_first_step_s"]}
