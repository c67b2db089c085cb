"""Command-line interface: ``abm run``, ``abm inspect``, ``abm validate``, ``abm show-config``,
``abm batch``, ``abm analyze``, ``abm bench``.

Errors caused by input (configs, files, arguments) print one line and exit
with code 2; they never show a traceback. Messages go through :mod:`logging`
(set up by :func:`main` with :func:`abm.logs.configure`): ``-v`` debug,
``-q`` warnings and errors only, ``--log-file PATH`` also into a file with
timestamps; given before or after the command.
"""

from __future__ import annotations

import argparse
import logging
import sys

from abm.version import __version__
from abm.errors import AbmError
from abm.logs import progress_mode, result

_log = logging.getLogger(__name__)


def _cmd_validate(args) -> int:
    from abm.batch import is_batch_file, validate_batch
    from abm.config import load_config
    for path in args.configs:
        if is_batch_file(path):   # a [batch] table: batch section, base and every run
            summary, notes = validate_batch(path)
            print(f"{path}: ok ({summary})" + "".join(f"\n  note: {n}" for n in notes))
            continue
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
    """Exit codes: 0 done; 2 bad input or a failed write (one line); 130 / 143 stopped by
    SIGINT / SIGTERM after writing a checkpoint (``--resume`` continues)."""
    from abm.config import load_config
    from abm.config.paths import check_output_dir
    from abm.io.run import RunInterrupted, install_stop_handlers, restore_handlers, run_to_file
    from abm.kernels.jit import set_threads

    overrides: dict = {}
    if args.seed is not None:
        overrides.setdefault("run", {})["seed"] = args.seed
    if args.days is not None:
        overrides.setdefault("run", {})["end_day"] = args.days
    cfg = load_config(args.config, overrides)
    check_output_dir(args.out if args.out is not None else cfg.output.dir, cfg.run.name,
                     cfg.run.seed if args.seed is None else args.seed)
    set_threads(args.threads if args.threads is not None else cfg.run.threads)
    if args.from_step is not None and not args.resume:
        raise AbmError("--from-step needs --resume")
    if not args.resume:
        r = cfg.run
        seed = "drawn" if r.seed is None else r.seed
        _log.info(f"running {args.config} (seed {seed}, {r.n_steps} steps of "
                  f"{r.dt_min:g} min, day {r.start_day:g} to {r.end_day:g})")
    previous = install_stop_handlers()   # SIGINT, SIGTERM: checkpoint at the next step, stop
    try:
        res = run_to_file(cfg, out_dir=args.out, resume=args.resume, from_step=args.from_step,
                          keep_checkpoints=args.keep_checkpoints,
                          progress=progress_mode(args.quiet, args.log_file), warmup=True)
    except RunInterrupted as stop:
        _log.error(f"stopped by {stop.signal_name} at step {stop.step} (day {stop.day:g}); "
                   f"checkpoint written; continue with: abm run {args.config} --resume"
                   + (f" --out {args.out}" if args.out else ""))
        return 128 + stop.signum
    finally:
        restore_handlers(previous)
    t = res.timings
    counts = res.sim.state.counts()
    result(_log, f"done in {t['wall_total_s']:.1f} s (compile {t['wall_compile_s']:.1f} s, "
                 f"simulate {t['wall_simulate_s']:.1f} s, write {t['wall_write_s']:.1f} s); "
                 f"day {res.sim.state.time_day:g}: "
                 + ", ".join(f"{k} {v}" for k, v in counts.items()))
    result(_log, f"wrote {res.path} ({res.path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _cmd_compile(args) -> int:
    import time

    from abm.batch import expand_batch, is_batch_file, load_batch
    from abm.config import load_config
    from abm.io.warmup import compile_kernels
    from abm.kernels.jit import CACHE_DIR

    for path in args.configs:
        if is_batch_file(path):   # its first run stands for all (same lattice kind, threads)
            spec = expand_batch(load_batch(path), indices=[0])[0]
            cfg = spec.resolve()
        else:
            cfg = load_config(path)
        t0 = time.perf_counter()
        n = compile_kernels(cfg, threads=args.threads if args.threads is not None
                            else cfg.run.threads)
        how = (f"{n['compiled']} compiled by this process, {n['loaded']} loaded (compiled "
               f"before, or by helper processes)" if n["compiled"] + n["loaded"]
               else "the same kernels as above")
        result(_log, f"{path}: kernels ready in {time.perf_counter() - t0:.1f} s ({how})")
    result(_log, f"cache: {CACHE_DIR}")
    return 0


def _cmd_analyze(args) -> int:
    from analysis.analyze import analyze   # imports xarray, dask, matplotlib: only here
    path = analyze(args.paths, args.out, by=args.by, covariate=args.covariate,
                   html_page=not args.no_html, bootstrap=args.bootstrap,
                   progress=False if args.quiet else None,
                   quiet=False)   # status lines: logged, the console level filters them
    result(_log, f"report in {path.parent}/ (open {path.name}"
                 f"{'' if args.no_html else ' or report.html'})")
    return 0


def _fmt_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return str(n)


def _cmd_bench(args) -> int:
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[1])
    if (Path(root) / "benchmarks" / "__init__.py").exists() and root not in sys.path:
        sys.path.insert(0, root)   # a source checkout: import benchmarks/ from it
    from benchmarks.__main__ import main as bench_main
    argv = list(args.names) + (["--quick"] if args.quick else []) + (["--list"] if args.list else [])
    if args.out:
        argv += ["--out", args.out]
    for opt in ("patients", "workers"):
        if getattr(args, opt) is not None:
            argv += [f"--{opt}", str(getattr(args, opt))]
    return bench_main(argv)


