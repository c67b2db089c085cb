"""End to end: one default virtual patient, and the cost of a step versus lattice and burden.

Part 1 -- the default patient (``configs/default.toml``: 128 x 128 patch,
day -5 to 28, 7920 steps of 6 min), run as ``abm run`` runs it
(:func:`abm.io.run.run_to_file`, HDF5 output included) in a fresh process
with the Numba cache already filled. Per repetition:

* ``first step (s)``: the first step of the process (loads every kernel from
  the on-disk cache; the cold compile is benchmark ``cache``);
* ``simulate (s)``: the remaining 7919 steps (wall time); ``cpu (s)``: the
  CPU time of the simulation itself (summed over the processes of the step,
  so without set-up and output);
* ``write (s)``: HDF5 time series, snapshots and checkpoints;
* ``per day (s)``: median wall time per simulated day, and its range;
* ``x target``: simulation CPU time / the 10 s target;
* ``total (s)``: process start to file closed (imports, set-up, compile
  or cache load, simulation, output).

The CPU time of each process of the step (agents, fields, blood, ...) is
summed over the run, so the table says where a step's time goes.

Part 1b -- where the wall time of ``abm run configs/default.toml`` goes
(:func:`child_split`, a fresh process with the cache warm, as ``abm run``
runs it, without the per-process timers of part 1). JSON key ``split``:

* ``startup_s``: interpreter start and imports (the parent's wall time of
  the process less what the child measured from its first line);
* ``setup_s``: config, model assembly and the new file;
* ``compile_s``: the first step (loads every kernel from the on-disk cache);
* ``simulate_s``: the other steps, split into ``kernel_s`` (wall time inside
  compiled kernels, summed over every call of a kernel from Python: each
  such call is wrapped by a timer, ~0.3 us a call) and ``python_s`` (the
  rest: the Python between kernels);
* ``record_s``: assembling the time-series records (model, in the
  simulation's thread); ``write_s``: the simulation's thread writing
  (handing data to the writer thread, waiting for it, the final write);
  ``write_background_s``: the writer thread's own work, concurrent;
* ``total_s``: process start to file closed; ``ratio_total_to_kernel``.

Part 2 -- scaling: the same model from day 0 (infusion) on lattices of
64^2 ... 512^2 sites with the tumour filling the same fraction of the patch,
and on the 128^2 patch with 2000 ... 12000 initial tumour cells. Each row
times 120 steps after 10 warm-up steps (process CPU time and wall time per
step, plus the CPU time of the agent and field phases). The exponent ``b``
of ``cost ~ cells^b`` is fitted by least squares on log-log axes, for the
whole step and for the agent phase alone.

Target (README.md, Performance): a default patient in under 10 s after compilation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "default.toml"
TARGET_S = 10.0

COLUMNS = ["case", "cells", "lattice", "steps", "first step (s)", "simulate (s)", "cpu (s)",
           "write (s)", "total (s)", "ms/step", "per day (s)", "x target"]


def _timed(cls, acc: dict):
    """A subclass of process class ``cls`` whose step adds its CPU time to ``acc[name]``."""
    name = cls.__name__
    base_step = cls.step

    def step(self, state):
        t0 = time.process_time()
        base_step(self, state)
        acc[name] = acc.get(name, 0.0) + time.process_time() - t0

    return type(name, (cls,), {"step": step, "__doc__": cls.__doc__})


def child_patient(config_path: str, end_day: float | None, out_json: str) -> None:
    """Run one patient to a file and write its timings as JSON (runs in a subprocess)."""
    t_start = time.perf_counter()
    c_start = time.process_time()
    from abm.config import load_config
    from abm.io.run import run_to_file
    from abm.kernels.jit import compile_stats, set_threads
    from abm.build import default_processes
    t_import = time.perf_counter() - t_start

    overrides = {"run": {"end_day": end_day}} if end_day is not None else None
    cfg = load_config(config_path, overrides)
    set_threads(1)
    spd = int(round(1440.0 / cfg.run.dt_min))
    acc: dict = {}
    days: list = []
    clock = {"wall": None, "cpu": None}

    def per_day(sim):
        w, c = time.perf_counter(), time.process_time()
        if clock["wall"] is not None:
            days.append({"day": sim.state.time_day, "wall_s": w - clock["wall"],
                         "cpu_s": c - clock["cpu"], **sim.state.counts()})
        clock["wall"], clock["cpu"] = w, c

    processes = [_timed(p, acc) for p in default_processes(cfg)]
    with tempfile.TemporaryDirectory(prefix="abm-bench-patient-") as tmp:
        c0 = time.process_time()
        res = run_to_file(cfg, path=Path(tmp) / "patient.h5", processes=processes,
                          extra_writers=[(spd, per_day)], log=lambda m: None)
        cpu_run = time.process_time() - c0
    t = res.timings
    out = {
        "import_s": t_import, "steps": res.sim.state.step, "n_steps": cfg.run.n_steps,
        "setup_s": t["wall_setup_s"], "first_step_s": t["wall_compile_s"],
        "simulate_s": t["wall_simulate_s"], "write_s": t["wall_write_s"],
        "run_total_s": t["wall_total_s"], "cpu_run_s": cpu_run,
        "cpu_process_s": time.process_time() - c_start,
        "total_s": time.perf_counter() - t_start,
        "sim_cpu_s": sum(acc.values()),
        "process_cpu_s": acc, "per_day": days, "final_counts": res.sim.state.counts(),
        "compile_stats": compile_stats(), "loadavg": os.getloadavg(),
    }
    Path(out_json).write_text(json.dumps(out, default=float))


def install_kernel_clock(acc: dict) -> int:
    """Time every compiled kernel that Python code of ``abm`` calls; returns how many are wrapped.

    Each call adds its wall time to ``acc["kernel_s"]`` and its CPU time (of the
    calling thread) to ``acc["kernel_cpu_s"]``. Kernels referenced by
    name from the model (module globals, kernel modules used as ``KS.agent_step``,
    :func:`abm.kernels.jit.resolved` entries) are wrapped where the model
    looks them up (a proxy for a kernel module); in a kernel module only the
    names no compiled function refers to (so nothing compiled ever sees a
    wrapper). Call after the model's modules are imported.
    """
    import types

    from numba.core.dispatcher import Dispatcher

    from abm.kernels.jit import registered_kernels

    acc.setdefault("kernel_s", 0.0)
    acc.setdefault("kernel_cpu_s", 0.0)
    acc.setdefault("kernel_calls", 0)
    clock, cpu = time.perf_counter, time.thread_time

    def timed(fn):
        def call(*args, **kwargs):
            t0, c0 = clock(), cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                acc["kernel_s"] += clock() - t0
                acc["kernel_cpu_s"] += cpu() - c0
                acc["kernel_calls"] += 1
        call.__wrapped__ = fn
        return call

    # the timer's own cost per call: inside the timed interval (it inflates kernel time) and
    # in all (the rest inflates the Python time), from a timed no-op
    saved = dict(acc)
    noop = timed(lambda: None)
    n = 20000
    c0 = cpu()
    for _ in range(n):
        noop()
    total = (cpu() - c0) / n
    acc["timer_inside_cpu_s"] = (acc["kernel_cpu_s"] - saved["kernel_cpu_s"]) / n
    acc["timer_inside_s"] = (acc["kernel_s"] - saved["kernel_s"]) / n
    acc["timer_outside_cpu_s"] = max(0.0, total - acc["timer_inside_cpu_s"])
    for key in ("kernel_s", "kernel_cpu_s", "kernel_calls"):
        acc[key] = saved[key]

    def names_of(code) -> set:
        out = set(code.co_names)
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                out |= names_of(c)
        return out

    in_compiled = set()
    for k in registered_kernels():
        in_compiled |= names_of(k.py_func.__code__)
    count = 0
    for name, mod in list(sys.modules.items()):
        if not name.startswith("abm.") or mod is None:
            continue
        glob = vars(mod)
        if name.startswith("abm.kernels."):
            for key, obj in list(glob.items()):
                if isinstance(obj, Dispatcher) and key not in in_compiled:
                    glob[key] = timed(obj)
                    count += 1
            continue
        for key, obj in list(glob.items()):
            if isinstance(obj, Dispatcher):
                glob[key] = timed(obj)
                count += 1
            elif isinstance(obj, types.ModuleType) and obj.__name__.startswith("abm.kernels."):
                proxy = types.ModuleType(obj.__name__)
                for attr, value in vars(obj).items():
                    if isinstance(value, Dispatcher):
                        value = timed(value)
                        count += 1
                    setattr(proxy, attr, value)
                glob[key] = proxy
        if "resolved" in glob and callable(glob["resolved"]):
            resolve = glob["resolved"]
            glob["resolved"] = lambda kernel, args, _r=resolve: timed(
                _r(getattr(kernel, "__wrapped__", kernel), args))
    return count


def child_split(config_path: str, end_day: float | None, out_json: str,
                write_thread: bool | None = None) -> None:
    """One ``abm run`` to a file, its wall time split (part 1b); writes JSON (runs in a subprocess)."""
    t_start = time.perf_counter()
    from abm.build import default_processes  # noqa: F401 - the model's modules, before the clock
    from abm.config import load_config
    from abm.io.run import run_to_file
    from abm.kernels.jit import set_threads
    import abm.model.patient  # noqa: F401
    t_import = time.perf_counter() - t_start
    acc: dict = {}
    wrapped = install_kernel_clock(acc)
    overrides = {"run": {"end_day": end_day}} if end_day is not None else None
    cfg = load_config(config_path, overrides)
    set_threads(1)
    first = {}

    def mark(sim):   # after the first step (compile / cache load): start the kernel clock
        if sim.state.step >= 1 and "kernel_s" not in first:
            first.update(kernel_s=acc["kernel_s"], kernel_cpu_s=acc["kernel_cpu_s"],
                         calls=acc["kernel_calls"], cpu=time.thread_time(),
                         wall=time.perf_counter())

    from abm.simulation import Simulation
    record_row = Simulation.record_row

    def timed_record_row(sim):   # kernels called by the records count in record_s, not simulate_s
        k0, c0, n0 = acc["kernel_s"], acc["kernel_cpu_s"], acc["kernel_calls"]
        try:
            return record_row(sim)
        finally:
            if "kernel_s" in first:
                acc["record_kernel_s"] = acc.get("record_kernel_s", 0.0) + acc["kernel_s"] - k0
                acc["record_kernel_cpu_s"] = (acc.get("record_kernel_cpu_s", 0.0)
                                              + acc["kernel_cpu_s"] - c0)
                acc["record_calls"] = acc.get("record_calls", 0) + acc["kernel_calls"] - n0

    Simulation.record_row = timed_record_row
    sim_step = Simulation.step

    def timed_step(sim):   # CPU time of the steps (after the first)
        c0 = time.thread_time()
        try:
            return sim_step(sim)
        finally:
            if "kernel_s" in first:
                acc["step_cpu_s"] = acc.get("step_cpu_s", 0.0) + time.thread_time() - c0

    Simulation.step = timed_step

    from abm.io import writer as W
    finish = W.RunWriter.finish

    def timed_finish(self, *args, **kwargs):   # the end of the simulation's steps
        first.update(cpu_end=time.thread_time(), wall_end=time.perf_counter())
        return finish(self, *args, **kwargs)

    W.RunWriter.finish = timed_finish
    c_start = time.process_time()
    kw = {} if write_thread is None else {"write_thread": write_thread}
    with tempfile.TemporaryDirectory(prefix="abm-bench-split-") as tmp:
        res = run_to_file(cfg, path=Path(tmp) / "patient.h5", extra_writers=[(1, mark)],
                          log=lambda m: None, **kw)
    t = res.timings
    calls = acc["kernel_calls"] - first["calls"] - acc.get("record_calls", 0)
    out = {"import_s": t_import, "setup_s": t["wall_setup_s"], "compile_s": t["wall_compile_s"],
           "simulate_s": t["wall_simulate_s"] - calls * (acc["timer_inside_s"]
                                                         + acc["timer_outside_cpu_s"]),
           "kernel_s": (acc["kernel_s"] - first.get("kernel_s", 0.0)
                        - acc.get("record_kernel_s", 0.0) - calls * acc["timer_inside_s"]),
           "kernel_calls": calls,
           "record_s": t["wall_record_s"], "write_s": t["wall_write_s"],
           "write_background_s": t.get("wall_write_background_s", float("nan")),
           "run_total_s": t["wall_total_s"], "child_s": time.perf_counter() - t_start,
           "steps": res.sim.state.step, "kernels_timed": wrapped,
           # CPU time of the simulation's thread over the steps after the first (simulation,
           # records and writes), of it inside kernels, and of the whole run (all threads)
           "loop_cpu_s": first["cpu_end"] - first["cpu"],
           "loop_wall_s": first["wall_end"] - first["wall"],
           "kernel_cpu_s": (acc["kernel_cpu_s"] - first["kernel_cpu_s"]
                            - acc.get("record_kernel_cpu_s", 0.0)
                            - calls * acc["timer_inside_cpu_s"]),
           # (the timers' own cost taken out: ~calls x their cost per call)
           "step_cpu_s": acc.get("step_cpu_s", 0.0) - calls * (acc["timer_inside_cpu_s"]
                                                               + acc["timer_outside_cpu_s"]),
           "timer_cpu_per_call_s": acc["timer_inside_cpu_s"] + acc["timer_outside_cpu_s"],
           "run_cpu_s": time.process_time() - c_start}
    Path(out_json).write_text(json.dumps(out, default=float))


def run_split(end_day=None, timeout=900, write_thread: bool | None = None) -> dict:
    """:func:`child_split` in a fresh process; adds ``startup_s``, ``python_s``, ``total_s``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.json"
        # (this file loaded by path: the split also runs from a copy beside another checkout)
        code = ("import sys, importlib.util as u; sys.path.insert(0, %r); "
                "s = u.spec_from_file_location('bench_patient_split', %r); "
                "m = u.module_from_spec(s); s.loader.exec_module(m); "
                "m.child_split(%r, %r, %r, %r)" % (str(ROOT), __file__, str(DEFAULT_CONFIG), end_day,
                                                   str(path), write_thread))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, timeout=timeout,
                       capture_output=True, text=True)
        total = time.perf_counter() - t0
        r = json.loads(path.read_text())
    r["total_s"] = total
    # interpreter start, imports and exit: what the child's own clock did not see of the run
    r["startup_s"] = total - r["child_s"] + r["import_s"]
    r["python_s"] = r["simulate_s"] - r["kernel_s"]
    r["python_cpu_s"] = r["step_cpu_s"] - r["kernel_cpu_s"]
    r["ratio_total_to_kernel"] = total / r["kernel_s"] if r["kernel_s"] > 0 else float("nan")
    return r


