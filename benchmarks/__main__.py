"""Benchmark runner: ``python -m benchmarks [names...] [--quick] [--out DIR]``.

Runs the registered benchmark modules (all of them by default), writes
``<out>/<name>.json`` (default ``benchmarks/results``) and prints a markdown
table per benchmark.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from benchmarks import REGISTRY, machine_info, markdown_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {sorted(REGISTRY)})")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repetitions (smoke run)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"),
                        help="folder for <name>.json (default: benchmarks/results)")
    parser.add_argument("--list", action="store_true", help="list the registered benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(sorted(REGISTRY)))
        return 0
    names = args.names or sorted(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {sorted(REGISTRY)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        module = importlib.import_module(REGISTRY[name])
        load_before = machine_info()["loadavg"]
        t0 = time.perf_counter()
        result = module.run(quick=args.quick)
        result.setdefault("name", name)
        result["quick"] = args.quick
        result["wall_s"] = time.perf_counter() - t0
        result["machine"] = machine_info()
        result["machine"]["loadavg_before"] = load_before
        path = out / f"{name}.json"
        path.write_text(json.dumps(result, indent=2, default=float))
        print(f"## {result.get('title', name)}\n")
        print(markdown_table(result["columns"], result["rows"]))
        for note in result.get("notes", []):
            print(f"\n- {note}")
        print(f"\n(written to {path}; {result['wall_s']:.1f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
