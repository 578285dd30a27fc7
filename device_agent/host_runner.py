"""The host backend's runner: times one ONNX graph at one length in a fresh process.

A fresh process per measurement (host_backend starts `spec.processes` of them) makes its
peak resident set (VmHWM — the definition of peak memory in docs/architecture.md) belong to
that graph alone, as onnxruntime_perf_test's does on a phone:

    python -m device_agent.host_runner GRAPH_DIR prefill|decode LENGTH [--repeats N ...]

prints one JSON line: samples_ms, peak_memory_bytes. Inputs come from the manifest alone:
token ids inside the vocabulary, caches holding L tokens (capped at a window).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def vm_hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def feeds(manifest: dict[str, Any], kind: str, length: int,
          rng: np.random.Generator) -> dict[str, np.ndarray]:
    graph = manifest["graphs"][kind]
    out = {}
    for spec in graph["inputs"]:
        if spec["role"] == "input_ids":
            seq = length if kind == "prefill" else 1
            out[spec["name"]] = rng.integers(0, manifest["vocab_size"], (1, seq), dtype=np.int64)
        elif spec["role"] == "position":
            out[spec["name"]] = np.array([length], dtype=np.int64)
        else:
            past = min(length, spec["past_cap"]) if spec.get("past_cap") else length
            shape = [past if d == "past" else d for d in spec["shape"]]
            out[spec["name"]] = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    return out


def run(graph_dir: Path, kind: str, length: int, repeats: int, warmup: int,
        threads: int) -> dict[str, Any]:
    import onnxruntime as ort

    manifest = json.loads((graph_dir / "manifest.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(graph_dir / manifest["graphs"][kind]["file"]), options,
                                   providers=["CPUExecutionProvider"])
    inputs = feeds(manifest, kind, length, np.random.default_rng(0))
    for _ in range(warmup):
        session.run(None, inputs)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, inputs)
        samples.append((time.perf_counter() - start) * 1000)
    return {"samples_ms": samples, "peak_memory_bytes": vm_hwm_bytes()}


def measure(graph_dir: Path, kind: str, length: int, repeats: int = 10, warmup: int = 2,
            threads: int = 1, timeout_s: float = 600) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; raises RuntimeError with its stderr."""
    cmd = [sys.executable, "-m", "device_agent.host_runner", str(graph_dir), kind, str(length),
           "--repeats", str(repeats), "--warmup", str(warmup), "--threads", str(threads)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                            cwd=Path(__file__).resolve().parent.parent)
    if result.returncode:
        raise RuntimeError(f"{kind}@{length} failed: {result.stderr.strip()[-1000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("graph_dir", type=Path)
    parser.add_argument("kind", choices=["prefill", "decode"])
    parser.add_argument("length", type=int)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(run(args.graph_dir, args.kind, args.length, args.repeats, args.warmup,
                         args.threads)))


if __name__ == "__main__":
    main()
