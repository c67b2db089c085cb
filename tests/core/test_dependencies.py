"""Every third-party module imported by the packages is declared in pyproject.toml.

``make test`` installs from pyproject on a fresh machine: an import that works
here only because the package happened to be installed would fail there.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("abm", "analysis", "validation", "benchmarks")
#: Top-level modules of the project itself.
OWN = set(PACKAGES)
#: Import name -> distribution name where the two differ.
DISTRIBUTION = {"yaml": "pyyaml", "sklearn": "scikit-learn", "PIL": "pillow",
                "dateutil": "python-dateutil", "h5netcdf": "h5netcdf", "dask": "dask",
                "attr": "attrs", "google": "protobuf", "cv2": "opencv-python",
                "skimage": "scikit-image", "bs4": "beautifulsoup4"}
#: Distributions whose modules another declared distribution brings (``dask[array]``
#: pulls ``toolz``, ...); none are relied on at the moment.
IMPLIED: dict[str, set[str]] = {}


def _declared() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    deps = list(data["project"]["dependencies"])
    names = set()
    for spec in deps:
        name = re.match(r"[A-Za-z0-9_.\-]+", spec).group(0)
        names.add(re.sub(r"[-_.]+", "-", name).lower())
    return names


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def third_party_imports() -> dict[str, list[str]]:
    """{top-level module: [files importing it]} for modules outside stdlib and the project."""
    found: dict[str, list[str]] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for mod in _imports(path):
                if mod in OWN or mod in sys.stdlib_module_names or mod == "__future__":
                    continue
                found.setdefault(mod, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared():
    declared = _declared()
    missing = {}
    for mod, files in third_party_imports().items():
        dist = re.sub(r"[-_.]+", "-", DISTRIBUTION.get(mod, mod)).lower()
        if dist not in declared:
            missing[mod] = f"{dist} (imported in {', '.join(files[:3])})"
    assert not missing, f"imported but not in pyproject dependencies: {missing}"


def test_declared_dependencies_have_lower_bounds():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    loose = [d for d in data["project"]["dependencies"] if ">=" not in d]
    assert not loose, f"dependencies without a lower bound: {loose}"


def test_the_scan_sees_known_imports():
    found = third_party_imports()
    assert "numpy" in found and "xarray" in found and "os" not in found
