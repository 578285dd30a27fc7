"""How repeatable is one profiling measurement? The coefficient of variation (std/mean) of
the host agent's reported median over repeated measurements of one graph, for prefill(L)
and decode(L); target <= 5%.

Each round is what the host agent reports for a task (device_agent.host_backend: a fresh
process per (graph, L), warm-up, then repeats; the median of the repeats); rounds are
repeated back to back on the same export. Also printed: the spread inside a round (CV of
the raw samples), and the peak RSS of each round.

    python -m bench.profile_stability [--rounds 8 --repeats 10 --length 128 --width 128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from device_agent.host_backend import measure_task
from core.protocol import MeasurementSpec
from device_agent.stats import coefficient_of_variation

RESULTS = Path(__file__).parent / "results"
TARGET_CV = 0.05


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    from core import preset
    from workers.export.onnx_export import export_onnx

    genome = preset("hyena-edge", width=args.width, layers=args.layers, heads=4, kv_heads=2,
                    ffn=2 * args.width, vocab=512).to_json()
    spec = MeasurementSpec(prefill_lengths=[args.length], decode_contexts=[args.length],
                         warmup=args.warmup, repeats=args.repeats, threads=args.threads)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(genome, tmp, verify=False)
        for index in range(args.rounds):
            report = measure_task(Path(tmp), spec)
            rounds.append({"prefill_median_ms": report.prefill[0].median_ms,
                           "decode_median_ms": report.decode[0].median_ms,
                           "prefill_samples_ms": report.prefill[0].samples_ms,
                           "decode_samples_ms": report.decode[0].samples_ms,
                           "peak_memory_bytes": report.peak_memory_bytes})
            print(f"round {index + 1}/{args.rounds}: prefill({args.length}) "
                  f"{report.prefill[0].median_ms:.3f} ms, decode({args.length}) "
                  f"{report.decode[0].median_ms:.3f} ms, peak RSS "
                  f"{report.peak_memory_bytes / 2**20:.1f} MiB", flush=True)
    result = {"genome": "hyena-edge", "width": args.width, "layers": args.layers,
              "length": args.length, "rounds": args.rounds, "repeats": args.repeats,
              "warmup": args.warmup, "threads": args.threads, "target_cv": TARGET_CV,
              "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor()
                          or platform.machine()},
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for kind in ("prefill", "decode"):
        medians = [r[f"{kind}_median_ms"] for r in rounds]
        within = [coefficient_of_variation(r[f"{kind}_samples_ms"]) for r in rounds]
        cv = coefficient_of_variation(medians)
        result[kind] = {"cv_of_medians": cv, "mean_median_ms": sum(medians) / len(medians),
                        "mean_within_round_cv": sum(within) / len(within),
                        "medians_ms": medians}
        verdict = "meets" if cv <= TARGET_CV else "MISSES"
        print(f"{kind}({args.length}): CV of the reported median over {args.rounds} rounds = "
              f"{cv:.2%} ({verdict} the {TARGET_CV:.0%} target); mean "
              f"{result[kind]['mean_median_ms']:.3f} ms; raw-sample CV inside a round "
              f"{result[kind]['mean_within_round_cv']:.2%}")
    peaks = [r["peak_memory_bytes"] for r in rounds]
    result["peak_memory"] = {"cv": coefficient_of_variation(peaks), "bytes": peaks}
    print(f"peak RSS: CV {result['peak_memory']['cv']:.2%} "
          f"(mean {sum(peaks) / len(peaks) / 2**20:.1f} MiB)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "profile_stability.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
