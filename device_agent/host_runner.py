"""The host backend's runner: times one ONNX graph at one length in a fresh process.

A fresh process per measurement (host_backend starts `spec.processes` of them) makes its
peak resident set (VmHWM — the definition of peak memory in docs/architecture.md) belong to
that graph alone, as onnxruntime_perf_test's does on a phone:

    python -m device_agent.host_runner GRAPH_DIR prefill|decode LENGTH [--repeats N ...]

prints one JSON line: samples_ms, peak_memory_bytes, and the idle footprint (resident bytes
with the weights loaded, before any input: idle_bytes) and the runs' own peak
(run_peak_bytes; None where VmHWM cannot be reset). With `--reference REF_DIR` it then loads
a reference graph of the same kind and length and alternates one run of each (after the
warm-up pairs): paired_ms and reference_ms, so drift of the machine between measurements
(clock, temperature, neighbours) touches both and mostly cancels in their ratio (the
paired runs are not the plain ones: each graph evicts the other from the caches); the peak
is read before the reference is loaded. Inputs come from the manifest alone:
token ids inside the vocabulary, caches holding L tokens (capped at a window). Prefill times
the graph the manifest names for profiling (`profiled_prefill`: the last-token graph a phone
runs, in newer exports); onnxruntime reads the weights file the graphs share from beside
them. With `--chunk N`, prefill is timed as phone runtimes run a long prompt: the export's
chunk graph over the prompt N tokens at a time, each chunk's cache fed to the next
(core/chunked_prefill.py); one sample is the whole prompt. With `--no-arena` onnxruntime
allocates each tensor from the system instead of its CPU arena (onnxruntime_perf_test's
`-A`): the arena grows in power-of-two regions and keeps them, so its peak also holds
what the allocator reserved, not only what the graph used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.chunked_prefill import CHUNK_GRAPH, run_chunked


def _status_bytes(field: str) -> int:
    """A kB field of /proc/self/status (VmHWM, VmRSS) in bytes; 0 where there is none."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def vm_hwm_bytes() -> int:
    return _status_bytes("VmHWM")


def vm_rss_bytes() -> int:
    return _status_bytes("VmRSS")


