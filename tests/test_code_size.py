"""The team's size rule (docs/DESIGN.md): no source file over 500 lines, no function over 80 lines.

A failure lists every offender with its size, so the next refactoring knows where to start.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "cxrkit"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def long_files() -> list[str]:
    out = []
    for path in _sources():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_FILE_LINES:
            out.append(f"{path.relative_to(SRC.parent)}: {n} lines")
    return out


def long_functions() -> list[str]:
    """Functions and methods (nested ones too), measured from ``def`` (or the first decorator) to their end."""
    out = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                n = node.end_lineno - start + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{path.relative_to(SRC.parent)}:{node.lineno} {node.name}: {n} lines")
    return out


def test_no_source_file_over_500_lines():
    assert long_files() == []


def test_no_function_over_80_lines():
    assert long_functions() == []
