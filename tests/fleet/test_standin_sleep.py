"""The stand-in runner's sleep mode (what fleet phones run) prints what its onnxruntime mode
prints, line for line with the numbers aside, on every release line, and the agent's parser
reads the sleep it was given as the latency."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from core.manifest import GraphManifest
from device_agent.inputs import graph_inputs, write_test_data
from device_agent.perf_output import parse_output
from tests.device_agent.adb_standin import make_sandbox
from tests.device_agent.graphs import write_graphs
from tests.device_agent.standin_texts import LINES

NUMBER = re.compile(r"\d+(\.\d+)?(e[-+]\d+)?")


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    """A sandbox phone with a model folder laid out as the agent lays it out."""
    root = make_sandbox(tmp_path_factory.mktemp("phone"))
    case = root / "data/local/tmp/case"
    write_graphs(case / "graphs")
    shutil.copy(case / "graphs" / "prefill.onnx", case / "model.onnx")
    manifest = GraphManifest.model_validate_json((case / "graphs/manifest.json").read_text())
    write_test_data(case, graph_inputs(manifest, "prefill", 8))  # case/test_data_set_0/
    return root, case


def run(root, case, *args: str) -> str:
    env = {**os.environ, "TAILOR_STANDIN_ROOT": str(root)}
    runner = str(root / "data/local/tmp/onnxruntime_perf_test")
    done = subprocess.run(
        [runner, *args, str(case / "model.onnx")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=case,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("line", LINES)
def test_sleep_mode_prints_what_the_onnxruntime_mode_prints(phone, line):
    root, case = phone
    (root / "runner_line").write_text(line)
    args = ("-e", "cpu", "-m", "times", "-r", "4", "-x", "1", "-v")
    (root / "runner_sleep_ms").unlink(missing_ok=True)
    real = run(root, case, *args)
    (root / "runner_sleep_ms").write_text("7")
    try:
        slept = run(root, case, *args)
    finally:
        (root / "runner_sleep_ms").unlink()
    assert NUMBER.sub("N", slept).splitlines() == NUMBER.sub("N", real).splitlines()
    parsed = parse_output(slept)
    assert len(parsed.runs_ms) == 4 and all(6.5 <= ms < 100 for ms in parsed.runs_ms)


def test_sleep_mode_fails_on_a_missing_model_as_the_loader_does(phone):
    root, case = phone
    (root / "runner_sleep_ms").write_text("7")
    env = {**os.environ, "TAILOR_STANDIN_ROOT": str(root)}
    try:
        done = subprocess.run(
            [str(root / "data/local/tmp/onnxruntime_perf_test"), "-m", "times", "-r", "1"]
            + [str(case / "missing.onnx")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        (root / "runner_sleep_ms").unlink()
    assert done.returncode == 255 and "Load model from" in done.stderr
