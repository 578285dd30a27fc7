"""`tailor demo` end to end at a tiny budget: local Ray, real training, a Pareto file."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_demo_writes_a_pareto_front_and_an_export(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "demo", "--out", str(tmp_path),
         "--population", "3", "--generations", "2", "--tokens", "3000", "--workers", "2"],
        capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    front = json.loads((tmp_path / "pareto.json").read_text())
    assert front and all(m["metrics"]["perplexity"] > 1 for m in front)
    assert "Pareto front" in result.stdout
    exported = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(exported) == 1 and (exported[0] / "decode.onnx").exists()
