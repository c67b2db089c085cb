"""``abm sensitivity CONFIG``: a Morris or Sobol study on a local pool or a Dask cluster.

Registered in :func:`abm.cli.build_parser` by :func:`add_parser`. Exit codes
(as ``abm batch``): 0 every run done and analysed, 1 some runs failed (the
analysis is still written, with those points flagged), 2 bad input (one
line), 130 interrupted (Ctrl-C; continue with ``--resume``), 143 stopped by
SIGTERM.
"""

from __future__ import annotations

import logging
import shlex

from abm.logs import progress_mode, result

_log = logging.getLogger(__name__)

DESCRIPTION = """\
Global sensitivity analysis of the model: draw a Morris (screening) or Sobol
(variance-based) design over the parameter ranges of CONFIG, run every design
point as one batch (the base patient, or the base's virtual population with
common seeds across points: a paired design), compute the outputs per point
from the runs' endpoints (e.g. the share with crs_max_grade >= 3) and the
indices with SALib (bootstrap intervals). Writes OUT/<name>/: design/ (the
runs and their manifest), sensitivity.nc, summary.md and one figure per output.
Runs on a local pool (default), or on Dask (--scheduler tcp://host:port, e.g. a
dask-jobqueue SLURMCluster, or --dask-local N). Ctrl-C stops cleanly; --resume
re-uses finished runs. See docs/sensitivity.md."""


def add_parser(sub) -> None:
    """Add the ``sensitivity`` subcommand to an argparse subparsers object."""
    from abm.batch.options import add_executor_options
    s = sub.add_parser("sensitivity", help="global sensitivity analysis (Morris, Sobol)",
                       description=DESCRIPTION)
    s.add_argument("config", help="study TOML file with a [sensitivity] table (e.g. "
                                  "configs/sensitivity_risk.toml)")
    s.add_argument("--out", metavar="DIR",
                   help="parent folder of the study folder (default: the base config's "
                        "output.dir, 'runs')")
    add_executor_options(s)
    s.add_argument("--resume", action="store_true",
                   help="continue the study in its folder: re-use finished runs, run the rest, "
                        "analyse again")
    s.add_argument("--dry-run", action="store_true",
                   help="check the study file and every run config of its design, print the "
                        "design size and exit")
    s.add_argument("--no-figures", action="store_true", help="dataset and summary only")
    s.set_defaults(func=cmd_sensitivity)


def _dry_run(cfg) -> int:
    from abm.batch.expand import expand_batch
    batch = cfg.batch()
    specs = expand_batch(batch)
    bad = [sp for sp in specs if sp.error]
    print(f"{cfg.file}: ok ({cfg.summary()}; base {cfg.base.file})")
    for r in cfg.study.ranges:
        print(f"  parameter {r.path}: {r.describe()}")
    for o in cfg.outputs:
        print(f"  output {o.name} = {o.expr!r}: {o.long_name}")
    for n in cfg.notes:
        print(f"  note: {n}")
    if bad:
        print(f"  note: {len(bad)} of {len(specs)} runs have an invalid config and would fail, "
              f"e.g. {bad[0].error}")
    return 0


def cmd_sensitivity(args) -> int:
    from abm.batch.options import executor_from_args
    from abm.studies.design import DESIGN_BATCH, check_start
    from abm.studies.sensitivity import load_sensitivity, run_sensitivity, study_folder

    cfg = load_sensitivity(args.config)
    if args.dry_run:
        return _dry_run(cfg)
    folder = study_folder(cfg, args.out)
    check_start(folder / DESIGN_BATCH, args.resume)
    executor = executor_from_args(args)
    for n in cfg.notes:
        _log.warning(f"note: {n}")
    _log.info(f"{cfg.summary()} -> {folder}/")
    if executor is not None:
        _log.info(f"executing on {executor.describe()}")
    try:
        res = run_sensitivity(cfg, out=args.out, executor=executor, resume=args.resume,
                              progress=progress_mode(args.quiet, args.log_file),
                              verbose=not args.quiet, figures=not args.no_figures)
    finally:
        if executor is not None:
            try:
                executor.close()
            except Exception:  # noqa: BLE001 - already closed after Ctrl-C
                pass
    b = res.batch
    result(_log, f"runs: {b.done} done, {b.failed} failed, {b.pending} pending of {b.n_runs}"
                 + (f" ({b.skipped} re-used)" if b.skipped else ""))
    if b.failures:
        ids = ", ".join(rid for rid, _ in b.failures[:5])
        more = f" and {len(b.failures) - 5} more" if len(b.failures) > 5 else ""
        result(_log, f"failed runs: {ids}{more} (first error: {b.failures[0][1]}); errors are "
                     f"in {b.manifest}")
    if res.interrupted:
        cmd = f"abm sensitivity {shlex.quote(args.config)} --resume"
        if args.out:
            cmd += f" --out {shlex.quote(args.out)}"
        result(_log, f"interrupted; continue with: {cmd}")
        return 143 if res.terminated else 130
    for n in res.notes[len(cfg.notes):]:
        _log.warning(f"note: {n}")
    result(_log, f"wrote {res.dataset}, {res.summary.name}"
                 + (f" and {len(res.figures)} figures" if res.figures else "")
                 + f" in {res.folder}/")
    return 1 if (b.failed or b.pending) else 0


__all__ = ["add_parser", "cmd_sensitivity"]
