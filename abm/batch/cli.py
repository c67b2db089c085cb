"""``abm batch CONFIG``: run a batch file on a local pool or a Dask cluster.

Registered in :func:`abm.cli.build_parser` by :func:`add_parser`. Exit codes:
0 all selected runs done, 1 some failed (recorded in the manifest), 2 bad
input, a folder another batch holds or a manifest that cannot be written (one
line, no traceback), 130 interrupted (Ctrl-C; resume with ``--resume``), 143
stopped by SIGTERM (as Ctrl-C).
"""

from __future__ import annotations

import logging
import shlex
import sys

from abm.batch.options import (add_executor_options, check_executor_args, close_quietly,
                               executor_from_args, sigterm_as_interrupt)
from abm.logs import progress_mode, result

_log = logging.getLogger(__name__)

DESCRIPTION = """\
Expand a batch file ([batch] table: sweep, replicates, virtual population,
posterior draws of a calibration) into runs and execute them: on a local
process pool (default, all cores) or on Dask
(--scheduler tcp://host:port, or --dask-local N for a LocalCluster). Results go
to OUT/<batch name>/: one <run-id>.h5 per run, manifest.csv (status, seed,
parameters, errors, durations) and batch.toml (the resolved batch). A failing
run is recorded and the batch goes on; Ctrl-C stops cleanly and --resume
continues (skipping finished runs, re-running failed and interrupted ones).
See docs/batch.md."""


def add_parser(sub) -> None:
    """Add the ``batch`` subcommand to an argparse subparsers object."""
    b = sub.add_parser("batch", help="run a sweep / replicates / virtual population",
                       description=DESCRIPTION)
    b.add_argument("config", help="batch TOML file (e.g. configs/batch_example.toml)")
    b.add_argument("--out", metavar="DIR",
                   help="parent folder of the batch folder (default: the base config's "
                        "output.dir, 'runs')")
    add_executor_options(b)
    b.add_argument("--resume", action="store_true",
                   help="continue the batch in its folder: skip done runs, re-run failed and "
                        "interrupted ones (continuing their .part files)")
    b.add_argument("--only", metavar="RUNS",
                   help="run only these runs: indices, ranges or run ids, e.g. '3', '0-3,7', "
                        "'trial_00005' (re-run even if done, unless --resume)")
    b.add_argument("--dry-run", action="store_true",
                   help="list the runs (id, seed, parameters, config check) and exit")
    b.set_defaults(func=cmd_batch)


def _dry_run(batch) -> int:
    from abm.batch.expand import expand_batch
    from abm.batch.manifest import _cell
    specs = expand_batch(batch)
    draws = batch.posterior is not None
    cols = ["run_id", "seed", "replicate"] + (["draw"] if draws else []) + batch.varied + ["config"]
    try:
        print("\t".join(cols))
        for s in specs:
            vals = [s.run_id, str(s.seed), str(s.replicate)] + ([str(s.draw)] if draws else [])
            vals += [_cell(s.params.get(p)) for p in batch.varied]
            vals.append("ok" if not s.error else s.error)
            print("\t".join(vals))
        sys.stdout.flush()
    except BrokenPipeError:   # e.g. piped into head
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    bad = sum(1 for s in specs if s.error)
    _log.info(f"{batch.summary()}; {len(specs) - bad} valid, {bad} invalid")
    return 0


def cmd_batch(args) -> int:
    from abm.batch.config import load_batch
    from abm.batch.runner import batch_folder, run_batch
    from abm.config.paths import check_output_dir

    check_executor_args(args)
    batch = load_batch(args.config)
    for w in batch.warnings:
        _log.warning(f"note: {w}")
    if args.dry_run:
        return _dry_run(batch)
    folder = batch_folder(batch, args.out)
    check_output_dir(folder.parent, folder.name)
    _log.info(f"{batch.summary()} -> {folder}/")
    executor = executor_from_args(args)
    if executor is not None:
        _log.info(f"executing on {executor.describe()}")
    try:
        with sigterm_as_interrupt() as terminated:
            res = run_batch(batch, out=args.out, executor=executor, resume=args.resume,
                            only=args.only, progress=progress_mode(args.quiet, args.log_file),
                            verbose=not args.quiet)
    finally:
        close_quietly(executor)
    if batch.root_seed_drawn:
        _log.warning(f"root seed drawn and recorded in {folder}/batch.toml")
    ran = res.finished + len(res.failures)
    rate = f", {res.runs_per_min:.1f} runs/min" if res.finished and res.wall_s > 0 else ""
    this = (f"this call: {ran} run{'s' if ran != 1 else ''} in {res.wall_s:.1f} s{rate}"
            if res.attempted else "nothing left to run")
    extra = []
    if res.skipped:
        extra.append(f"{res.skipped} already done")
    if res.adopted:
        extra.append(f"{res.adopted} finished files adopted")
    result(_log, f"batch {batch.name!r}: {res.done} done, {res.failed} failed, {res.pending} "
                 f"pending of {res.n_runs} runs ({this}{'; ' + ', '.join(extra) if extra else ''})")
    if res.failures:
        first = res.failures[0]
        more = f" (and {len(res.failures) - 1} more)" if len(res.failures) > 1 else ""
        result(_log, f"failed: {first[0]}: {first[1]}{more}; errors are in the manifest")
    result(_log, f"results in {folder}/ (manifest {folder / 'manifest.csv'})")
    if res.interrupted or res.pending:
        cmd = f"abm batch {shlex.quote(args.config)} --resume"
        if args.out:
            cmd += f" --out {shlex.quote(args.out)}"
        result(_log, f"{'interrupted; ' if res.interrupted else ''}continue with: {cmd}")
    result(_log, f"analyse with: abm analyze {folder}")
    if res.interrupted:
        return 143 if terminated else 130
    return 1 if res.failures else 0


__all__ = ["add_parser", "cmd_batch"]
