"""Cytokine field solvers: implicit LOD, explicit stencil, source-sink.

Six species (``F = 6``) on 2D 256x256 and 512x512 and 3D 64^3, with 1 and 2
Numba threads. Reported per row:

* ``first call (s)``: the first call in this process (compile, or load from
  the on-disk cache when warm); the cold compile of every kernel is measured
  apart in a fresh process with an empty cache (full runs only);
* warm time per step: median and spread (quartiles, min-max) over reps;
* ``updates/s``: voxel-species updates per second (one sub-step of the
  explicit scheme counts as one update), from the median wall time;
  ``updates/s (cpu)`` from the median process CPU time (one thread only),
  which other processes on a shared machine inflate less;
* ``x NumPy``: time of the plain NumPy/SciPy reference
  (:mod:`abm.kernels.diffusion_ref`) for the same work, divided by the
  kernel's time;
* explicit only: achieved memory traffic, 16 bytes (read + write of one
  float64) per voxel-species per sub-step, against the copy bandwidth of
  ``np.copyto`` on 256 MiB arrays measured in the same run;
* the source-sink rows with cells at 3 % of the sites compare the default
  exact mode with the sparse ``decay_after`` mode the field phase uses with
  the implicit solver (it visits only sites with a source, uptake or
  exchange; the decay of the other sites is left to the implicit step, so
  its time excludes that work).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile

import numba
import numpy as np

from abm.kernels import diffusion_explicit as DE
from abm.kernels import diffusion_implicit as DI
from abm.kernels import source_sink as SS
from abm.kernels import diffusion_ref as ref
from benchmarks import time_call

H_UM = 10.0
DT_S = 360.0
F = 6
D_UM2_S = np.array([20.0, 20.0, 20.0, 20.0, 20.0, 12.0])
DECAY_PER_S = np.full(F, math.log(2) / 3600.0)
EXPLICIT_DT_S = 6.0  # a dozen sub-steps, so a rep is short; results are per sub-step
TARGET_IMPLICIT = 1.5e8  # voxel-species updates/s per thread, 6 species on 512^2 (README.md, Performance)

COLUMNS = ["kernel", "shape", "threads", "first call (s)", "median (ms)", "q1-q3 (ms)",
           "min-max (ms)", "cpu (ms)", "updates/s", "updates/s (cpu)", "x NumPy", "GB/s",
           "% copy BW"]


def _threads() -> list[int]:
    return [1, 2] if numba.config.NUMBA_NUM_THREADS >= 2 else [1]


COPY_MIB = 256


def copy_bandwidth(quick: bool) -> float:
    """Bytes read + written per second by ``np.copyto`` on arrays larger than any cache."""
    n = (64 if quick else COPY_MIB) * 2**20 // 8
    a = np.random.default_rng(0).random(n)
    b = np.empty_like(a)
    t = time_call(lambda: np.copyto(b, a), reps=3 if quick else 10)
    return 2 * a.nbytes / t["median"]


def _row(kernel, shape, threads, t, n_updates, per_call=1, ref_s=None, copy_bw=None):
    med = t["median"] / per_call
    row = {
        "kernel": kernel, "shape": "x".join(map(str, shape)), "threads": threads,
        "first call (s)": t["first"], "median (ms)": med * 1e3,
        "q1-q3 (ms)": f"{t['q1'] / per_call * 1e3:.3g}-{t['q3'] / per_call * 1e3:.3g}",
        "min-max (ms)": f"{t['min'] / per_call * 1e3:.3g}-{t['max'] / per_call * 1e3:.3g}",
        "cpu (ms)": t["cpu_median"] / per_call * 1e3,
        "updates/s": n_updates / med, "reps": t["reps"], "raw": t,
    }
    if threads == 1 and t["cpu_median"] > 0:   # with 2 threads CPU time sums both threads
        row["updates/s (cpu)"] = n_updates / (t["cpu_median"] / per_call)
    if ref_s is not None:
        row["x NumPy"] = ref_s / med
    if copy_bw is not None:
        bw = 16 * n_updates / med
        row["GB/s"] = bw / 1e9
        row["% copy BW"] = 100 * bw / copy_bw
    return row


def _cold_compile() -> dict:
    """First-call times of every kernel in a fresh process with an empty Numba cache."""
    script = r"""
import json, time, numpy as np
from abm.kernels import diffusion_explicit as DE, diffusion_implicit as DI, source_sink as SS
out = {}
def first(name, fn):
    t = time.perf_counter(); fn(); out[name] = time.perf_counter() - t
