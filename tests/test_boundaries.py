"""Package boundaries from DESIGN.md, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return {name.split(".")[0] for name in result.stdout.split()}


@pytest.mark.parametrize("statement", [
    "import orchestrator.genome",
    "import workers.liv.catalog, workers.model.costs",
    "import device_agent.protocol",
])
def test_torch_free_modules_import_no_torch_and_no_ray(statement):
    modules = imported_after(statement)
    assert "torch" not in modules
    assert "ray" not in modules


def test_workers_never_import_api_or_orchestrator():
    modules = imported_after("import workers.model.compiler, workers.export.onnx_export")
    assert "api" not in modules
    assert "orchestrator" not in modules
