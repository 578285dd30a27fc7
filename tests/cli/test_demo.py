"""`tailor demo --exit` end to end at a tiny budget: API, host agent, orchestrator on local
Ray, SQLite — the job completes with measured decode latency on every front member."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest


def test_demo_runs_the_whole_system(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "demo",
            "--out",
            str(tmp_path),
            "--exit",
            "--population",
            "3",
            "--generations",
            "2",
            "--tokens",
            "3000",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Pareto front" in result.stdout and "completed" in result.stdout
    db = sqlite3.connect(tmp_path / "tailor.db")
    status = db.execute("SELECT status FROM jobs").fetchone()[0]
    metrics = [json.loads(m) for (m,) in db.execute("SELECT metrics FROM candidates")]
    measured = db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
    assert status == "completed"
    assert len(metrics) == 3 + 1 * 1  # population + offspring (population - elitism)
    assert all(m["decode_ms@128[host]"] > 0 and m["perplexity"] > 1 for m in metrics)
    assert measured == len(metrics)  # one measurement per candidate, stored once


def test_a_quantized_demo_profiles_and_scores_the_int8_graphs(tmp_path):
    """decode_ms@128[host:int8] and perplexity[:int8] end to end: the host agent measures
    the int8 graphs the workers made, and the trained model is scored through them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "demo",
            "--out",
            str(tmp_path),
            "--exit",
            "--population",
            "2",
            "--generations",
            "1",
            "--tokens",
            "3000",
            "--workers",
            "2",
            "--precision",
            "int8",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    db = sqlite3.connect(tmp_path / "tailor.db")
    assert db.execute("SELECT status FROM jobs").fetchone()[0] == "completed"
    metrics = [json.loads(m) for (m,) in db.execute("SELECT metrics FROM candidates")]
    assert len(metrics) == 2
    for m in metrics:
        assert m["decode_ms@128[host:int8]"] > 0
        # the same trained model through its int8 graph: close to, not equal to, float
        assert m["perplexity[:int8]"] > 1 and m["perplexity[:int8]"] != m["perplexity"]
        assert abs(m["perplexity[:int8]"] / m["perplexity"] - 1) < 0.5
    tasks = db.execute("SELECT variant FROM profiling_tasks").fetchall()
    assert tasks == [("int8",)] * 2  # the float graphs were not measured
    reports = [json.loads(r) for (r,) in db.execute("SELECT report FROM measurements")]
    assert [r["precision"] for r in reports] == ["int8"] * 2
    names = {p.name for p in (tmp_path / "artifacts").rglob("*.onnx")}
    assert {"prefill.int8.onnx", "decode.int8.onnx"} <= names


def test_a_multi_fidelity_demo_trains_rungs_and_writes_them_into_each_generation(tmp_path):
    """`training.fidelities` end to end in the embedded system: every candidate trains on the
    first rung, one in three moves up, and the generations' stats carry the rungs the
    dashboard draws (tests/api/test_dashboard.py checks the drawing)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--out", str(tmp_path), "--exit",
         "--population", "4", "--generations", "2", "--tokens", "3000",
         "--fidelities", "1000,3000", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    db = sqlite3.connect(tmp_path / "tailor.db")
    assert db.execute("SELECT status FROM jobs").fetchone()[0] == "completed"
    rows = [
        (json.loads(r), json.loads(c), g)
        for r, c, g in db.execute("SELECT rungs, compute, generation FROM candidates")
    ]
    for generation, born in ((0, 4), (1, 2)):
        mine = [(r, c) for r, c, g in rows if g == generation]
        assert len(mine) == born
        assert sum(len(r) == 2 for r, _ in mine) == -(-born // 3)  # ceil(born / 3) promoted
        assert all(r[0]["tokens"] == 1000 and c["training_s"] > 0 for r, c in mine)
    stats = [json.loads(s) for (s,) in db.execute('SELECT stats FROM generations ORDER BY "index"')]
    assert [s["rungs"]["reached"] for s in stats] == [[4, 2], [2, 1]]
    assert stats[-1]["compute"]["job"]["compute_s"] == pytest.approx(
        sum(c["compute_s"] for _, c, _ in rows)
    )
    assert stats[-1]["compute"]["job"]["device_s"] > 0  # the host agent's measuring time
