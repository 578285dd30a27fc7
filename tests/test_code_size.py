"""Units a reader can hold: no module over 400 lines and no function body over 60 lines in the
packages and benchmarks (tests and migrations aside), unless a one-line reason says why.

A reason is a comment `# size: ...` on the line above the `def` (or on its line), or, for a
whole module, within its first five lines. A function's body is counted from its first
statement after the docstring to its last line, so a command's declarative options (typer
signatures) do not count, the steps it takes do.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "store", "api", "orchestrator", "workers", "device_agent", "cli", "bench")
MAX_MODULE_LINES, MAX_BODY_LINES = 400, 60


def sources() -> list[Path]:
    return [
        f
        for pkg in PACKAGES
        for f in sorted((ROOT / pkg).rglob("*.py"))
        if "migrations" not in f.parts
    ]


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    if (
        len(body) > 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1


def has_reason(lines: list[str], lineno: int) -> bool:
    """A `# size:` comment on the def line, or just above it (decorators skipped)."""
    index = lineno - 1
    if "# size:" in lines[index]:
        return True
    index -= 1
    while index >= 0 and lines[index].lstrip().startswith("@"):
        index -= 1
    return index >= 0 and lines[index].lstrip().startswith("# size:")


def oversized() -> list[str]:
    found = []
    for path in sources():
        text = path.read_text()
        lines = text.splitlines()
        name = str(path.relative_to(ROOT))
        if len(lines) > MAX_MODULE_LINES and not any("# size:" in ln for ln in lines[:5]):
            found.append(f"{name}: {len(lines)} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = body_lines(node)
                if length > MAX_BODY_LINES and not has_reason(lines, node.lineno):
                    found.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    return found


def test_no_unit_is_oversized_without_a_reason():
    assert oversized() == []


def test_the_counter_counts_bodies_and_reads_reasons(tmp_path):
    source = 'def f(\n    a=1,\n    b=2,\n):\n    """Doc."""\n' + "    x = 1\n" * 61
    tree = ast.parse(source)
    assert body_lines(tree.body[0]) == 61
    lines = ("# size: a table\n" + source).splitlines()
    assert has_reason(lines, 2) and not has_reason(source.splitlines(), 1)
