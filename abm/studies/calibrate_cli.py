"""``abm calibrate CONFIG``: history matching of the model to population targets.

Registered in :func:`abm.cli.build_parser` by :func:`add_parser`. Exit codes:
0 done, 1 some runs failed (left out of the summaries), 2 bad input (one line),
130 interrupted (``--resume`` continues), 143 stopped by SIGTERM.
"""

from __future__ import annotations

import logging
import shlex

from abm.logs import progress_mode, result
from abm.batch.options import (add_executor_options, check_executor_args, close_quietly,
                               executor_from_args, sigterm_as_interrupt)

_log = logging.getLogger(__name__)

DESCRIPTION = """\
Calibrate parameters to population targets by history matching with Gaussian-process
emulators: in waves, a space-filling design of parameter points is run as ordinary
batches (each arm's virtual population at every point, common seeds), one emulator per
target summary is fitted, and the points whose implausibility exceeds the cut-off are
ruled out; the next wave samples what is left. Writes OUT/<name>/calibration.nc (the
NROY sample as samples(draw, parameter), design, summaries, implausibility), figures
and summary.md. A second call with --resume continues (finished waves are re-used).
See docs/calibration.md section 7."""


def add_parser(sub) -> None:
    """Add the ``calibrate`` subcommand to an argparse subparsers object."""
    c = sub.add_parser("calibrate", help="history matching of parameters to population targets",
                       description=DESCRIPTION,
                       epilog="example: abm calibrate configs/calibration.toml --dry-run")
    c.add_argument("config", help="calibration TOML file (e.g. configs/calibration.toml)")
    c.add_argument("--out", metavar="DIR", help="parent of the calibration folder (default: runs)")
    add_executor_options(c)
    c.add_argument("--resume", action="store_true",
                   help="continue the calibration in its folder (finished waves re-used, "
                        "unfinished batches continued)")
    c.add_argument("--dry-run", action="store_true",
                   help="check the config and the arms' batches, print the plan and exit")
    c.set_defaults(func=cmd_calibrate)


def _dry_run(cfg) -> int:
    from abm.studies.calibrate import arm_batch, arm_seed, WAVE_PATIENTS
    import numpy as np
    print(cfg.summary())
    print("parameters:")
    for p in cfg.parameters:
        print(f"  {p.name}: {p.low:g} .. {p.high:g} ({p.scale}{', integer' if p.integer else ''})")
    print("arms:")
    for a in cfg.arms:
        print(f"  {a.name}: {a.file}, costimulation {a.costimulation}, {a.patients} patients "
              "per point")
        # the batch of a wave at the range corners: every run config must validate
        corners = np.array([[p.low for p in cfg.parameters], [p.high for p in cfg.parameters]])
        batch = arm_batch(cfg, a, f"dryrun_{a.name}", corners, a.patients,
                          arm_seed(cfg.seed, a.name, WAVE_PATIENTS))
        from abm.batch.expand import expand_batch
        bad = [s for s in expand_batch(batch) if s.error]
        if bad:
            print(f"    note: {len(bad)} of {batch.n_runs} runs at the range corners have an "
                  f"invalid config, e.g. {bad[0].error}")
        for w in batch.warnings:
            print(f"    note: {w}")
    print("targets (sd on the emulated scale: fraction, or log10 for kinetics):")
    for t in cfg.targets:
        obs = f"{t.observed:g}" + ("" if t.summary.kind == "rate" else f" {t.summary.unit}")
        nn = f", n {t.n}" if t.n else ""
        print(f"  {t.name}: observed {obs}{nn}, sd {t.obs_sd:.3g}, discrepancy sd "
              f"{t.disc_sd:.3g}" + (f" [{t.source}]" if t.source else ""))
    runs = cfg.runs_per_wave
    print(f"runs: {' + '.join(map(str, runs))} in {cfg.waves} wave(s)"
          + (f" + {cfg.check_runs} for the check" if cfg.check else "")
          + f" = {sum(runs) + cfg.check_runs}")
    return 0


def cmd_calibrate(args) -> int:
    from abm.studies.calibrate import (CalibrationInterrupted, calibrate, calibration_folder)
    from abm.studies.calibrate_config import load_calibration

    check_executor_args(args)
    cfg = load_calibration(args.config)
    if args.dry_run:
        return _dry_run(cfg)
    folder = calibration_folder(cfg, args.out)
    _log.info(f"{cfg.summary()} -> {folder}/")
    executor = executor_from_args(args)
    if executor is not None:
        _log.info(f"executing on {executor.describe()}")
    cont = f"abm calibrate {shlex.quote(args.config)} --resume" + (
        f" --out {shlex.quote(args.out)}" if args.out else "")
    try:
        with sigterm_as_interrupt() as terminated:
            try:
                res = calibrate(cfg, out=args.out, executor=executor, resume=args.resume,
                                progress=progress_mode(args.quiet, args.log_file),
                                verbose=not args.quiet)
            except (CalibrationInterrupted, KeyboardInterrupt):
                _log.error(f"interrupted; continue with: {cont}")
                return 143 if terminated else 130
    finally:
        close_quietly(executor)
    result(_log, f"calibration {cfg.name!r}: {res.waves_done} wave(s), {res.runs} runs "
                 f"({res.ran} run in this call, {res.failed} failed); NROY sample of "
                 f"{res.n_samples} draws ({100 * res.nroy_fraction:.3g} % of the box)")
    result(_log, f"results in {res.folder}/ ({res.dataset.name}, {res.summary.name}, figures/)")
    return 1 if res.failed else 0


__all__ = ["add_parser", "cmd_calibrate"]
