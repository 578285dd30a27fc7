"""`pip install .` with no extras is a working profiling agent, without the search stack.

A fresh virtual environment gets the project as a user beside a phone installs it (no
extras, not editable), then `tailor agent --help` runs and the host backend measures a real
ONNX export from its manifest. torch, Ray, FastAPI and SQLAlchemy must not be installed.
pip reads its wheels from the local cache the Makefile's install filled, so this takes
about a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from tests.device_agent.graphs import write_graphs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def agent_venv(tmp_path_factory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is needed to copy the tracked tree")
    base = tmp_path_factory.mktemp("agent-only")
    source = base / "src"
    # Only what git tracks (a clean checkout's files), not .venv or build leftovers.
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        target = source / name.decode()
        if (ROOT / name.decode()).is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name.decode(), target)
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=900,
        env=environment,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return env_dir


def test_no_extras_installs_none_of_the_search_or_server_stack(agent_venv):
    installed = subprocess.run(
        [str(agent_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {p["name"].lower().replace("_", "-") for p in json.loads(installed.stdout)}
    assert "tailor" in names and {"onnxruntime", "adb-shell", "httpx", "pydantic"} <= names
    assert not names & {"torch", "ray", "fastapi", "sqlalchemy", "uvicorn", "pymoo"}


def test_tailor_agent_help_runs_without_extras(agent_venv):
    result = subprocess.run(
        [str(agent_venv / "bin" / "tailor"), "agent", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--host" in result.stdout and "--usb" in result.stdout and "--tcp" in result.stdout


def test_a_host_measurement_runs_without_extras(agent_venv, tmp_path):
    graphs = tmp_path / "graphs"
    write_graphs(graphs)
    code = (
        "import sys; from pathlib import Path;"
        "from core.protocol import MeasurementSpec;"
        "from device_agent.host_backend import measure_task;"
        "r = measure_task(Path(sys.argv[1]), MeasurementSpec(prefill_lengths=[16],"
        " decode_contexts=[32], warmup=1, repeats=3));"
        "assert not {'torch', 'ray', 'fastapi', 'sqlalchemy'} & set(sys.modules);"
        "print(r.model_dump_json())"
    )
    result = subprocess.run(
        [str(agent_venv / "bin" / "python"), "-c", code, str(graphs)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert [s["length"] for s in report["decode"]] == [32]
    assert report["decode"][0]["n"] == 3 and report["decode"][0]["median_ms"] > 0
    assert report["peak_memory_bytes"] > 0


def test_commands_that_need_an_extra_say_which_and_torch_free_ones_run(agent_venv, tmp_path):
    tailor = str(agent_venv / "bin" / "tailor")
    served = subprocess.run(
        [tailor, "serve", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert served.returncode == 2
    assert "pip install 'tailor[server]'" in served.stderr and "Traceback" not in served.stderr
    presets = subprocess.run(
        [tailor, "arch", "presets"], capture_output=True, text=True, timeout=120
    )  # exact static costs are torch-free
    assert presets.returncode == 0, presets.stderr
    assert "lfm2" in presets.stdout and "transformer++" in presets.stdout
