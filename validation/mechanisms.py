"""The eight mechanism checks of docs/model.md section 10 at the default parameters, as one validation.

:func:`run` simulates (or resumes, or with ``--analyse-only`` only reads) the
cohorts that the chosen checks need (:mod:`validation.cohort`), runs the
checks in the order of their numbers, prints one block per check -- the
check, the measured figures with intervals or p-values, PASS or FAIL -- and
writes into ``--out``: ``results.json`` (every figure, criterion and
verdict, the command, date, commit, wall time, per-batch timing),
``results.md`` and the figures of :mod:`validation.figures`. It returns 0
only if every check run passes and the runs of each arm share their
parameters.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from validation import MECHANISMS, REGISTRY, ROOT
from validation.cohort import ARMS, COHORTS, batch_tables, config_consistency, read_runs, run_batches
from validation.report import git, markdown, print_block
from validation.stats import json_safe

#: How a run's sweep point names its arm, per cohort.
_ARM_OF_POINT = {
    "mech_paired": lambda p, row: list(ARMS)[p],
    "mech_burden": lambda p, row: "burden",
    "mech_infusion": lambda p, row: "infusion",
}


@dataclass
class Context:
    """What a check reads: the options, the batch folders and the runs read from them."""
    opts: object
    folders: dict[str, Path]
    cohort_runs: dict[str, list[dict]] = field(default_factory=dict)

    def runs(self, *cohorts: str) -> list[dict]:
        """The runs of the cohorts named, in that order (a cohort not simulated gives none)."""
        return [r for c in cohorts for r in self.cohort_runs.get(c, [])]


def default_out(quick: bool) -> Path:
    """Default output folder: runs/validate_mechanisms/ (``--quick``: runs/validate_mechanisms_quick/)."""
    return ROOT / "runs" / ("validate_mechanisms_quick" if quick else "validate_mechanisms")


def set_defaults(opts) -> None:
    """Fill the sizes that depend on ``--quick`` and the output folder (in place)."""
    q = opts.quick
    opts.n = opts.n or (4 if q else 24)
    opts.n_burden = opts.n_burden or (4 if q else 16)
    opts.n_infusion = opts.n_infusion or (3 if q else 10)
    opts.out = Path(opts.out or default_out(q)).resolve()
    if opts.analyse_only:
        opts.resume = True


def cohorts_needed(names, opts) -> tuple[str, ...]:
    """The cohorts the checks ``names`` read, in run order (``mech_burden`` not with ``--burden-batch``)."""
    designed = batch_tables(opts)
    wanted = {c for n in names for c in importlib.import_module(REGISTRY[n]).COHORTS}
    return tuple(c for c in COHORTS if c in wanted and c in designed)


def run(names=MECHANISMS, opts=None, command: str = "python -m validation") -> int:
    """Run the mechanism checks ``names`` with the options ``opts`` (see ``python -m validation --help``)."""
    set_defaults(opts)
    t_start = time.perf_counter()

    def log(msg):
        if not opts.quiet:
            print(f"validation: {msg}", file=sys.stderr, flush=True)

    modules = sorted((importlib.import_module(REGISTRY[n]) for n in names), key=lambda m: m.NUMBER)
    if opts.quick:
        log("--quick: a few patients per arm; a smoke test, NOT the validation")
    cohorts = cohorts_needed(names, opts)
    ran = run_batches(opts, log, cohorts)
    t_runs = time.perf_counter() - t_start
    log("analysing ...")
    ctx = Context(opts, ran["folders"])
    for c in cohorts:
        ctx.cohort_runs[c] = read_runs(ctx.folders[c], _ARM_OF_POINT[c])
    everything = ctx.runs(*COHORTS)
    warnings = config_consistency(everything)
    if ran.get("fingerprint_runs") and ran["fingerprint_runs"] != ran["fingerprint"]:
        print(f"validation: note: the defaults now (fingerprint {ran['fingerprint']}) differ from those "
              f"the runs were made with ({ran['fingerprint_runs']}); the figures are those of the runs "
              "(see product_by_arm in results.json)", file=sys.stderr)
    arm_product = {}
    for r in everything:
        arm_product.setdefault(r["arm"], r["config"]["product"])
    results = {}
    for i, module in enumerate(modules, 1):
        log(f"check {module.NUMBER} ({i}/{len(modules)}): {module.TITLE} ...")
        results[module.NUMBER] = module.run(ctx)
    if opts.no_figures:
        made = []
    else:
        from validation.figures import make_figures
        made = make_figures(results, ctx.runs("mech_paired"), opts.out)
    ordered = [results[k] for k in sorted(results)]
    print(f"\n== Mechanisms of docs/model.md section 10 at the default parameters ({len(everything)} runs) ==")
    if opts.quick:
        print("   (--quick: a smoke test with a few patients; these figures are NOT the validation)")
    for r in ordered:
        print_block(r)
    for w in warnings:
        print(f"\nWARNING: {w}")
    n_pass = sum(r["passed"] for r in ordered)
    wall = time.perf_counter() - t_start
    meta = {"command": command,
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "fingerprint": ran["fingerprint"], "fingerprint_runs": ran.get("fingerprint_runs"), "quick": opts.quick,
            "analyse_only": opts.analyse_only, "workers": opts.workers,
            "checks": [m.NUMBER for m in modules], "cohorts": list(cohorts),
            "n": opts.n, "n_burden": opts.n_burden if not opts.burden_batch else None, "n_infusion": opts.n_infusion,
            "burden_batch": str(opts.burden_batch) if opts.burden_batch else None,
            "n_runs": len(everything), "wall_s": wall, "runs_wall_s": t_runs, "batches": ran["timing"],
            "figures": made, "passed": n_pass, "total": len(ordered), "warnings": warnings,
            "product_by_arm": arm_product}
    prev_file = opts.out / "results.json"
    if opts.analyse_only and prev_file.exists():     # keep the record of the command that made the runs
        prev = json.loads(prev_file.read_text()).get("meta", {})
        meta["simulated_by"] = prev.get("simulated_by") or (None if prev.get("analyse_only") else {
            k: prev.get(k) for k in ("command", "date", "commit", "dirty", "fingerprint", "wall_s", "runs_wall_s")})
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in ordered]
    (opts.out / "results.json").write_text(json.dumps(json_safe({"meta": meta, "results": clean}), indent=1) + "\n")
    (opts.out / "results.md").write_text(markdown(clean, meta))
    print(f"\n{n_pass}/{len(ordered)} mechanisms pass; {len(everything)} runs, wall {wall:.0f} s "
          f"(simulation {t_runs:.0f} s); results in {opts.out}/results.json, results.md"
          + (f", figures {', '.join(made)}" if made else ""))
    return 0 if n_pass == len(ordered) and not warnings else 1
