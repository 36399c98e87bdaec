"""The floors of the house, read from the source: imports point down only.

pipelines/, benchmarks/ → l2m_bench → l2m_sfm → l2m. Every import statement of every module is parsed (also the
lazy ones inside functions), so a new upward import fails here with the file and line.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# package -> the project packages it must never import
FORBIDDEN = {
    "l2m": ("l2m_sfm", "l2m_bench", "pipelines", "benchmarks"),
    "l2m_sfm": ("l2m_bench", "pipelines", "benchmarks"),
    "l2m_bench": ("pipelines", "benchmarks"),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file; relative imports are inside their package."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def test_the_parser_sees_lazy_and_from_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\ndef f():\n    from l2m_sfm.pairs import x\n    import l2m_bench.run as r\n"
                 "from . import sibling\n")
    assert imported_modules(f) == [(1, "os"), (3, "l2m_sfm.pairs"), (4, "l2m_bench.run")]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_down_only(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"package {package} not found under {REPO}"
    bad = [f"{f.relative_to(REPO)}:{line} imports {name}" for f in files for line, name in imported_modules(f)
           if name.split(".")[0] in FORBIDDEN[package]]
    assert not bad, "upward imports:\n" + "\n".join(bad)