def reset_peak() -> bool:
    """Set VmHWM back to the current resident set (Linux: `5` to /proc/self/clear_refs), so
    the peak read later is the runs' own; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def profiled_graph(manifest: dict[str, Any], kind: str) -> dict[str, Any]:
    """The graph profiling times for `kind` (core.manifest.GraphManifest.profiled, read from
    the JSON without pydantic: older manifests name no `profiled_prefill`)."""
    name = manifest.get("profiled_prefill", "prefill") if kind == "prefill" else kind
    return manifest["graphs"][name]


def feeds(
    manifest: dict[str, Any], kind: str, length: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    graph = profiled_graph(manifest, kind)
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


PROVIDER_MISSING_RC = 3  # the requested execution provider is not in this onnxruntime
NO_CHUNK_GRAPH_RC = 4  # --chunk asked of an export without a chunk graph


def _session(
    graph_dir: Path,
    manifest: dict[str, Any],
    kind: str,
    threads: int,
    provider: str,
    chunk: int | None = None,
    arena: bool = True,
):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = arena
    options.log_severity_level = 3
    graph = manifest["graphs"][CHUNK_GRAPH] if chunk else profiled_graph(manifest, kind)
    return ort.InferenceSession(
        str(graph_dir / graph["file"]), options, providers=providers(provider, threads)
    )


def _chunk_for(manifest: dict[str, Any], kind: str, chunk: int | None, graph_dir: Path):
    """The chunk length prefill runs at (None: the whole prompt in one graph); exits with
    NO_CHUNK_GRAPH_RC, saying why, when the export has no chunk graph."""
    if kind != "prefill" or not chunk:
        return None
    if CHUNK_GRAPH not in manifest["graphs"]:
        print(
            f"--chunk {chunk}: {graph_dir} has no {CHUNK_GRAPH} graph; export it with one "
            "(tailor arch export --chunk-graph, export_onnx(..., chunk_graph=True))",
            file=sys.stderr,
        )
        raise SystemExit(NO_CHUNK_GRAPH_RC)
    return chunk


def _runner(
    session, manifest: dict[str, Any], inputs: dict[str, np.ndarray], chunk: int | None
) -> Callable[[], object]:
    """One run of the graph: one call, or with `chunk` the prompt a chunk at a time."""
    if chunk is None:
        return lambda: session.run(None, inputs)
    return lambda: run_chunked(
        lambda feeds: session.run(None, feeds), manifest, inputs["input_ids"], chunk
    )


def _timed_ms(run_once: Callable[[], object]) -> float:
    start = time.perf_counter()
    run_once()
    return (time.perf_counter() - start) * 1000


def paired(
    run_once: Callable[[], object],
    reference_dir: Path,
    kind: str,
    length: int,
    repeats: int,
    warmup: int,
    threads: int,
    provider: str,
    chunk: int | None = None,
    arena: bool = True,
) -> dict[str, list[float]]:
    """One run of the graph, then one of the reference graph, `repeats` times after `warmup`
    such pairs: both see the same moment of the machine (and each the caches the other
    left: a step whose weights fit the last-level cache runs slower than back to back).
    The reference prefills in chunks when the graph does."""
    reference_manifest = json.loads((reference_dir / "manifest.json").read_text())
    chunk = _chunk_for(reference_manifest, kind, chunk, reference_dir)
    reference = _session(reference_dir, reference_manifest, kind, threads, provider, chunk, arena)
    reference_inputs = feeds(reference_manifest, kind, length, np.random.default_rng(1))
    run_reference = _runner(reference, reference_manifest, reference_inputs, chunk)
    for _ in range(warmup):
        run_once()
        run_reference()
    own, theirs = [], []
    for _ in range(repeats):
        own.append(_timed_ms(run_once))
        theirs.append(_timed_ms(run_reference))
    return {"paired_ms": own, "reference_ms": theirs}


def run(
    graph_dir: Path,
    kind: str,
    length: int,
    repeats: int,
    warmup: int,
    threads: int,
    provider: str = "cpu",
    reference: Path | None = None,
    pairs: int | None = None,
    chunk: int | None = None,
    arena: bool = True,
) -> dict[str, Any]:
    import onnxruntime as ort

    from core.precision import ORT_PROVIDER_NAMES

    manifest = json.loads((graph_dir / "manifest.json").read_text())
    if reference is not None:  # before any run: a reference that cannot be chunked says so
        _chunk_for(json.loads((reference / "manifest.json").read_text()), kind, chunk, reference)
    chunk = _chunk_for(manifest, kind, chunk, graph_dir)
    session = _session(graph_dir, manifest, kind, threads, provider, chunk, arena)
    if ORT_PROVIDER_NAMES[provider] not in session.get_providers():
        print(
            f"onnxruntime {ort.__version__} did not use {ORT_PROVIDER_NAMES[provider]} "
            f"(it has {ort.get_available_providers()})",
            file=sys.stderr,
        )
        raise SystemExit(PROVIDER_MISSING_RC)
    # The idle footprint: weights loaded, no input yet. What running adds on top of it is
    # the run's own peak less this; peak_memory_bytes stays the whole process's VmHWM
    # (session creation included), the definition of peak memory.
    loaded_peak, idle = vm_hwm_bytes(), vm_rss_bytes()
    reset = reset_peak()
    inputs = feeds(manifest, kind, length, np.random.default_rng(0))
    run_once = _runner(session, manifest, inputs, chunk)
    for _ in range(warmup):
        run_once()
    samples = [_timed_ms(run_once) for _ in range(repeats)]
    run_peak = vm_hwm_bytes()
    result = {
        "samples_ms": samples,
        "peak_memory_bytes": max(loaded_peak, run_peak),
        "idle_bytes": idle,
        "run_peak_bytes": run_peak if reset else None,
        "arena": session.get_session_options().enable_cpu_mem_arena,
    }
    if reference is not None:
        count = repeats if pairs is None else pairs
        result |= paired(
            run_once, reference, kind, length, count, warmup, threads, provider, chunk, arena
        )
    return result


def providers(provider: str, threads: int) -> list:
    """onnxruntime's provider list for `provider` (cpu as the fallback for unsupported ops)."""
    from core.precision import ORT_PROVIDER_NAMES

    if provider == "cpu":
        return ["CPUExecutionProvider"]
    name = ORT_PROVIDER_NAMES[provider]
    entry = (name, {"intra_op_num_threads": str(threads)}) if provider == "xnnpack" else name
    return [entry, "CPUExecutionProvider"]