SPLIT_KEYS = ("startup_s", "setup_s", "compile_s", "simulate_s", "kernel_s", "python_s",
              "record_s", "write_s", "write_background_s", "total_s")


def _run_child(end_day, timeout=900) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.json"
        code = ("import sys; sys.path.insert(0, %r); from benchmarks.bench_patient import "
                "child_patient; child_patient(%r, %r, %r)"
                % (str(ROOT), str(DEFAULT_CONFIG), end_day, str(path)))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, timeout=timeout,
                       capture_output=True, text=True)
        res = json.loads(path.read_text())
        res["process_wall_s"] = time.perf_counter() - t0
        return res


def _scaling_sim(shape, cells):
    from abm.config import load_config
    from abm.build import build_simulation
    cfg = load_config(DEFAULT_CONFIG, {"run": {"start_day": 0.0, "end_day": 2.0},
                                       "lattice": {"shape": list(shape)},
                                       "tumour": {"initial_cells": int(cells)}})
    return build_simulation(cfg)


def _time_steps(sim, warm: int, steps: int) -> dict:
    from abm import cells as C
    acc: dict = {}
    for p in sim.processes:   # time each process's step (CPU), on this instance only
        p.step = _instance_timer(p, acc)
    sim.run(warm)
    acc.clear()
    c = sim.state.cells
    live = []
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        live.append(int(np.count_nonzero(c.kind[: c.n] != C.DEAD)))
        sim.step()
    wall = (time.perf_counter() - w0) / steps
    cpu = (time.process_time() - c0) / steps
    return {"wall_s": wall, "cpu_s": cpu, "cells": float(np.mean(live)),
            "process_cpu_s": {k: v / steps for k, v in acc.items()}}


