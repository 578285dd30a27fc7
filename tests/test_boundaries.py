"""The house rules of docs/architecture.md: which package may import which, no cycles, and
which packages stay free of torch, Ray and the server stack.

Imports are read from the source (every `import`, module- or function-level), so a lazy
import inside a function breaks a rule as surely as one at the top; the heavy-dependency
checks import the packages in fresh interpreters and look at `sys.modules`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["core", "store", "api", "orchestrator", "workers", "device_agent", "cli"]
MAY_IMPORT = {
    "core": set(),
    "store": {"core"},
    "api": {"core", "store"},
    "orchestrator": {"core", "store", "workers"},
    "workers": {"core"},
    "device_agent": {"core"},
    "cli": set(PACKAGES) - {"cli"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                # `from . import x` may name submodules
                found += [
                    (node.lineno, f"{target}.{a.name}" if not node.module else target)
                    for a in node.names
                ]
            elif node.module:
                found.append((node.lineno, node.module))
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def project_files() -> dict[str, Path]:
    return {module_name(f): f for pkg in PACKAGES for f in sorted((ROOT / pkg).rglob("*.py"))}


FILES = project_files()


def file_graph() -> dict[str, set[str]]:
    """Module -> project modules it imports (names that are attributes map to their module)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in FILES.items():
        for _, target in imports_of(path):
            while target and target not in FILES:
                target = target.rpartition(".")[0]
            if target and target != name and target.split(".")[0] in PACKAGES:
                graph[name].add(target)
    return graph


def test_every_package_imports_only_what_the_map_allows():
    broken = []
    for name, path in FILES.items():
        package = name.split(".")[0]
        for line, target in imports_of(path):
            top = target.split(".")[0]
            if top in PACKAGES and top != package and top not in MAY_IMPORT[package]:
                broken.append(f"{path.relative_to(ROOT)}:{line}: {package} imports {target}")
    assert not sorted(set(broken)), "\n".join(sorted(set(broken)))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_cycle_between_files_or_packages():
    graph = file_graph()
    packages: dict[str, set[str]] = defaultdict(set)
    for source, targets in graph.items():
        for target in targets:
            if source.split(".")[0] != target.split(".")[0]:
                packages[source.split(".")[0]].add(target.split(".")[0])
    assert cycles(packages) == []
    # A package's __init__ re-exporting its own modules is not a cycle worth the name.
    files = {
        s: {t for t in ts if not (FILES[t].name == "__init__.py" and s.startswith(t + "."))}
        for s, ts in graph.items()
    }
    assert cycles(files) == []


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    probe = ROOT / "core" / "_probe_for_test.py"
    probe.write_text("def f():\n    import workers.liv\n    from . import catalog\n")
    try:
        found = [target for _, target in imports_of(probe)]
    finally:
        probe.unlink()
    assert "workers.liv" in found and "core.catalog" in found


def test_no_two_classes_share_a_name():
    seen: dict[str, list[str]] = defaultdict(list)
    for name, path in FILES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                seen[node.name].append(name)
    assert {k: v for k, v in seen.items() if len(v) > 1} == {}


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return {name.split(".")[0] for name in result.stdout.split()}


SERVER_AND_CLUSTER = {"torch", "ray", "fastapi", "sqlalchemy"}


@pytest.mark.parametrize(
    "statement, forbidden",
    [
        (
            "import core, core.job_spec, core.costs, core.protocol, core.manifest",
            SERVER_AND_CLUSTER,
        ),
        (
            "import device_agent.agent, device_agent.adb_backend, device_agent.host_backend",
            SERVER_AND_CLUSTER,
        ),
        ("import cli.main", SERVER_AND_CLUSTER),
        ("import api.app", {"torch", "ray"}),
        ("import store.tasks", {"torch", "ray", "fastapi"}),
        (
            "import workers.export.onnx_export, workers.train.trainer",
            {"ray", "fastapi", "sqlalchemy"},
        ),
    ],
)
def test_light_packages_stay_light(statement, forbidden):
    assert loaded_after(statement) & forbidden == set()
