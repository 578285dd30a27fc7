"""Fixtures: a loopback phone (ADB stand-in over TCP), the release line of its runner (a
matrix: every test that takes `runner_line` runs against each line the stand-in runner
reproduces), and tiny graphs."""

from __future__ import annotations

import pytest

from device_agent.adb_device import Phone
from device_agent.config import adb_key_path

from .adb_standin import AdbStandin, make_sandbox
from .graphs import write_graphs
from .standin_texts import LINES


@pytest.fixture
def standin(tmp_path):
    device = AdbStandin(make_sandbox(tmp_path / "phone"))
    device.start()
    yield device
    device.stop()


@pytest.fixture(params=LINES)
def runner_line(request, standin) -> str:
    """The phone's onnxruntime_perf_test is of this release line (standin_texts.LINES)."""
    standin.set_runner_line(request.param)
    return request.param


@pytest.fixture
def phone(standin, tmp_path):
    handle = Phone(
        adb_key_path(tmp_path / "agent"),
        tcp=f"127.0.0.1:{standin.port}",
        auth_timeout_s=10,
        transport_timeout_s=10,
    )
    handle.connect()
    yield handle
    handle.close()


@pytest.fixture(scope="session")
def graph_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graphs")
    write_graphs(folder)
    return folder
