"""`tailor demo --exit` end to end at a tiny budget: API, host agent, orchestrator on local
Ray, SQLite — the job completes with measured decode latency on every front member."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys


def test_demo_runs_the_whole_system(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--out", str(tmp_path), "--exit",
         "--population", "3", "--generations", "2", "--tokens", "3000", "--workers", "2"],
        capture_output=True, text=True, timeout=600, env=env)
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
