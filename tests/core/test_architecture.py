"""The import graph of the project: no circles, and every import runs downward.

The graph is built from the source with :mod:`ast` (every import statement,
including those inside functions, which can hide a circle but not remove it;
only imports under ``if TYPE_CHECKING:`` are skipped, since they never run).
Each module belongs to one named layer; a module may import modules of its
own layer or of lower layers, never of a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("abm", "analysis", "benchmarks", "validation")

#: Layers from the bottom up: (name, module prefixes). A module belongs to the
#: layer of its longest matching prefix; "=name" matches that module alone (the
#: ``abm`` package face is the interface, its submodules are placed one by one).
LAYERS = [
    ("kernels", ["abm.kernels"]),
    ("foundation", ["abm.version", "abm.errors", "abm.schema", "abm.presets", "abm.triggers",
                    "abm.grading", "abm.cells", "abm.lattice", "abm.logs", "abm.progress"]),
    ("core", ["abm.process", "abm.state", "abm.simulation"]),
    ("model", ["abm.model"]),
    ("config", ["abm.config"]),
    ("assembly", ["abm.build"]),
    ("io", ["abm.io"]),
    ("batch and analysis", ["abm.batch", "analysis"]),
    # sensitivity analysis and calibration: designs of many batches, summarised
    ("studies", ["abm.studies"]),
    ("tools", ["benchmarks", "validation"]),
    # the package itself re-exports the Python API (abm.simulate, abm.run_batch)
    ("interface", ["=abm", "abm.api", "abm.cli", "abm.__main__"]),
    ("scripts", ["scripts"]),
]


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            exact = p.startswith("=")
            p = p.lstrip("=")
            hit = module == p or (not exact and module.startswith(p + "."))
            if hit and len(p) > best_len:
                best, best_len = i, len(p)
    if best is None:
        raise KeyError(f"module {module} belongs to no layer; add it to LAYERS")
    return best


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")) if (ROOT / pkg).is_dir() else []:
            mods[module_name(path)] = path
    for path in sorted((ROOT / "scripts").glob("*.py")):
        mods[module_name(path)] = path
    return mods


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imported_names(tree: ast.AST, module: str, is_package: bool, modules=()) -> list[str]:
    """Absolute names that the import statements of ``tree`` name (runtime imports only).

    ``from P import n`` gives ``P.n`` when that is one of ``modules`` and ``P``
    otherwise: loading a submodule through its package is no use of the
    package's own code.
    """
    out: list[str] = []

    def visit(node):
        if _type_checking_block(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            for a in node.names:
                full = f"{prefix}.{a.name}"
                out.append(full if full in modules else prefix)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports."""
    mods = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = set()
        for imp in imported_names(tree, name, path.name == "__init__.py", mods):
            while imp and imp not in mods:   # `import pkg.mod.x`: the nearest project module
                imp = imp.rpartition(".")[0]
            if imp and imp != name:
                targets.add(imp)
        graph[name] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def strongconnect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return out


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in sorted(graph.items()):
        for dst in sorted(targets):
            if layer_of(dst) > layer_of(src):
                bad.append(f"{src} ({LAYERS[layer_of(src)][0]}) imports {dst} "
                           f"({LAYERS[layer_of(dst)][0]})")
    return bad


def test_every_module_has_a_layer():
    for name in project_modules():
        layer_of(name)


def test_no_import_circles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_every_import_runs_downward():
    bad = upward_imports(import_graph())
    assert not bad, "imports from a lower layer to a higher one:\n" + "\n".join(bad)


def test_kernels_are_pure():
    """Kernels are functions on arrays: no other project module, no files, configs or logging."""
    forbidden = {"abm", "analysis", "h5py", "xarray", "tomllib", "matplotlib"}
    for name, path in project_modules().items():
        if not name.startswith("abm.kernels"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for imp in imported_names(tree, name, path.name == "__init__.py"):
            assert imp.split(".")[0] not in forbidden or imp.startswith("abm.kernels"), \
                f"{name} imports {imp}"


# -- the checker itself can fail ------------------------------------------------

def test_checker_finds_a_circle_and_an_upward_import():
    graph = {"abm.model.a": {"abm.io.writer"}, "abm.io.writer": {"abm.model.a"},
             "abm.kernels.x": set()}
    assert find_cycles(graph) == [["abm.io.writer", "abm.model.a"]]
    assert upward_imports(graph) == ["abm.model.a (model) imports abm.io.writer (io)"]


def test_checker_sees_imports_inside_functions_but_not_type_checking():
    src = ("from typing import TYPE_CHECKING\n"
           "if TYPE_CHECKING:\n    from abm.io import writer\n"
           "def f():\n    from abm.build import build_simulation\n")
    names = imported_names(ast.parse(src), "abm.model.x", False)
    assert "abm.build" in names
    assert not any(n.startswith("abm.io") for n in names)


def test_relative_imports_resolve():
    names = imported_names(ast.parse("from .schema import param\nfrom . import x\n"),
                           "abm.config", True, modules={"abm.config.x"})
    assert names == ["abm.config.schema", "abm.config.x"]


def test_from_package_import_module_is_an_edge_to_the_module_only():
    graph = import_graph()
    # abm.batch.executors does `from abm.batch import worker`
    assert "abm.batch.worker" in graph["abm.batch.executors"]
    assert "abm.batch" not in graph["abm.batch.executors"]


@pytest.mark.parametrize("module,layer", [("abm.kernels.rng", "kernels"), ("abm.model.blood", "model"),
                                          ("abm.build", "assembly"), ("analysis.report", "batch and analysis"),
                                          ("abm.version", "foundation"), ("abm", "interface"),
                                          ("abm.api", "interface")])
def test_layer_names(module, layer):
    assert LAYERS[layer_of(module)][0] == layer


def test_a_new_abm_module_must_be_placed():
    with pytest.raises(KeyError, match="abm.newthing"):
        layer_of("abm.newthing")
