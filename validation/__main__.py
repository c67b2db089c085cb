"""Validation runner: ``python -m validation [checks...] [options]``.

Runs the checks named (default: all; ``--list`` names them): the eight
mechanisms of docs/model.md section 10 at the default parameters (``mechanisms``
names all eight; a number 1-8 names one) and the whole-patient ICANS
validation ``icans``. The mechanism checks simulate only the cohorts they
read, print one block per check (PASS or FAIL) and write results.json,
results.md and their figures into ``--out``; ``icans`` appends its runs to a
JSON-lines file and prints its figures. The exit status is 0 only if every
mechanism check run passes (2 on a configuration error, 130 if interrupted).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from validation import GROUPS, MECHANISMS, REGISTRY

EXAMPLES = """\
examples:
  python -m validation mechanisms              # the validation of docs/model.md 10: 170 runs, ~11 min on 2 free cores
  python -m validation mechanisms --resume     # continue an interrupted one
  python -m validation mechanisms --analyse-only   # re-analyse the runs in --out, simulate nothing
  python -m validation mechanisms --quick      # smoke test (35 runs, ~2-4 min): NOT the validation
  python -m validation burden --burden-batch runs/tumor_burden   # check 3 on an existing burden batch
  python -m validation il7_15 --out runs/validate_il7_15   # check 1 alone: the blood model, no cohort
  python -m validation multiscale --n-multiscale 20   # the two-scale patient (docs/multiscale.md)
  python -m validation icans --synthetic --n-off 50 --n-policy 50 --icans-out runs/validate_icans_synthetic.jsonl

See docs/validation.md (mechanisms) and docs/brain.md section 8 (icans).
"""


def build_parser() -> argparse.ArgumentParser:
    from validation import icans
    ap = argparse.ArgumentParser(prog="python -m validation", description=__doc__.split("\n\n")[0],
                                 epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checks", nargs="*", metavar="CHECK",
                    help="checks to run: names of --list, 'mechanisms' (all eight) or a number 1-8 "
                         "(default: all, the eight mechanisms then icans)")
    ap.add_argument("--list", action="store_true", help="list the checks and exit")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    m = ap.add_argument_group("mechanism checks (docs/model.md section 10)")
    m.add_argument("--n", type=int, default=None, help="patients per arm of the paired batch (default 24; quick 4)")
    m.add_argument("--n-burden", type=int, default=None, help="patients per burden level (default 16; quick 4)")
    m.add_argument("--n-infusion", type=int, default=None,
                   help="patients with a forced infusion reaction (default 10; quick 3)")
    m.add_argument("--out", type=Path, default=None,
                   help="output folder (default runs/validate_mechanisms/, quick: runs/validate_mechanisms_quick/)")
    m.add_argument("--quick", action="store_true",
                   help="a few patients per arm: a smoke test of the checks, NOT the validation")
    m.add_argument("--resume", action="store_true", help="continue the batches already in --out")
    m.add_argument("--burden-batch", type=Path, default=None,
                   help="an existing batch folder with burden varying (e.g. runs/tumor_burden) for check 3")
    m.add_argument("--seed", type=int, default=20261001, help="root seed of the batches")
    m.add_argument("--analyse-only", action="store_true", help="do not run anything; analyse the runs in --out")
    m.add_argument("--no-figures", action="store_true", help="write no figures")
    m.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    icans.add_arguments(ap, out_flag="--icans-out")
    from validation import multiscale
    multiscale.add_arguments(ap)
    return ap


def resolve(names, parser) -> list[str]:
    """Check names from the command line (groups and numbers expanded), without repeats, in registry order."""
    if not names:
        return list(REGISTRY)
    chosen = set()
    for name in names:
        if name in GROUPS:
            chosen.update(GROUPS[name])
        elif name.isdigit() and 1 <= int(name) <= len(MECHANISMS):
            chosen.add(MECHANISMS[int(name) - 1])
        elif name in REGISTRY:
            chosen.add(name)
        else:
            parser.error(f"unknown check {name!r}; known: {', '.join(REGISTRY)} (or {', '.join(GROUPS)}, 1-8)")
    return [n for n in REGISTRY if n in chosen]


def describe() -> str:
    """One line per check: name, number, title, cohorts read."""
    lines = []
    for name, path in REGISTRY.items():
        module = importlib.import_module(path)
        if name in MECHANISMS:
            cohorts = ", ".join(module.COHORTS) or "none (calls the model directly)"
            lines.append(f"{name:14s} {module.NUMBER}  {module.TITLE}  [cohorts: {cohorts}]")
        elif name == "icans":
            lines.append(f"{name:14s} -  {module.TITLE}  [its own runs: --n-off, --n-policy, --icans-out]")
        else:
            lines.append(f"{name:14s} -  {module.TITLE}  [its own runs: --n-multiscale, --multiscale-out]")
    lines.append(f"{'mechanisms':14s}    the eight checks above (1-8)")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print(describe())
        return 0
    names = resolve(args.checks, parser)
    from abm.errors import AbmError
    status = 0
    try:
        mechanisms = [n for n in names if n in MECHANISMS]
        if mechanisms:
            from validation import mechanisms as mech
            status = max(status, mech.run(mechanisms, args, command=" ".join(["python -m validation", *argv])))
        if "icans" in names:
            from validation import icans
            status = max(status, icans.run(args, error=parser.error))
        if "multiscale" in names:
            from validation import multiscale
            status = max(status, multiscale.run(args))
    except AbmError as exc:
        print(f"validation: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nvalidation: interrupted; continue with --resume", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