def _instance_timer(proc, acc):
    step = proc.step
    name = type(proc).__name__

    def timed(state):
        t0 = time.process_time()
        step(state)
        acc[name] = acc.get(name, 0.0) + time.process_time() - t0

    return timed


def fit_exponent(cells, cost) -> float:
    """Least-squares slope of log(cost) against log(cells)."""
    x, y = np.log(np.asarray(cells, float)), np.log(np.asarray(cost, float))
    return float(np.polyfit(x, y, 1)[0]) if len(x) >= 2 else float("nan")


def scaling(quick: bool) -> tuple[list, dict]:
    from abm.kernels.jit import set_threads
    set_threads(1)
    frac = 8000 / (128 * 128)
    sides = [64, 128, 256] if quick else [64, 128, 256, 512]
    burdens = [2000, 8000] if quick else [2000, 4000, 8000, 12000]
    steps = 40 if quick else 120
    rows, series = [], {"lattice": [], "burden": []}
    cases = [("lattice", (s, s), int(round(frac * s * s))) for s in sides]
    cases += [("burden", (128, 128), b) for b in burdens]
    for kind, shape, cells in cases:
        sim = _scaling_sim(shape, cells)
        t = _time_steps(sim, warm=10, steps=steps)
        pc = t["process_cpu_s"]
        agents = pc.get("CellRules", 0.0) + pc.get("Extravasation", 0.0)
        fields = pc.get("FieldProcess", 0.0)
        series[kind].append((t["cells"], t["cpu_s"], agents, fields, t["wall_s"]))
        rows.append({"case": f"scaling: {kind}", "cells": int(round(t["cells"])),
                     "lattice": "x".join(map(str, shape)), "steps": steps,
                     "ms/step": t["wall_s"] * 1e3, "cpu ms/step": t["cpu_s"] * 1e3,
                     "agents cpu ms": agents * 1e3, "fields cpu ms": fields * 1e3,
                     "initial tumour": cells})
        del sim
    fits = {}
    for kind, pts in series.items():
        if len(pts) >= 2:
            cells = [p[0] for p in pts]
            fits[kind] = {"step": fit_exponent(cells, [p[1] for p in pts]),
                          "agents": fit_exponent(cells, [p[2] for p in pts]),
                          "fields": fit_exponent(cells, [p[3] for p in pts])}
    return rows, fits


