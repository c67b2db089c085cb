"""Small study inputs shared by the calibration tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cd28_arm_batch(size: int) -> str:
    """A batch file: ``size`` CD28 trial patients with log-normal tumour burdens (root seed 5)."""
    return f"""\
[batch]
name = "arm"
root_seed = 5
base = "{ROOT / 'configs' / 'trial_patient.toml'}"

[batch.population]
size = {size}
"product.preset" = {{dist = "choice", values = ["cd28"]}}
"patient.tumour_burden_cells" = {{dist = "lognormal", median = 9.5e10, sigma = 1.0, low = 1e9, high = 1e12}}
"""
