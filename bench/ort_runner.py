"""Times one ONNX graph at one length in a fresh process and reports its peak memory.

Run as a subprocess by the benchmarks so each measurement's peak resident set (VmHWM, the
definition in DESIGN.md) belongs to that graph alone:

    python -m bench.ort_runner GRAPH_DIR prefill|decode LENGTH --repeats N --warmup W

Prints one JSON line: samples_ms, median_ms, peak_memory_bytes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def vm_hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def feeds(manifest: dict, kind: str, length: int, rng: np.random.Generator) -> dict:
    """Valid inputs from the manifest alone: ids in the vocabulary, caches holding `length`
    tokens (capped at a window), zeros elsewhere."""
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
            out[spec["name"]] = rng.standard_normal(shape, dtype=np.float32) * 0.1
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("graph_dir")
    parser.add_argument("kind", choices=["prefill", "decode"])
    parser.add_argument("length", type=int)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import onnxruntime as ort

    graph_dir = Path(args.graph_dir)
    manifest = json.loads((graph_dir / "manifest.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(graph_dir / manifest["graphs"][args.kind]["file"]),
                                   options, providers=["CPUExecutionProvider"])
    inputs = feeds(manifest, args.kind, args.length, np.random.default_rng(0))
    for _ in range(args.warmup):
        session.run(None, inputs)
    samples = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        session.run(None, inputs)
        samples.append((time.perf_counter() - start) * 1000)
    print(json.dumps({"samples_ms": samples, "median_ms": statistics.median(samples),
                      "peak_memory_bytes": vm_hwm_bytes()}))


if __name__ == "__main__":
    main()
