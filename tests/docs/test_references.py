"""Documents, report templates and code comments name only files that exist in the repository.

A reader must be able to open every file a text points at: ``docs/model.md``,
``abm/model/blood.py``, ``configs/default.toml``, a figure, a sibling page.
Files that live outside the repository (a design note called MODEL.md or
ARCHITECTURE.md, a research note called parameters.md) must not be named at
all: the repository's own docs (``docs/model.md``,
``docs/parameter_table.md``, ``docs/developing.md``) replace them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Top-level folders of the repository: a path starting with one names a repository file.
TOP_FOLDERS = ("abm", "analysis", "validation", "scripts", "tests", "configs", "docs",
               "benchmarks")
#: File kinds the check follows (outputs such as .h5 or .csv are written by runs, not shipped).
SUFFIXES = ("py", "md", "toml", "j2", "png", "cff", "txt", "ipynb", "json")

#: A repository path: ``docs/model.md``, ``abm/model/blood.py``, ``./docs/figures/x.png``.
REPO_PATH = re.compile(
    r"(?<![\w/.$<{-])(?:\./)?((?:%s)/[\w./-]*?\w\.(?:%s))(?![\w/*])"
    % ("|".join(TOP_FOLDERS), "|".join(SUFFIXES)))
#: A root file named alone: ``README.md``, ``CHANGELOG.md``, ``Makefile``.
ROOT_FILE = re.compile(r"(?<![\w/.-])([A-Z][A-Za-z_]*\.(?:md|cff|toml))(?![\w/])")
#: A markdown link or image target relative to the document: ``](figures/x.png)``, ``](brain.md#3)``.
MD_LINK = re.compile(r"\]\(([^)\s#:]+)(?:#[^)]*)?\)")
#: Files outside the repository that texts used to cite.
OUTSIDE = re.compile(r"(?<![\w/.-])(MODEL\.md|ARCHITECTURE\.md|parameters\.md)(?![\w])")
#: Files that commands write (not shipped): the benchmark results and their summary.
GENERATED = ("benchmarks/results/", "RESULTS.md")


def _exists(rel: str, base: Path, root: Path) -> bool:
    if rel.startswith(GENERATED):
        return True
    if len(Path(rel).stem) == 1:        # a placeholder in an example: configs/x.toml
        return True
    return (root / rel).exists() or (base / rel).exists()


def problems(text: str, where: Path, root: Path = ROOT) -> list[str]:
    """Every reference in ``text`` (the contents of ``where``) to a missing or an outside file.

    Returns one line per problem, ``'<file>:<line>: <what>'``; empty when the
    text is clean.
    """
    rel_where = where.relative_to(root) if where.is_absolute() else where
    base = (root / rel_where).parent
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        found = set()
        for m in OUTSIDE.finditer(line):
            out.append(f"{rel_where}:{lineno}: names {m.group(1)}, a file outside the "
                       "repository (use docs/model.md, docs/parameter_table.md or docs/developing.md)")
            found.add(m.group(1))
        for m in REPO_PATH.finditer(line):
            if not _exists(m.group(1), base, root):
                out.append(f"{rel_where}:{lineno}: names {m.group(1)}, which does not exist")
        for m in ROOT_FILE.finditer(line):
            name = m.group(1)
            if name not in found and not _exists(name, base, root):
                out.append(f"{rel_where}:{lineno}: names {name}, which does not exist")
        if where.suffix == ".md":
            for m in MD_LINK.finditer(line):
                target = m.group(1)
                if not (base / target).exists():
                    out.append(f"{rel_where}:{lineno}: links to {target}, which does not exist")
    return out


def _comments(source: str) -> str:
    """The comment and string text of a Python source (docstrings included), lines kept in place."""
    import io
    import tokenize
    lines = [""] * (source.count("\n") + 1)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            for i, part in enumerate(tok.string.splitlines()):
                lines[tok.start[0] - 1 + i] += " " + part
    return "\n".join(lines)


def _toml_comments(source: str) -> str:
    return "\n".join(line[line.index("#"):] if "#" in line else "" for line in source.splitlines())


def documents(root: Path = ROOT) -> list[Path]:
    """The texts a reader follows: README, changelog, docs pages, report templates."""
    out = [root / "README.md", root / "CHANGELOG.md", root / "Makefile"]
    out += sorted((root / "docs").rglob("*.md"))
    out += sorted((root / "analysis" / "templates").glob("*"))
    return [p for p in out if p.is_file()]


def sources(root: Path = ROOT) -> list[Path]:
    """Code and config files whose comments and docstrings are checked."""
    out = []
    for folder in TOP_FOLDERS + ("notebooks",):
        if (root / folder).is_dir():
            out += sorted((root / folder).rglob("*.py")) + sorted((root / folder).rglob("*.toml"))
    out.append(root / "pyproject.toml")
    this = Path(__file__).resolve()
    return [p for p in out if p.is_file() and p.resolve() != this]


def _text_of(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return _comments(text)
    if path.suffix == ".toml":
        return _toml_comments(text)
    return text


# -- the checker can fail ---------------------------------------------------------------

def test_checker_flags_missing_repository_files(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "model.md").write_text("# model\n")
    (tmp_path / "abm").mkdir()
    (tmp_path / "abm" / "grading.py").write_text("")
    text = ("See docs/model.md and abm/grading.py.\n"           # fine
            "See docs/missing.md, abm/model/nothere.py and configs/gone.toml.\n"
            "Run scripts/absent.py; tests in tests/x/test_none.py.\n"
            "The figure ![a](figures/none.png) and [b](model.md) and [c](other.md).\n")
    found = problems(text, tmp_path / "docs" / "page.md", tmp_path)
    joined = "\n".join(found)
    for name in ("docs/missing.md", "abm/model/nothere.py", "configs/gone.toml",
                 "scripts/absent.py", "tests/x/test_none.py", "figures/none.png", "other.md"):
        assert name in joined, (name, found)
    assert "docs/model.md," not in joined and "abm/grading.py" not in joined
    assert "links to model.md" not in joined
    assert all(line.startswith("docs/page.md:") for line in found)
    assert found[0].startswith("docs/page.md:2:")


def test_checker_flags_outside_files(tmp_path):
    (tmp_path / "docs").mkdir()
    for bad in ("as MODEL.md section 10 says", "see ARCHITECTURE.md", "parameters.md 1d",
                "(MODEL.md 10.3)"):
        found = problems(bad, tmp_path / "README.md", tmp_path)
        assert len(found) == 1 and "outside the repository" in found[0], (bad, found)
    assert problems("docs/model.md section 10, docs/parameter_table.md", tmp_path / "README.md",
                    tmp_path) != []            # both missing in this empty tree ...
    (tmp_path / "docs" / "model.md").write_text("")
    (tmp_path / "docs" / "parameter_table.md").write_text("")
    assert problems("docs/model.md section 10, docs/parameter_table.md", tmp_path / "README.md",
                    tmp_path) == []            # ... and fine once they exist


def test_checker_reads_comments_and_docstrings_of_code():
    code = ('"""Check 3 (MODEL.md 10.3)."""\n'
            "x = 1  # see docs/none_such.md\n"
            "y = 'configs/default.toml'\n")
    found = problems(_comments(code), ROOT / "validation" / "example.py")
    assert any("MODEL.md" in f and ":1:" in f for f in found), found
    assert any("docs/none_such.md" in f and ":2:" in f for f in found), found
    assert len(found) == 2, found


def test_checker_ignores_patterns_and_outputs():
    text = ("docs/figures/*.png, tests/<layer>/test_x.py, runs/example/report/report.md, "
            "${OUT}/docs/x.md, abm.model.blood, https://example.org/docs/a.md, "
            "configs/x.toml: error, benchmarks/results/RESULTS.md\n")
    assert problems(text, ROOT / "README.md") == []


# -- the repository ---------------------------------------------------------------------

@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_documents_name_existing_files(path):
    found = problems(_text_of(path), path)
    assert not found, "\n".join(found)


def test_code_comments_name_existing_files():
    found = []
    for path in sources():
        found += problems(_text_of(path), path)
    assert not found, "\n".join(found)
