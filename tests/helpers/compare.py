"""Run-file comparison for the tests: ``scripts/compare_outputs.py``'s ``compare_h5``.

The script is the user's tool for "are these two run files the same, bit for
bit, but for the attributes that record how they were made"; the tests use
the same function rather than a second copy of it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def compare_h5():
    """``compare_h5(a, b, ...)`` of ``scripts/compare_outputs.py`` (loaded from the script)."""
    spec = importlib.util.spec_from_file_location("compare_outputs",
                                                  ROOT / "scripts" / "compare_outputs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.compare_h5


def quiet(_msg):
    """A log callback that drops every message."""
