"""Regenerate the figures in docs/figures/ from the runs that produce them.

    python scripts/make_figures.py                 # every group (hours on 2 cores)
    python scripts/make_figures.py patient         # one group: patient, trials, burden, validation
    python scripts/make_figures.py --list          # which command makes which figure
    python scripts/make_figures.py trials --dry-run

Each group runs what its figures need (the batches are resumed when their
folders exist, so an interrupted call continues) and then copies the figures
from the run or report folders into docs/figures/. docs/figures.md lists the
same table. ``default_patient_before.png`` is a historical figure (the default
patient before calibration) and is not regenerated.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
RUNS = ROOT / "runs"


@dataclass(frozen=True)
class Group:
    """Commands that produce some figures, and where each figure lands."""

    name: str
    cost: str
    commands: tuple[tuple[str, ...], ...]
    #: docs/figures name -> file written by the commands (relative to the repository root)
    figures: dict


def _abm(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "abm", *args)


def _python(*args: str) -> tuple[str, ...]:
    return (sys.executable, *args)


GROUPS = {
    "patient": Group(
        "patient", "2 runs, ~1-2 min after compilation",
        (_abm("run", "configs/default.toml", "-q"),
         _python("scripts/plot_patient.py", "runs/default/default_seed20261121.h5",
                 "-o", "runs/figures/default_patient.png"),
         ("@41bb-config",),
         _abm("run", "runs/figures/default_41bb.toml", "-q"),
         _python("scripts/plot_patient.py", "runs/default_41bb/default_41bb_seed20261121.h5",
                 "-o", "runs/figures/default_patient_41bb.png")),
        {"default_patient.png": "runs/figures/default_patient.png",
         "default_patient_41bb.png": "runs/figures/default_patient_41bb.png"}),
    "trials": Group(
        "trials", "200 runs, ~15 min on 2 cores",
        (_abm("batch", "configs/trial_cd28.toml", "--resume"),
         _abm("batch", "configs/trial_41bb.toml", "--resume"),
         _abm("analyze", "runs/trial_cd28", "runs/trial_41bb", "--out", "runs/trials_report"),
         _python("scripts/plot_vpc.py", "runs/trial_cd28", "runs/trial_41bb",
                 "-o", "runs/figures/vpc_trials.png")),
        {"vpc_trials.png": "runs/figures/vpc_trials.png",
         "trials_blood_cart.png": "runs/trials_report/blood_cart_by_trial.png",
         "trials_grades.png": "runs/trials_report/grade_distribution_by_trial.png",
         "trials_onset.png": "runs/trials_report/onset_by_trial.png"}),
    "burden": Group(
        "burden", "120 runs, ~8 min on 2 cores",
        (_abm("batch", "configs/tumor_burden.toml", "--resume"),
         _abm("analyze", "runs/tumor_burden")),
        {"tumor_burden_risk.png": "runs/tumor_burden/report/risk_vs_burden_cells.png"}),
    "validation": Group(
        "validation", "170 runs, ~11 min on 2 cores",
        (_python("-m", "validation", "mechanisms", "--resume"),),
        {"validation_il7_15_vs_depth.png": "runs/validate_mechanisms/il7_15_vs_depth.png",
         "validation_cd28_vs_41bb.png": "runs/validate_mechanisms/cd28_vs_41bb.png",
         "validation_risk_vs_burden.png": "runs/validate_mechanisms/risk_vs_burden.png",
         "validation_tocilizumab.png": "runs/validate_mechanisms/tocilizumab.png"}),
    "sensitivity": Group(
        "sensitivity", "512 runs, ~35 min on 2 cores",
        (_abm("sensitivity", "configs/sensitivity_risk.toml", "--out", "runs", "--resume", "-q"),),
        {"sensitivity_crs3.png": "runs/sens_risk/morris_crs3.png",
         "sensitivity_icans3.png": "runs/sens_risk/morris_icans3.png"}),
}


def write_41bb_config() -> None:
    """The default patient under the 4-1BB product preset, as a resolved config file."""
    sys.path.insert(0, str(ROOT))
    from abm.config import load_config, to_toml

    cfg = load_config(ROOT / "configs" / "default.toml",
                      {"product": {"preset": "4-1bb"}, "run": {"name": "default_41bb"}})
    out = RUNS / "figures" / "default_41bb.toml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_toml(cfg), encoding="utf-8")


def run_group(group: Group, dry_run: bool) -> None:
    (RUNS / "figures").mkdir(parents=True, exist_ok=True)
    for cmd in group.commands:
        shown = " ".join(Path(c).name if c == sys.executable else c for c in cmd)
        print(f"make_figures [{group.name}]: {shown}", flush=True)
        if dry_run:
            continue
        if cmd == ("@41bb-config",):
            write_41bb_config()
            continue
        subprocess.run(cmd, cwd=ROOT, check=True)
    for name, produced in group.figures.items():
        print(f"make_figures [{group.name}]: {produced} -> docs/figures/{name}", flush=True)
        if not dry_run:
            shutil.copyfile(ROOT / produced, FIGURES / name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("groups", nargs="*", metavar="GROUP", help=f"one or more of {', '.join(GROUPS)} (default: all)")
    ap.add_argument("--list", action="store_true", help="print which group makes which figure")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    if args.list:
        for g in GROUPS.values():
            print(f"{g.name} ({g.cost}): {', '.join(g.figures)}")
        return 0
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        ap.error(f"unknown group {unknown[0]!r}; choose from {', '.join(GROUPS)}")
    for name in args.groups or list(GROUPS):
        try:
            run_group(GROUPS[name], args.dry_run)
        except subprocess.CalledProcessError as exc:
            print(f"make_figures: error: group '{name}' failed (exit status {exc.returncode})",
                  file=sys.stderr)
            return 1
        except FileNotFoundError as exc:
            print(f"make_figures: error: group '{name}' did not produce {exc.filename}",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
