"""docs/parameter_table.md is generated from the parameter schema: it must match the code."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_parameter_table_is_current():
    proc = subprocess.run([sys.executable, "scripts/make_docs.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, ("docs/parameter_table.md is out of date: run "
                                  f"`python scripts/make_docs.py`\n{proc.stdout}{proc.stderr}")
