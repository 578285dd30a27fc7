"""How repeatable is one profiling measurement, warm against cold? On the host backend,
side by side in one run:

- warm (what the agents report, device_agent.host_backend): per (graph, L), `--processes`
  fresh processes, each `--warmup` untimed + `--repeats` timed runs; the task's median is
  the median of all timed runs;
- cold (one sample per fresh process, as phones were measured before): `--cold-processes`
  fresh processes, one timed run each and no warm-up (session created, first run timed).

Each round measures both on the same export, back to back. Printed per kind (prefill(L),
decode(L)): the coefficient of variation (std/mean) of the reported median over the rounds
for each method (target <= 5% for warm), the raw-sample CV inside a round, and the ratios
cold/warm of the medians and of the CVs. About a minute with the defaults.

    python -m bench.profile_stability [--rounds 4 --processes 2 --cold-processes 4 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from core.protocol import MeasurementSpec
from device_agent.host_backend import measure_case
from device_agent.stats import coefficient_of_variation, warm_method

RESULTS = Path(__file__).parent / "results"
TARGET_CV = 0.05
KINDS = ("prefill", "decode")


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags; the defaults take about a minute."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--cold-processes", type=int, default=4)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "profile_stability.json")
    return parser.parse_args(argv)


def measurement_specs(args: argparse.Namespace) -> dict[str, MeasurementSpec]:
    """Warm and cold differ only in warm-up, repeats and processes, so any gap is theirs."""
    common = {
        "prefill_lengths": [args.length],
        "decode_contexts": [args.length],
        "threads": args.threads,
    }
    return {
        "warm": MeasurementSpec(
            **common, warmup=args.warmup, repeats=args.repeats, processes=args.processes
        ),
        "cold": MeasurementSpec(**common, warmup=0, repeats=1, processes=args.cold_processes),
    }


def measure_rounds(
    export_dir: Path, args: argparse.Namespace, specs: dict[str, MeasurementSpec]
) -> list[dict]:
    """Both methods on one export, back to back in every round, so drift hits both alike."""
    rounds: list[dict] = []
    for index in range(args.rounds):
        row = {}
        for method, spec in specs.items():
            for kind in KINDS:
                stat = measure_case(export_dir, kind, args.length, spec)
                row[f"{method}_{kind}"] = {
                    "median_ms": stat.median_ms,
                    "samples_ms": stat.samples_ms,
                    "peak_bytes": stat.peak_memory_bytes,
                }
        rounds.append(row)
        print(
            f"round {index + 1}/{args.rounds}: "
            + ", ".join(
                f"{kind}({args.length}) warm {row[f'warm_{kind}']['median_ms']:.3f} ms / "
                f"cold {row[f'cold_{kind}']['median_ms']:.3f} ms"
                for kind in KINDS
            ),
            flush=True,
        )
    return rounds


def run_description(args: argparse.Namespace, started: float) -> dict:
    """What was measured, how and where, so a stored result can be read without the run."""
    return {
        "genome": "hyena-edge",
        "width": args.width,
        "layers": args.layers,
        "length": args.length,
        "rounds": args.rounds,
        "threads": args.threads,
        "warm_method": warm_method(args.warmup, args.repeats, args.processes),
        "cold_method": f"cold: 1 run in each of {args.cold_processes} fresh processes",
        "target_cv": TARGET_CV,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def kind_summary(rounds: list[dict], kind: str, methods: list[str]) -> dict:
    """One kind's spread over the rounds per method, and cold against warm."""
    entry = {}
    for method in methods:
        medians = [r[f"{method}_{kind}"]["median_ms"] for r in rounds]
        within = [coefficient_of_variation(r[f"{method}_{kind}"]["samples_ms"]) for r in rounds]
        entry[method] = {
            "cv_of_medians": coefficient_of_variation(medians),
            "mean_median_ms": mean(medians),
            "medians_ms": medians,
            "mean_within_round_cv": mean(within),
            "peak_bytes": max(r[f"{method}_{kind}"]["peak_bytes"] for r in rounds),
        }
    warm, cold = entry["warm"], entry["cold"]
    entry["cold_over_warm_median"] = cold["mean_median_ms"] / warm["mean_median_ms"]
    entry["cold_over_warm_cv"] = (
        cold["cv_of_medians"] / warm["cv_of_medians"] if warm["cv_of_medians"] else None
    )
    entry["warm_meets_target"] = warm["cv_of_medians"] <= TARGET_CV
    return entry


def print_kind_row(entry: dict, label: str) -> None:
    """One row of the table under the header main prints."""
    warm, cold = entry["warm"], entry["cold"]
    cv_ratio = (
        f"{entry['cold_over_warm_cv']:.1f}x" if entry["cold_over_warm_cv"] is not None else "-"
    )
    print(
        f"{label:<14}{warm['cv_of_medians']:>9.2%}{cold['cv_of_medians']:>9.2%}{cv_ratio:>14}"
        f"{warm['mean_median_ms']:>10.3f}{cold['mean_median_ms']:>10.3f}"
        f"{entry['cold_over_warm_median']:>13.2f}x"
        f"{warm['mean_within_round_cv']:>9.1%}/{cold['mean_within_round_cv']:.1%}"
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from core import preset
    from workers.export.onnx_export import export_onnx

    genome = preset(
        "hyena-edge",
        width=args.width,
        layers=args.layers,
        heads=4,
        kv_heads=2,
        ffn=2 * args.width,
        vocab=512,
    ).to_json()
    specs = measurement_specs(args)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(genome, tmp, verify=False)
        rounds = measure_rounds(Path(tmp), args, specs)
    result = run_description(args, started)
    print(f"{result['warm_method']}; {result['cold_method']}")
    print(
        f"{'':14}{'warm CV':>9}{'cold CV':>9}{'cold/warm CV':>14}{'warm ms':>10}"
        f"{'cold ms':>10}{'cold/warm ms':>14}{'in-round CV w/c':>18}"
    )
    for kind in KINDS:
        result[kind] = kind_summary(rounds, kind, list(specs))
        print_kind_row(result[kind], f"{kind}({args.length})")
    for kind in KINDS:
        verdict = "meets" if result[kind]["warm_meets_target"] else "MISSES"
        print(
            f"{kind}: warm CV {result[kind]['warm']['cv_of_medians']:.2%} {verdict} the "
            f"{TARGET_CV:.0%} target"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