c = np.random.rand(6, 96, 96); n = 96 * 96; z = np.zeros((6, n))  # > 1 source-sink block
for par in (False, True):
    tag = "parallel" if par else "serial"
    first(f"implicit {tag}", lambda: DI.make_implicit_stepper(c.shape, 10, 360, 20, 1e-4, parallel=par)(c))
    first(f"explicit {tag}", lambda: DE.make_explicit_stepper(c.shape, 10, 3, 20, 1e-4, parallel=par)(c))
    first(f"source-sink {tag}", lambda: SS.make_source_sink_stepper(c.shape, 10, 360, 1e-3, parallel=par)(
        c, z, z, np.zeros(n), np.zeros(6)))
print(json.dumps(out))
"""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=tmp)
        res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, check=True, timeout=600)
    return json.loads(res.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    reps = 3 if quick else 15
    shapes = [(F, 256, 256), (F, 64, 64, 64)] if quick else [(F, 256, 256), (F, 512, 512),
                                                              (F, 64, 64, 64)]
    copy_bw = copy_bandwidth(quick)
    before = numba.get_num_threads()
    rows = []
    rng = np.random.default_rng(1)
    try:
        for shape in shapes:
            c0 = rng.random(shape)
            n = c0.size
            # NumPy references, timed once per shape (single-threaded NumPy/SciPy)
            t_ref_imp = time_call(lambda: ref.implicit_step_ref(c0, H_UM, DT_S, D_UM2_S, DECAY_PER_S),
                                  reps=1 if quick else 3)["median"]
            probe = DE.make_explicit_stepper(shape, H_UM, EXPLICIT_DT_S, D_UM2_S, DECAY_PER_S)
            t_ref_exp = time_call(lambda: ref.explicit_step_ref(
                c0, H_UM, probe.dt_sub_s, D_UM2_S, DECAY_PER_S), reps=1 if quick else 3)["median"]
            for threads in _threads():
                numba.set_num_threads(threads)
                c = c0.copy()
                imp = DI.make_implicit_stepper(shape, H_UM, DT_S, D_UM2_S, DECAY_PER_S)
                rows.append(_row("implicit LOD", shape, threads, time_call(lambda: imp(c), reps), n,
                                 ref_s=t_ref_imp))
                c = c0.copy()
                exp = DE.make_explicit_stepper(shape, H_UM, EXPLICIT_DT_S, D_UM2_S, DECAY_PER_S)
                rows.append(_row(f"explicit (n_sub={exp.n_sub}), per sub-step", shape, threads,
                                 time_call(lambda: exp(c), max(2, reps // 3)), n,
                                 per_call=exp.n_sub, ref_s=t_ref_exp, copy_bw=copy_bw))
        # source-sink: 7 species on 512^2 (256^2 quick), sparse and dense uptake
        side = 256 if quick else 512
        shape = (7, side, side)
        sites = side * side
        c0 = rng.random(shape)
        S = rng.random((7, sites)) * (rng.random((7, sites)) < 0.1)
        perm = rng.random(sites) * (rng.random(sites) < 0.02)
        kex = np.full(7, 1e-3)
        blood = np.ones(7)
        for label, K in (("10% sites", rng.random((7, sites)) * (rng.random((7, sites)) < 0.1) * 1e-3),
                         ("all sites", rng.random((7, sites)) * 1e-3)):
            for method in SS.SOURCE_SINK_METHODS:
                t_ref = time_call(lambda: ref.source_sink_ref(c0, H_UM, DT_S, S, K, perm, kex, blood,
                                                              method=method), reps=1 if quick else 3)
                for threads in _threads():
                    numba.set_num_threads(threads)
                    c = c0.copy()
                    ss = SS.make_source_sink_stepper(shape, H_UM, DT_S, kex, method=method)
                    rows.append(_row(f"source-sink {method}, uptake at {label}", shape, threads,
                                     time_call(lambda: ss(c, S, K, perm, blood), reps), c0.size,
                                     ref_s=t_ref["median"]))
        # the field phase's mode: cells at a few % of the sites, decay left to the implicit step
        # (decay_after); the default exact mode on the same inputs for comparison
        dens = rng.random(sites) < 0.03
        S3 = rng.random((7, sites)) * dens * (rng.random((7, sites)) < 0.5)
        K3 = rng.random((7, sites)) * dens * (rng.random((7, sites)) < 0.3) * 1e-3
        perm3 = (1.0 + rng.random(sites)) * (rng.random(sites) < 0.03)
        kdec = np.full(7, math.log(2) / 3600.0)
        t_ref = time_call(lambda: ref.source_sink_ref(c0, H_UM, DT_S, S3, K3, perm3, kex, blood,
                                                      kdec), reps=1 if quick else 3)
        for label, after in (("exact", False), ("exact sparse (decay_after)", True)):
            for threads in _threads():
                numba.set_num_threads(threads)
                c = c0.copy()
                ss = SS.make_source_sink_stepper(shape, H_UM, DT_S, kex, kdec, decay_after=after)
                rows.append(_row(f"source-sink {label}, cells at 3% sites", shape, threads,
                                 time_call(lambda: ss(c, S3, K3, perm3, blood, decayed=False),
                                           reps), c0.size, ref_s=t_ref["median"]))
        # the field phase as the model runs it: the sparse source-sink step then the implicit
        # step, as two stepper calls and fused into one compiled call (same numbers), on a
        # 7-species 128^2 patch (the default lattice) and on 512^2 (256^2 quick)
        for fside in (128, side):
            fshape = (7, fside, fside)
            fsites = fside * fside
            fc0 = rng.random(fshape)
            fd = rng.random(fsites) < 0.08
            fS = rng.random((7, fsites)) * fd * (rng.random((7, fsites)) < 0.5)
            fK = rng.random((7, fsites)) * fd * (rng.random((7, fsites)) < 0.3) * 1e-3
            fperm = (1.0 + rng.random(fsites)) * (rng.random(fsites) < 0.03)
            D7 = np.full(7, 20.0)
            for threads in _threads():
                numba.set_num_threads(threads)
                ss = SS.make_source_sink_stepper(fshape, H_UM, DT_S, kex, kdec, decay_after=True)
                imp = DI.make_implicit_stepper(fshape, H_UM, DT_S, D7, kdec)
                fused = DI.make_field_step(ss, imp)
                c = fc0.copy()
                # clear=False: the sources and uptakes stay, so every rep does the same work
                for label, fn in (
                        ("two calls", lambda: (ss(c, fS, fK, fperm, blood, decayed=False),
                                               imp(c))),
                        ("fused", lambda: fused(c, fS, fK, fperm, blood, decayed=False))):
                    rows.append(_row(f"field step (source-sink + implicit), {label}", fshape,
                                     threads, time_call(fn, reps * 4), fc0.size))
    finally:
        numba.set_num_threads(before)
    notes = [f"copy bandwidth (np.copyto, {64 if quick else COPY_MIB} MiB arrays): "
             f"{copy_bw / 1e9:.1f} GB/s; the explicit kernel runs all sub-steps of one species "
             "before the next, so its two 2 MiB (512^2) buffers live in L2/L3 and it can beat "
             "a DRAM copy",
             "first call = compile or on-disk cache load in this process",
             f"load average during the run: {os.getloadavg()}",
             "field step rows: the field phase's two steps (sources at 8 % of the sites) as "
             "two stepper calls and as one compiled call (make_field_step; bit-identical)"]
    for kernel, what in (("implicit LOD", "implicit"), ("explicit", "explicit")):
        r = [x for x in rows if x["kernel"].startswith(kernel) and x["shape"] == f"{F}x512x512"
             and x["threads"] == 1]
        if r:
            r = r[0]
            if what == "implicit":
                best = max(r["updates/s"], r.get("updates/s (cpu)") or 0.0)
                notes.append(f"target: implicit 6 species on 512^2 >= {TARGET_IMPLICIT:.1e} "
                             f"voxel-species/s per thread: {r['updates/s']:.3g} (wall median), "
                             f"{r.get('updates/s (cpu)') or float('nan'):.3g} (CPU) -- "
                             f"{'met' if best >= TARGET_IMPLICIT else 'NOT met'}")
            else:
                notes.append(f"explicit 6 species on 512^2: {r['GB/s']:.1f} GB/s = "
                             f"{r['% copy BW']:.0f} % of the copy bandwidth (target: within 2x of "
                             "the bandwidth bound, i.e. >= 50 %)")
    result = {"title": "Cytokine field solvers (abm.kernels.diffusion_implicit, diffusion_explicit, source_sink)", "columns": COLUMNS,
              "rows": rows, "copy_bandwidth_Bps": copy_bw, "notes": notes}
    if not quick:
        cold = _cold_compile()
        result["cold_compile_s"] = cold
        notes.append("cold compile, fresh process, empty cache (s): "
                     + ", ".join(f"{k} {v:.2f}" for k, v in cold.items()))
    return result
