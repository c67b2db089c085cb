"""Benchmark runner: ``python -m benchmarks [names...] [--quick] [--out DIR]`` (also ``abm bench``).

Runs the registered benchmark modules (all of them but those of
:data:`benchmarks.ON_REQUEST` by default, in :data:`benchmarks.DEFAULT_ORDER`;
``--patients N`` / ``--workers N`` go to the benchmarks that take them, e.g.
``python -m benchmarks trial --patients 100``), writes ``<out>/<name>.json`` (default
``benchmarks/results``) and ``<out>/RESULTS.md`` (every table, the machine
and its load average), and prints the tables. A benchmark that fails is
reported in both and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import time
import traceback
from pathlib import Path

from benchmarks import DEFAULT_ORDER, ON_REQUEST, REGISTRY, machine_info, markdown_table


def _section(result: dict) -> str:
    lines = [f"## {result.get('title', result['name'])}", ""]
    if "error" in result:
        lines += ["FAILED: " + result["error"].strip().splitlines()[-1], ""]
    else:
        lines += [markdown_table(result["columns"], result["rows"]), ""]
        lines += [f"- {note}" for note in result.get("notes", [])]
    m = result.get("machine", {})
    la0, la1 = m.get("loadavg_before"), m.get("loadavg")
    fmt = (lambda la: "/".join(f"{x:.2f}" for x in la) if la else "?")
    lines += ["", f"({result['name']}: {result['wall_s']:.1f} s; load average (1/5/15 min) "
                  f"{fmt(la0)} before, {fmt(la1)} after)", ""]
    return "\n".join(lines)


def _header(names, quick: bool, machine: dict) -> str:
    return "\n".join([
        "# Benchmark results", "",
        f"`python -m benchmarks {' '.join(names)}{' --quick' if quick else ''}` "
        f"on {machine['time']}", "",
        f"- machine: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gb'] or 0:.0f} GiB, {machine['platform']}",
        f"- python {machine['python']}, numpy {machine['numpy']}, numba {machine['numba']} "
        f"({machine['numba_threads_max']} threads max), abm {machine['abm']}",
        f"- load average at start (1/5/15 min): "
        + "/".join(f"{x:.2f}" for x in (machine['loadavg'] or ())), "",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*",
                        help=f"benchmarks to run (default: all, in the order {list(DEFAULT_ORDER)})")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repetitions (smoke run)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"),
                        help="folder for <name>.json and RESULTS.md (default: benchmarks/results)")
    parser.add_argument("--patients", type=int, metavar="N",
                        help="virtual patients of the trial benchmark (default 10)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="local workers of the trial benchmark (default 2)")
    parser.add_argument("--list", action="store_true", help="list the registered benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(sorted(REGISTRY)))
        return 0
    names = args.names or [n for n in DEFAULT_ORDER if n in REGISTRY] + sorted(
        set(REGISTRY) - set(DEFAULT_ORDER) - ON_REQUEST)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {sorted(REGISTRY)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    machine0 = machine_info()
    sections, failed = [], []
    md_path = out / "RESULTS.md"
    for name in names:
        load_before = machine_info()["loadavg"]
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(REGISTRY[name])
            takes = inspect.signature(module.run).parameters
            extra = {k: getattr(args, k) for k in ("patients", "workers")
                     if k in takes and getattr(args, k) is not None}
            result = module.run(quick=args.quick, **extra)
        except Exception:  # report and go on with the other benchmarks
            result = {"title": name, "error": traceback.format_exc(), "columns": [], "rows": []}
            failed.append(name)
        result.setdefault("name", name)
        result["quick"] = args.quick
        result["wall_s"] = time.perf_counter() - t0
        result["machine"] = machine_info()
        result["machine"]["loadavg_before"] = load_before
        path = out / f"{name}.json"
        path.write_text(json.dumps(result, indent=2, default=float))
        section = _section(result)
        sections.append(section)
        print(section + f"(written to {path})\n", flush=True)
        if "error" in result:
            print(result["error"], file=sys.stderr)
        # rewrite the summary after every benchmark, so a cut-off run keeps what it measured
        md_path.write_text(_header(names, args.quick, machine0) + "\n" + "\n".join(sections)
                           + f"\nTotal: {time.perf_counter() - t_all:.0f} s\n")
    total = time.perf_counter() - t_all
    print(f"all benchmarks: {total:.0f} s; summary in {md_path}"
          + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