PROVIDER_HINTS = {
    "xnnpack": "install an onnxruntime built with --use_xnnpack (./build.sh --use_xnnpack "
    "--build_wheel) in this agent's environment, or measure xnnpack on a phone",
    "nnapi": "NNAPI exists only on Android: measure nnapi tasks on a phone (--usb/--tcp)",
    "qnn": "install onnxruntime-qnn (a Snapdragon host with the QNN SDK) in this agent's "
    "environment, or measure qnn on a phone",
}


def provider_problem(provider: str) -> str | None:
    """Why this machine's onnxruntime cannot run `provider` (None if it can)."""
    import onnxruntime as ort

    from core.precision import ORT_PROVIDER_NAMES

    available = ort.get_available_providers()
    if ORT_PROVIDER_NAMES[provider] in available:
        return None
    return (
        f"onnxruntime here ({ort.__version__}) has providers [{', '.join(available)}]; "
        f"{provider} needs {ORT_PROVIDER_NAMES[provider]}: {PROVIDER_HINTS[provider]}"
    )


# The runner's allocator and interpreter, fixed so its peak resident set is the graph's alone
# and the same in every process. glibc serves a large block from mmap (returned to the system
# when freed) only below a threshold that moves with the process's history, and the history
# changes with Python's hash seed: identical runs' peaks jumped by ~11 MiB between two modes.
# A fixed threshold (which also turns the moving one off) serves every block of 128 KiB or
# more from mmap, as Android's allocator (Scudo's secondary) does on a phone.
RUNNER_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "PYTHONHASHSEED": "0"}


def measure(
    graph_dir: Path,
    kind: str,
    length: int,
    repeats: int = 10,
    warmup: int = 2,
    threads: int = 1,
    timeout_s: float = 600,
    provider: str = "cpu",
    reference: Path | None = None,
    pairs: int | None = None,
    chunk: int | None = None,
    arena: bool = True,
) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; raises RuntimeError with its stderr
    (ProviderMissing when the provider is not there). `reference`: a graph folder timed
    alternately with this one after the plain runs (paired_ms, reference_ms), `pairs` times
    (default: `repeats`). `chunk`: prefill the prompt that many tokens at a time through
    the export's chunk graph. `arena=False`: onnxruntime's CPU arena off (`--no-arena`)."""
    cmd = [
        sys.executable,
        "-m",
        "device_agent.host_runner",
        str(graph_dir),
        kind,
        str(length),
        "--repeats",
        str(repeats),
        "--warmup",
        str(warmup),
        "--threads",
        str(threads),
        "--provider",
        provider,
    ]
    if reference is not None:
        cmd += ["--reference", str(reference)]
    if pairs is not None:
        cmd += ["--pairs", str(pairs)]
    if chunk is not None:
        cmd += ["--chunk", str(chunk)]
    if not arena:
        cmd.append("--no-arena")
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, **RUNNER_ENV},
    )
    if result.returncode == PROVIDER_MISSING_RC:
        from .failures import ProviderMissing

        raise ProviderMissing(provider_problem(provider) or result.stderr.strip()[-1000:])
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
    parser.add_argument("--provider", default="cpu", choices=["cpu", "xnnpack", "nnapi", "qnn"])
    parser.add_argument(
        "--reference", type=Path, default=None, help="a graph folder timed alternately with it"
    )
    parser.add_argument(
        "--pairs", type=int, default=None, help="timed pairs with the reference (default: repeats)"
    )
    parser.add_argument(
        "--chunk",
        type=_positive,
        default=None,
        help="prefill: feed the prompt this many tokens at a time through the chunk graph",
    )
    parser.add_argument(
        "--no-arena",
        dest="arena",
        action="store_false",
        help="allocate from the system, not onnxruntime's CPU arena (perf_test's -A)",
    )
    args = parser.parse_args()
    print(
        json.dumps(
            run(
                args.graph_dir,
                args.kind,
                args.length,
                args.repeats,
                args.warmup,
                args.threads,
                args.provider,
                args.reference,
                args.pairs,
                args.chunk,
                args.arena,
            )
        )
    )


def _positive(text: str) -> int:
    """argparse type for --chunk: a chunk of no token would never finish the prompt."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


if __name__ == "__main__":
    main()