def run(quick: bool) -> dict:
    reps = 1 if quick else 2
    end_day = 1.0 if quick else None   # quick: day -5 .. 1 (1440 steps)
    runs = [_run_child(end_day) for _ in range(reps)]
    sim_s = [r["simulate_s"] for r in runs]
    cpu_s = [r["sim_cpu_s"] for r in runs]
    write_s = [r["write_s"] for r in runs]
    best = runs[int(np.argmin(cpu_s))]
    rows = []
    for i, r in enumerate(runs):
        pd = [d["wall_s"] for d in r["per_day"]]
        rows.append({
            "case": f"default patient, rep {i + 1}", "cells": sum(r["final_counts"].values()),
            "lattice": "128x128", "steps": r["steps"], "first step (s)": r["first_step_s"],
            "simulate (s)": r["simulate_s"], "cpu (s)": r["sim_cpu_s"], "write (s)": r["write_s"],
            "total (s)": r["process_wall_s"], "ms/step": 1e3 * r["simulate_s"] / max(1, r["steps"] - 1),
            "per day (s)": (f"{np.median(pd):.2f} ({min(pd):.2f}-{max(pd):.2f})" if pd else None),
            "x target": r["sim_cpu_s"] / TARGET_S if not quick else None, "raw": r,
        })
    split = run_split(end_day)
    rows.append({"case": "default patient, wall split", "steps": split["steps"],
                 "lattice": "128x128", "total (s)": split["total_s"],
                 "simulate (s)": split["simulate_s"], "write (s)": split["write_s"],
                 "first step (s)": split["compile_s"], "raw": split})
    srows, fits = scaling(quick)
    rows.extend(srows)
    proc = best["process_cpu_s"]
    steps = max(1, best["steps"])
    share = ", ".join(f"{k} {1e3 * v / steps:.3f}" for k, v in
                      sorted(proc.items(), key=lambda kv: -kv[1]))
    notes = [
        f"default patient ({'day -5..1 (quick)' if quick else 'day -5..28'}, 1 thread, cache warm): "
        f"simulate {np.median(sim_s):.1f} s wall, {np.median(cpu_s):.1f} s CPU (medians of {reps}; "
        f"fastest {min(cpu_s):.1f} s CPU); write {np.median(write_s):.1f} s; first step (cache "
        f"load) {best['first_step_s']:.2f} s; process total incl. imports "
        f"{np.median([r['process_wall_s'] for r in runs]):.1f} s",
        f"CPU per step by process (ms, fastest run): {share}",
        "wall >> cpu means other processes held the cores (shared 2-core machine)",
        "wall split (s): " + ", ".join(f"{k[:-2]} {split[k]:.2f}" for k in SPLIT_KEYS)
        + f"; shares of the run: kernels {100 * split['kernel_s'] / split['total_s']:.0f} %, "
        f"Python between kernels {100 * split['python_s'] / split['total_s']:.0f} % "
        f"({100 * split['python_s'] / split['simulate_s']:.0f} % of a step), write "
        f"{100 * split['write_s'] / split['total_s']:.0f} %; total / kernels "
        f"{split['ratio_total_to_kernel']:.2f}",
    ]
    if not quick:
        wall = float(np.median(sim_s))
        cpu = float(np.median(cpu_s))
        notes.append(f"target: default patient < {TARGET_S:.0f} s after compilation: simulation "
                     f"{wall:.1f} s wall / {cpu:.1f} s CPU ({'met' if min(wall, cpu) < TARGET_S else 'NOT met'}); "
                     f"with HDF5 output {wall + np.median(write_s):.1f} s wall")
    for kind, f in fits.items():
        notes.append(f"scaling with {kind}: cost ~ cells^b with b = {f['step']:.2f} for the whole "
                     f"step (CPU), {f['agents']:.2f} for the agent phase, {f['fields']:.2f} for "
                     "the field phase")
    return {"title": "End to end: default virtual patient and scaling", "columns": COLUMNS
            + ["cpu ms/step", "agents cpu ms", "fields cpu ms"], "rows": rows, "notes": notes,
            "fits": fits, "target_s": TARGET_S, "split": split}


if __name__ == "__main__":  # pragma: no cover
    if "--split" in sys.argv:   # part 1b alone: the wall split of one default patient, as JSON
        print(json.dumps(run_split(1.0 if "--quick" in sys.argv else None,
                                   write_thread=False if "--no-write-thread" in sys.argv else None),
                         indent=1))
        sys.exit(0)
    res = run("--quick" in sys.argv)
    from benchmarks import markdown_table
    print(markdown_table(res["columns"], res["rows"]))
    for note in res["notes"]:
        print("-", note)
