"""The test suites' layout stays as README's layout table describes it.

* Test modules live in tests/unit/, tests/integration/ or tests/reliability/ as
  `test_<feature>.py`; the cases comparing ours with the reference live in conformance/cases/.
* tests/, conformance/ and scripts/ import through packages (pytest's `pythonpath`, the venv's
  editable install, `python -m`), never by editing `sys.path`.
* conformance/ (the black-box suite and the shared harness) imports nothing from tests/.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITES = ("unit", "integration", "reliability")
PYTHON_DIRS = ("tests", "conformance", "scripts")


def _modules(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def _is_sys_path(node: ast.AST) -> bool:
    """True for the expression `sys.path` (also `sys.path[...]`)."""
    if isinstance(node, ast.Subscript):
        node = node.value
    return (isinstance(node, ast.Attribute) and node.attr == "path"
            and isinstance(node.value, ast.Name) and node.value.id == "sys")


def sys_path_edits(source: str) -> list[int]:
    """Line numbers where `source` changes sys.path: a method call on it (insert, append,
    extend, ...), an assignment to it or to a slice of it, an augmented assignment."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and _is_sys_path(node.func.value)):
            lines.append(node.lineno)
        elif isinstance(node, ast.Assign) and any(_is_sys_path(t) for t in node.targets):
            lines.append(node.lineno)
        elif isinstance(node, ast.AugAssign) and _is_sys_path(node.target):
            lines.append(node.lineno)
    return sorted(lines)


def test_sys_path_edits_are_recognised() -> None:
    code = ("import sys\nsys.path.insert(0, 'x')\nsys.path[:0] = ['y']\nsys.path += ['z']\n"
            "print(sys.path)\nLAUNCHER = 'sys.path.insert(0, x)'\n")
    assert sorted(sys_path_edits(code)) == [2, 3, 4]


def test_no_sys_path_edits() -> None:
    bad = [f"{p.relative_to(ROOT)}:{n}" for p in _modules(*PYTHON_DIRS)
           for n in sys_path_edits(p.read_text())]
    assert not bad, "sys.path edited (import through packages, or give a child PYTHONPATH): " \
        + ", ".join(bad)


def test_test_modules_in_a_suite_folder() -> None:
    tests = ROOT / "tests"
    misplaced = [str(p.relative_to(ROOT)) for p in _modules("tests")
                 if p.name.startswith("test_") and p.parent.name not in SUITES]
    assert not misplaced, f"test modules outside tests/{{{','.join(SUITES)}}}/: {misplaced}"
    for suite in SUITES:
        assert (tests / suite / "__init__.py").is_file(), suite


def test_conformance_imports_nothing_from_tests() -> None:
    bad = []
    for p in _modules("conformance"):
        for node in ast.walk(ast.parse(p.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "tests" or n.startswith("tests.") for n in names):
                bad.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert not bad, f"conformance/ imports tests/: {bad}"