def _cmd_inspect(args) -> int:
    from analysis.io import describe_file
    info = describe_file(args.file, verify=not args.quick)
    p = info["provenance"]
    cfg = p.get("config") or {}
    run = cfg.get("run", {})
    print(f"file:            {args.file} ({_fmt_size(info['size_bytes'])})")
    print(f"schema version:  {p.get('schema_version')} (written by abm {p.get('software_version')})")
    print(f"config name:     {p.get('run_name', run.get('name'))}")
    print(f"seed:            {p.get('seed')} (replicate {p.get('replicate')})")
    days = p.get("days_simulated", 0.0)
    start = p.get("start_day", run.get("start_day", 0.0))
    print(f"days simulated:  {days:g} of {p.get('end_day', 0) - start:g} "
          f"(day {start:g} to {start + days:g})")
    print(f"complete:        {'yes' if int(p.get('complete', 0)) == 1 else 'no'}"
          + (f" (resumed {len(p['restarts'])}x)" if p.get("restarts") else ""))
    if "wall_total_s" in p:
        print(f"wall time:       {p['wall_total_s']:.2f} s (compile {p.get('wall_compile_s', 0):.2f}, "
              f"simulate {p.get('wall_simulate_s', 0):.2f}, write {p.get('wall_write_s', 0):.2f})")
    print("groups:")
    for name, g in info["groups"].items():
        order = ("time", "snapshot", "patch", "z", "y", "x", "obs", "event")
        dims = " ".join(f"{d}={n}" for d, n in sorted(
            g["dims"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
        extra = f" [{', '.join(g['subgroups'])}]" if g["subgroups"] else ""
        print(f"  /{name:<11} {g['variables']:3d} variables  {dims}{extra}")
    if not args.quick:
        print("data:            every dataset read, checksums ok")
    return 0


def add_logging_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """-v / -q / --log-file: global options of ``abm``, also accepted after a command.

    With ``defaults=False`` (a command's parser) an option not given leaves the
    value of the global option in place.
    """
    g = parser.add_argument_group("messages")
    keep = {} if defaults else {"default": argparse.SUPPRESS}
    g.add_argument("-v", "--verbose", dest="log_level", action="store_const",
                   const=logging.DEBUG, help="also debug messages", **keep)
    g.add_argument("-q", "--quiet", dest="log_level", action="store_const",
                   const=logging.WARNING,
                   help="warnings and errors only: no progress bar or lines, no status lines",
                   **keep)
    g.add_argument("--log-file", metavar="PATH",
                   help="also append the messages, with timestamps, to PATH (info and "
                        "progress lines even with -q; debug with -v)",
                   **({"default": None} if defaults else keep))
    if defaults:
        parser.set_defaults(log_level=logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="abm",
        description="Stochastic agent-based model of CAR-T therapy, CRS and ICANS.",
        epilog="Run 'abm COMMAND --help' for the options of a command. Progress: a bar on a "
               "terminal; otherwise (output to a file) a line every 10 % of the run or 30 s "
               "(ABM_PROGRESS_EVERY_S).")
    p.add_argument("--version", action="version", version=f"abm {__version__}")
    add_logging_options(p, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    add_logging_options(common, defaults=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND",
                           parser_class=_subparser_class(common))

    r = sub.add_parser("run", help="simulate one virtual patient from a TOML config",
                       description="Simulate one virtual patient and write an HDF5 file "
                                   "under OUT/<run.name>/.")
    r.add_argument("config", help="TOML config file (e.g. configs/default.toml)")
    r.add_argument("--out", metavar="DIR", help="output directory (default: output.dir, 'runs')")
    r.add_argument("--seed", type=int, metavar="N", help="run seed (overrides run.seed)")
    r.add_argument("--days", type=float, metavar="D", help="override run.end_day")
    r.add_argument("--threads", type=int, metavar="N", help="Numba threads (default: run.threads, 1)")
    r.add_argument("--resume", action="store_true",
                   help="continue the interrupted run of this config (its .h5.part) from its "
                        "latest checkpoint; the result equals an uninterrupted run")
    r.add_argument("--from-step", type=int, metavar="N",
                   help="with --resume: restart from the checkpoint at step N (of the .part, or "
                        "of the finished file)")
    r.add_argument("--keep-checkpoints", action="store_true",
                   help="keep every checkpoint in the file (default: only the latest)")
    r.set_defaults(func=_cmd_run)

    i = sub.add_parser("inspect", help="summarise an output file and check it",
                       description="Print schema version, seed, config name, days simulated, "
                                   "completion and the groups of a run file; read every dataset "
                                   "to check its checksums. Exit 2 on a bad file.")
    i.add_argument("file", help="HDF5 run file (.h5 or an interrupted .h5.part)")
    i.add_argument("--quick", action="store_true", help="do not read the data (metadata only)")
    i.set_defaults(func=_cmd_inspect)

    v = sub.add_parser("validate", help="check configs without running",
                       description="Validate one or more TOML configs; exit 2 on the first error.")
    v.add_argument("configs", nargs="+", metavar="CONFIG")
    v.set_defaults(func=_cmd_validate)

    s = sub.add_parser("show-config", help="print the fully resolved config",
                       description="Print every parameter of the resolved config, with units.")
    s.add_argument("config")
    s.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    s.set_defaults(func=_cmd_show_config)

    k = sub.add_parser("compile", help="compile the kernels once, before the first run",
                       description="Compile the kernels that runs of these configs call into "
                                   "the on-disk cache (one step of each, nothing written), so "
                                   "that the first run on this machine loads them (~1 s) instead "
                                   "of compiling them (15-25 s). `make` does it at installation. "
                                   "The cache is keyed by the kernel sources: after editing "
                                   "abm/kernels/, run it again. A batch file stands for its "
                                   "first run.")
    k.add_argument("configs", nargs="+", metavar="CONFIG",
                   help="run or batch TOML files (e.g. configs/default.toml)")
    k.add_argument("--threads", type=int, metavar="N",
                   help="Numba threads the runs will use (default: the config's run.threads); "
                        "one thread and several compile different agent kernels")
    k.set_defaults(func=_cmd_compile)

    from abm.batch.cli import add_parser as add_batch_parser
    add_batch_parser(sub)   # abm batch (implementation in abm/batch/cli.py)
    from abm.studies.sensitivity_cli import add_parser as add_sensitivity_parser
    add_sensitivity_parser(sub)   # abm sensitivity (abm/studies/sensitivity_cli.py)
    from abm.studies.calibrate_cli import add_parser as add_calibrate_parser
    add_calibrate_parser(sub)   # abm calibrate (implementation in abm/studies/calibrate_cli.py)

    a = sub.add_parser("analyze", help="report (figures, risk table) for a batch folder or a "
                                       "run, or a comparison of batches",
                       description="Write a report folder: for a batch folder (runs/<batch>) the "
                                   "CRS/ICANS risk table with 95 % intervals by group, the "
                                   "calibration bands, the trend test of risk versus tumour "
                                   "burden, figures and what was run; for one run file its "
                                   "patient panel and endpoints; for two or more batch folders "
                                   "a comparison report (one trial per folder: simulated versus "
                                   "target rates with the in-band verdict, onset and rate "
                                   "tests, blood CAR-T kinetics, overlaid grade and onset "
                                   "figures). See docs/analysis.md.",
                       epilog="examples: abm analyze runs/example | abm analyze "
                              "runs/trial_cd28 runs/trial_41bb --out runs/trials_report")
    a.add_argument("paths", nargs="+", metavar="PATH",
                   help="batch folder (runs/<batch>) or one run file (.h5); several batch "
                        "folders: compare them")
    a.add_argument("--out", metavar="DIR",
                   help="report folder (default: <batch>/report, <file stem>_report, or "
                        "compare_<a>_vs_<b> beside the first folder)")
    a.add_argument("--by", action="append", default=[], metavar="COORD",
                   help="also group the risk table by this run coordinate (repeatable), e.g. "
                        "lymphodepletion.depth or member (one batch only)")
    a.add_argument("--covariate", default="burden_cells", metavar="COORD",
                   help="continuous covariate of the risk curve and trend test, by name or "
                        "config key (default: burden_cells, i.e. patient.tumour_burden_cells)")
    a.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="also percentile bootstrap intervals from N resamples (in risk.csv)")
    a.add_argument("--no-html", action="store_true", help="markdown only, no report.html")
    a.set_defaults(func=_cmd_analyze)

    b = sub.add_parser("bench", help="run the kernel and end-to-end benchmarks",
                       description="Run the benchmarks (python -m benchmarks): diffusion, agents, "
                                   "patient (end to end, scaling), batch, cache. Writes "
                                   "<out>/<name>.json and <out>/RESULTS.md; about 10 minutes "
                                   "with the defaults on 2 cores, ~2 with --quick.")
    b.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    b.add_argument("--quick", action="store_true", help="fewer sizes and repetitions (smoke run)")
    b.add_argument("--out", metavar="DIR", help="results folder (default: benchmarks/results)")
    b.add_argument("--patients", type=int, metavar="N",
                   help="virtual patients of the trial benchmark (default 10)")
    b.add_argument("--workers", type=int, metavar="N",
                   help="local workers of the trial benchmark (default 2)")
    b.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    b.set_defaults(func=_cmd_bench)
    return p


def _subparser_class(common: argparse.ArgumentParser):
    """A parser class whose every instance (each command) also takes ``common``'s options."""
    class CommandParser(argparse.ArgumentParser):
        def __init__(self, *a, parents=(), **kw):
            super().__init__(*a, parents=[*parents, common], **kw)
    return CommandParser


def main(argv: list[str] | None = None) -> int:
    from abm.logs import configured
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args.quiet = args.log_level >= logging.WARNING
    try:
        with configured(args.log_level, args.log_file):
            try:
                return int(args.func(args) or 0)
            except AbmError as exc:
                _log.error(f"error: {exc}")
                return 2
            except OSError as exc:   # the file system refused: a path, permissions, space
                _log.error(f"error: {exc.strerror or exc}"
                           + (f": {exc.filename}" if exc.filename else ""))
                return 2
            except KeyboardInterrupt:
                _log.error("interrupted")
                return 130
    except AbmError as exc:   # the log file cannot be opened
        print(f"abm: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
