"""How often one run of bench.latency_model meets its targets: the same measurements, refitted
on other random fit/test splits.

One run scores the latency model on one split of its 96 genomes (the first 64 fitted, the
next 32 held out), and a decode figure near its bound (the share within +-10 % of 32
genomes moves by 3 % a genome) can pass or fail on which genomes fell on which side. This
reads the genomes a run measured (from its cache, by seed; no measuring, no export) and
refits the same model from scratch on `--splits` splits per seed, the run's own split first,
then random ones: per split and metric the run's figures (Kendall tau, MdAPE, share within
+-10 % and +-5 %) and whether the metric's target held (latencies: tau >= 0.9, MdAPE <= 10 %,
>= 90 % within +-10 %; peak memory: every prediction within +-5 %).

    python -m bench.latency_resplits --seeds 8 9 10 11 \\
        --cache bench/results/phone_measurements_referenced_graphs7.json

Splits of one run's genomes overlap: they say how much one run's figures depend on its
split, not what independent runs would give.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from bench.latency_model import RESULTS, _model, add_referenced, genomes, scored
from bench.latency_model import parse_args as run_args
from bench.phone_measurements import Protocol, device

TARGETS = {"tau": 0.9, "mdape": 0.10, "within_10": 0.90}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="the runs' --seed")
    parser.add_argument("--cache", type=Path, required=True, help="the runs' measurement cache")
    parser.add_argument("--splits", type=int, default=10, help="per seed, the run's own first")
    parser.add_argument("--device", default="host-int8", help="the device fitted from scratch")
    parser.add_argument(
        "--values",
        choices=["referenced", "metrics"],
        default="referenced",
        help="latencies referenced to the reference model (as the runs' targets) or as measured",
    )
    parser.add_argument("--measurements", type=int, default=64)
    parser.add_argument("--test", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_resplits.json")
    args = parser.parse_args(argv)
    if args.splits < 1:
        parser.error(f"--splits must be at least 1, got {args.splits}")
    if not args.cache.exists():
        parser.error(f"--cache {args.cache}: no such file")
    return args


def measured_genomes(seed: int, saved: dict[str, Any], n: int, name: str) -> tuple[list, dict]:
    """The first `n` genomes of the run of `seed` (bench.latency_model's default phone-scale
    space) that its cache holds measured on `name`, in the run's order (the order it fitted
    and held them out in)."""
    entries = saved["genomes"]
    ordered = genomes(run_args(["--seed", str(seed)]))
    kept = [g for g in ordered if name in entries.get(g.hash(), {})][:n]
    if len(kept) < n:
        raise SystemExit(f"seed {seed}: the cache holds {len(kept)} measured genomes, not {n}")
    return kept, {g.hash(): json.loads(json.dumps(entries[g.hash()])) for g in kept}


def met(metric: str, figures: dict[str, float]) -> bool:
    if metric.startswith("peak_mem_mb"):
        return bool(figures["within_5"] == 1.0)
    return bool(
        figures["kendall_tau"] >= TARGETS["tau"]
        and figures["mdape"] <= TARGETS["mdape"]
        and figures["within_10"] >= TARGETS["within_10"]
    )


def one_split(fit, test, measured, name: str, values: str, protocol: Protocol) -> dict[str, Any]:
    """Each metric's held-out figures and whether its target held, fitted from scratch as
    bench.latency_model fits (peak memory at the protocol's lengths)."""
    # The latencies as `values` says, peak memory as measured (it has no reference).
    kinds = {m: values for m in measured[fit[0].hash()][name][values]}
    kinds |= {m: "metrics" for m in measured[fit[0].hash()][name]["metrics"] if m not in kinds}
    rows = {g.hash(): {m: measured[g.hash()][name][v][m] for m, v in kinds.items()} for g in fit}
    seen = {device(name)[0]: [(g, rows[g.hash()]) for g in fit]}
    lengths = argparse.Namespace(prefill=protocol.prefill, decode=protocol.decode)
    model = _model(lengths, len(fit)).fit(seen)
    out = {}
    for metric, kind in kinds.items():
        figures = scored(model, test, measured, name, metric, kind)
        out[metric] = {**figures, "met": met(metric, figures)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    saved = json.loads(args.cache.read_text())
    protocol = Protocol.saved(saved.get("protocol", {}))
    if args.values == "referenced" and not protocol.reference:
        raise SystemExit(
            f"{args.cache} was measured without a reference model: use --values metrics"
        )
    n = args.measurements + args.test
    result: dict[str, Any] = {
        "args": {**vars(args), "cache": str(args.cache), "out": str(args.out)}
    }
    result["protocol"] = protocol.__dict__
    result["runs"] = {}
    for seed in args.seeds:
        kept, measured = measured_genomes(seed, saved, n, args.device)
        if args.values == "referenced":
            add_referenced(kept, measured, args.device)
        splits = []
        for index in range(args.splits):
            order = list(kept)
            if index:
                random.Random(index).shuffle(order)
            fit, test = order[: args.measurements], order[args.measurements :]
            splits.append(one_split(fit, test, measured, args.device, args.values, protocol))
        result["runs"][str(seed)] = splits
        counts = {m: sum(s[m]["met"] for s in splits) for m in splits[0]}
        print(
            f"seed {seed}: target met in "
            + ", ".join(f"{m} {c}/{len(splits)}" for m, c in counts.items())
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
