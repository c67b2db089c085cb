"""Command-line interface: ``abm run``, ``abm validate``, ``abm show-config``.

Errors caused by input (configs, files, arguments) print one line and exit
with code 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from abm import __version__
from abm.errors import AbmError


def _cmd_validate(args) -> int:
    from abm.config import load_config
    for path in args.configs:
        cfg = load_config(path)
        print(f"{path}: ok ({len(cfg.lattice.shape)}D lattice {list(cfg.lattice.shape)}, "
              f"product {cfg.product.preset}, days {cfg.run.start_day:g}..{cfg.run.end_day:g})")
    return 0


def _cmd_show_config(args) -> int:
    from abm.config import load_config, to_json, to_toml
    cfg = load_config(args.config)
    print(to_json(cfg) if args.json else to_toml(cfg))
    return 0


def _cmd_run(args) -> int:
    from abm.config import load_config
    from abm.io.writer import RunWriter
    from abm.kernels.jit import compile_stats, set_threads
    from abm.simulation import Simulation

    overrides: dict = {}
    if args.seed is not None:
        overrides.setdefault("run", {})["seed"] = args.seed
    if args.days is not None:
        overrides.setdefault("run", {})["end_day"] = args.days
    cfg = load_config(args.config, overrides)
    set_threads(args.threads if args.threads is not None else cfg.run.threads)
    out_dir = Path(args.out) if args.out else Path(cfg.output.dir)
    t0 = time.perf_counter()
    sim = Simulation(cfg)
    path = out_dir / cfg.run.name / f"{cfg.run.name}_seed{sim.seed}.h5"
    writer = RunWriter(path, sim)
    writer.open()
    sim.add_writer(cfg.run.every_steps(cfg.run.record_every_min), writer.record)
    print(f"abm: running {args.config} (seed {sim.seed}, {sim.n_steps} steps of "
          f"{cfg.run.dt_min:g} min, day {cfg.run.start_day:g} to {cfg.run.end_day:g})",
          file=sys.stderr)
    sim.run(progress=not args.quiet and sys.stderr.isatty())
    timings = dict(sim.timings, total_s=time.perf_counter() - t0, **{
        f"numba_{k}": v for k, v in compile_stats().items() if k != "jit_disabled"})
    out = writer.close(timings)
    counts = sim.state.counts()
    print(f"abm: done in {timings['total_s']:.1f} s; day {sim.state.time_day:g}: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"abm: wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="abm",
        description="Stochastic agent-based model of CAR-T therapy, CRS and ICANS.",
        epilog="Run 'abm COMMAND --help' for the options of a command.")
    p.add_argument("--version", action="version", version=f"abm {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="simulate one virtual patient from a TOML config",
                       description="Simulate one virtual patient and write an HDF5 file "
                                   "under OUT/<run.name>/.")
    r.add_argument("config", help="TOML config file (e.g. configs/default.toml)")
    r.add_argument("--out", metavar="DIR", help="output directory (default: output.dir, 'runs')")
    r.add_argument("--seed", type=int, metavar="N", help="run seed (overrides run.seed)")
    r.add_argument("--days", type=float, metavar="D", help="override run.end_day")
    r.add_argument("--threads", type=int, metavar="N", help="Numba threads (default: run.threads or all)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_run)

    v = sub.add_parser("validate", help="check configs without running",
                       description="Validate one or more TOML configs; exit 2 on the first error.")
    v.add_argument("configs", nargs="+", metavar="CONFIG")
    v.set_defaults(func=_cmd_validate)

    s = sub.add_parser("show-config", help="print the fully resolved config",
                       description="Print every parameter of the resolved config, with units.")
    s.add_argument("config")
    s.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    s.set_defaults(func=_cmd_show_config)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AbmError as exc:
        print(f"abm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("abm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
