"""Fixtures: the release line of the loopback phone's runner (a matrix: every test that takes
`runner_line` runs against each line the stand-in runner reproduces), and tiny graphs. The
loopback phone itself (`standin`, `phone`) is in tests/conftest.py, shared with the export
tests."""

from __future__ import annotations

import pytest

from .graphs import write_graphs
from .standin_texts import LINES


@pytest.fixture(params=LINES)
def runner_line(request, standin) -> str:
    """The phone's onnxruntime_perf_test is of this release line (standin_texts.LINES)."""
    standin.set_runner_line(request.param)
    return request.param


@pytest.fixture(scope="session")
def graph_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graphs")
    write_graphs(folder)
    return folder
