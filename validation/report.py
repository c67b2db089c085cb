"""The record of one check and its printed and markdown forms."""

from __future__ import annotations

import subprocess
import sys

from validation import ROOT
from validation.stats import json_safe


def result(number: int, title: str, criterion: str, passed: bool, figures: dict, lines: list[str],
           diagnosis: str = "") -> dict:
    """One check's record: its number and mechanism, the PASS criterion, the verdict, the measured
    figures (JSON-safe), the printed lines and a diagnosis of a failure. Keys starting with ``_``
    added by a check carry data for the figures and are left out of results.json."""
    return {"check": number, "mechanism": title, "criterion": criterion,
            "passed": bool(passed), "figures": json_safe(figures), "lines": lines, "diagnosis": diagnosis}


def git(*args) -> str:
    """Output of a git command in the repository (empty if git is not there)."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def print_block(r: dict, file=sys.stdout) -> None:
    print(f"\n[{r['check']}] {r['mechanism']}  ->  {'PASS' if r['passed'] else 'FAIL'}", file=file)
    print(f"    check: {r['criterion']}", file=file)
    for line in r["lines"]:
        print(f"    {line}", file=file)
    if r["diagnosis"]:
        print(f"    note: {r['diagnosis']}", file=file)


def markdown(results: list[dict], meta: dict) -> str:
    out = ["# Mechanism validation (docs/model.md section 10)", "",
           f"Command: `{meta['command']}`  ", f"Date: {meta['date']}; commit {meta['commit']}"
           f"{' (+ uncommitted changes)' if meta['dirty'] else ''}; defaults fingerprint {meta['fingerprint']}  ",
           f"Runs: {meta['n_runs']} ({meta['workers']} workers), wall time {meta['wall_s']:.0f} s"
           + (" (analysis only; batches: " + ", ".join(f"{k} {v['wall_s']:.0f} s" for k, v in meta["batches"].items())
              + ")" if meta["analyse_only"] else "")
           + ("  \n**--quick: a smoke test, not the validation.**" if meta["quick"] else "")
           + (f"  \nRuns made by `{sb['command']}` on {sb['date']} (commit {sb['commit']}, defaults fingerprint "
              f"{sb['fingerprint']}), wall time {sb['wall_s']:.0f} s"
              if (sb := meta.get("simulated_by")) else ""), "",
           *[f"**WARNING: {w}**  " for w in meta.get("warnings", [])],
           "| # | mechanism | measured | result |", "|---|---|---|---|"]
    for r in results:
        meas = "<br>".join(line.replace("|", "\\|") for line in r["lines"])
        out.append(f"| {r['check']} | {r['mechanism']} | {meas} | **{'PASS' if r['passed'] else 'FAIL'}** |")
    out += ["", "Criteria:", ""]
    out += [f"{r['check']}. {r['criterion']}" + (f" -- note: {r['diagnosis']}" if r["diagnosis"] else "")
            for r in results]
    return "\n".join(out) + "\n"

