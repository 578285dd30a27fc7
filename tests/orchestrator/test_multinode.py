"""Evaluations on a real two-node Ray cluster on loopback (`ray start --head` + a second
`ray start --address`), driven through RAY_ADDRESS exactly as in a deployment."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

RAY = Path(sys.executable).with_name("ray")

DRIVER = textwrap.dedent("""
    import json, time
    from orchestrator.ray_evaluator import RayEvaluator, connect
    from core import preset
    resources = connect()
    genome = preset("transformer++", width=32, layers=1, heads=2, kv_heads=1, ffn=64,
                    vocab=257).to_json()
    evaluator = RayEvaluator()
    for i in range(2):
        evaluator.submit_quality(f"q{i}", genome, {"tokens": 150_000, "seq_len": 32,
                                 "seed": i, "tokenizer": {"kind": "byte"}}, timeout_s=300)
    results = {}
    while evaluator.in_flight():
        for f in evaluator.collect(1.0):
            results[f.genome_hash] = f
    print(json.dumps({"cpus": resources.get("CPU"),
                      "nodes": [r.value.result.node for r in results.values()],
                      "status": [r.value.result.status for r in results.values()]}))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(*args: str, env: dict) -> None:
    result = subprocess.run([str(RAY), *args], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"ray {args[0]} failed: {result.stderr[-2000:]}"


@pytest.fixture
def two_node_cluster():
    # A short private HOME and temp dir: Ray's socket paths must stay under 107 bytes, and
    # no auth token left in ~/.ray by another local cluster may leak in.
    home = Path(tempfile.mkdtemp(prefix="tray"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # A local ray.init earlier in this process sets RAY_AUTH_MODE=token; this loopback
    # cluster runs without token auth (a deployment keeps it on and shares the token).
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    port = free_port()
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    try:
        ray_cli(
            "start",
            "--head",
            f"--port={port}",
            "--include-dashboard=false",
            f"--temp-dir={home / 'r'}",
            *common,
            env=env,
        )
        ray_cli("start", f"--address=127.0.0.1:{port}", *common, env=env)
        yield {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}
    finally:
        stop_cluster(home)
        shutil.rmtree(home, ignore_errors=True)


def stop_cluster(home: Path) -> None:
    """Kill this cluster's processes only: those whose command line names its private
    folder (raylet, GCS, workers). `ray stop --force` would kill every Ray process on the
    machine: another pytest worker's, a running `tailor demo`'s, a benchmark's."""
    import signal

    mine = str(home)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if mine in cmdline:
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue  # gone already, or not ours to read


def test_evaluations_spread_over_two_nodes(two_node_cluster):
    out = subprocess.run(
        [sys.executable, "-c", DRIVER],
        env=two_node_cluster,
        capture_output=True,
        text=True,
        timeout=400,
        cwd=Path(__file__).parents[2],
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["cpus"] == 2.0
    assert report["status"] == ["ok", "ok"]
    assert len(set(report["nodes"])) == 2  # one CPU per node: each task ran on its own node
