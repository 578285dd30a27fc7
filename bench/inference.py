"""Hyena-Edge-like hybrid vs Transformer++ at matched parameter count, on this CPU.

Both presets are exported to ONNX and run with onnxruntime, interleaved (for each length,
one measurement of each architecture in alternating order, each in a fresh process so its
peak memory is its own): prefill latency at L, decode latency per token with a cache of L
tokens, and peak resident memory. Prints hybrid/Transformer ratios, and each decode
latency divided by its bandwidth bound — (weight bytes + cache bytes read) / this machine's
memory bandwidth, measured in the same run.

    python -m bench.inference [--width 256 --layers 12 --lengths 128 256 ... 4096]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from device_agent.host_runner import measure
from core import preset
from workers.export.onnx_export import export_onnx
from core import costs

RESULTS = Path(__file__).parent / "results"
LENGTHS = [128, 256, 512, 1024, 2048, 4096]


def matched_pair(width: int, layers: int, heads: int, kv_heads: int, ffn: int, vocab: int):
    """transformer++ at the given size, and hyena-edge with its SwiGLU width chosen so the
    parameter counts match as closely as multiples of 8 allow."""
    base = dict(width=width, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab)
    transformer = preset("transformer++", ffn=ffn, **base).to_json()
    target = costs.params(transformer)
    best = min(range(8, 4 * ffn, 8),
               key=lambda f: abs(costs.params(preset("hyena-edge", ffn=f, **base).to_json())
                                 - target))
    hybrid = preset("hyena-edge", ffn=best, **base).to_json()
    return transformer, hybrid


def memory_bandwidth_bytes_per_s(size_mb: int = 256, repeats: int = 5) -> float:
    """Best-of copy bandwidth: a copy reads and writes every byte once."""
    src = np.ones(size_mb * (1 << 20) // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best


def run_graph(graph_dir: Path, kind: str, length: int, repeats: int, threads: int) -> dict:
    """The host agent's own runner: a fresh process per measurement."""
    result = measure(graph_dir, kind, length, repeats=repeats,
                     warmup=1 if kind == "prefill" else 3, threads=threads)
    return {**result, "median_ms": statistics.median(result["samples_ms"])}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = result["lengths"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, (metric, label) in zip(axes, [("prefill_ms", "prefill latency (ms)"),
                                          ("decode_ms", "decode latency per token (ms)"),
                                          ("peak_prefill_mb", "peak memory (MiB): prefill, decode --")]):
        for arch, colour in (("transformer++", "C0"), ("hyena-edge", "C1")):
            ax.plot(lengths, [result["rows"][str(L)][arch][metric] for L in lengths],
                    marker="o", label=arch, color=colour)
            if metric == "peak_prefill_mb":
                ax.plot(lengths, [result["rows"][str(L)][arch]["peak_decode_mb"]
                                  for L in lengths], marker="x", linestyle="--",
                        color=colour, label=f"{arch} (decode)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("L (tokens)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[2].legend(fontsize=7)
    fig.suptitle(f"hyena-edge vs transformer++ ({result['params']['transformer++']:,} vs "
                 f"{result['params']['hyena-edge']:,} params), onnxruntime CPU, "
                 f"{result['threads']} thread(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--ffn", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    parser.add_argument("--prefill-repeats", type=int, default=5)
    parser.add_argument("--decode-repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    transformer, hybrid = matched_pair(args.width, args.layers, args.heads, args.kv_heads,
                                       args.ffn, args.vocab)
    genomes = {"transformer++": transformer, "hyena-edge": hybrid}
    params = {name: costs.params(g) for name, g in genomes.items()}
    mismatch = abs(params["hyena-edge"] / params["transformer++"] - 1)
    assert mismatch <= 0.02, f"parameter counts differ by {mismatch:.1%}"
    bandwidth = memory_bandwidth_bytes_per_s()
    print(f"params: transformer++ {params['transformer++']:,}  hyena-edge "
          f"{params['hyena-edge']:,} ({params['hyena-edge'] / params['transformer++'] - 1:+.2%})   memory bandwidth "
          f"{bandwidth / 1e9:.1f} GB/s   threads {args.threads}", flush=True)

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for name, genome in genomes.items():
            dirs[name] = Path(tmp) / name
            export_onnx(genome, dirs[name], verify=False)
        order = list(genomes)
        for i, length in enumerate(args.lengths):
            rows[str(length)] = {}
            for name in (order if i % 2 == 0 else order[::-1]):
                prefill = run_graph(dirs[name], "prefill", length, args.prefill_repeats,
                                    args.threads)
                decode = run_graph(dirs[name], "decode", length, args.decode_repeats,
                                   args.threads)
                weight_bytes = params[name] * 4
                cache_read = costs.cache_bytes(genomes[name], length, "float32")
                bound_ms = (weight_bytes + cache_read) / bandwidth * 1000
                rows[str(length)][name] = {
                    "prefill_ms": prefill["median_ms"], "decode_ms": decode["median_ms"],
                    "prefill_samples_ms": prefill["samples_ms"],
                    "decode_samples_ms": decode["samples_ms"],
                    "peak_prefill_mb": prefill["peak_memory_bytes"] / 2**20,
                    "peak_decode_mb": decode["peak_memory_bytes"] / 2**20,
                    "cache_bytes_fp32": cache_read,
                    "decode_bandwidth_bound_ms": bound_ms,
                    "decode_over_bound": decode["median_ms"] / bound_ms,
                }
            t, h = rows[str(length)]["transformer++"], rows[str(length)]["hyena-edge"]
            rows[str(length)]["ratio_hybrid_over_transformer"] = {
                key: h[key] / t[key] for key in ("prefill_ms", "decode_ms", "peak_prefill_mb",
                                                 "peak_decode_mb")}
            r = rows[str(length)]["ratio_hybrid_over_transformer"]
            print(f"L={length:5d}  prefill {t['prefill_ms']:9.2f} / {h['prefill_ms']:9.2f} ms"
                  f" (x{r['prefill_ms']:.2f})  decode {t['decode_ms']:7.3f} / "
                  f"{h['decode_ms']:7.3f} ms (x{r['decode_ms']:.2f})  peak "
                  f"{t['peak_prefill_mb']:7.1f} / {h['peak_prefill_mb']:7.1f} MiB "
                  f"(x{r['peak_prefill_mb']:.2f})  decode peak x{r['peak_decode_mb']:.2f}  decode/bound "
                  f"{t['decode_over_bound']:.1f} / {h['decode_over_bound']:.1f}", flush=True)

    result = {"benchmark": "inference", "args": vars(args), "params": params,
              "memory_bandwidth_gb_s": bandwidth / 1e9, "threads": args.threads,
              "lengths": args.lengths, "rows": rows, "genomes": genomes}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "inference.json").write_text(json.dumps(result, indent=2))
    plot(result, RESULTS / "inference.png")
    print("columns: transformer++ / hyena-edge (xratio hybrid/transformer); "
          f"wrote {RESULTS / 'inference.json'} and inference.png")
    return result


if __name__ == "__main__":
    main()
