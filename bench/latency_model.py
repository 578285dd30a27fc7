"""How well the LIV latency model predicts phone-scale genomes, and how it transfers.

Samples phone-scale genomes (widths 256-768, 8-24 slots, vocabulary 16384: about 10-150M
parameters), exports each once (float32 graphs, then the int8/int4 variants the devices
need, `workers.export.variants`) and measures them with the host agent's own backend
(`device_agent.host_backend.measure_task`, warm runs in fresh processes) on two "device
classes" that really differ on this machine: by default the host at int8 and at int4 (or,
e.g., `--devices host-1t host-2t`: float32 on one thread against two). Then:

- from scratch, on the first device: `orchestrator.search.latency_model.LatencyModel`
  fitted on the first `--measurements` genomes, scored on the remaining `--test` ones for
  `prefill_ms@L`, `decode_ms@L` and `peak_mem_mb`;
- transfer, on the second device: fitted with the first device's measurements plus the
  second's first k (k in `--transfer-sizes`, and 0: zero-shot), against the second device
  alone from the same k, scored on the same held-out genomes;
- the spread of each metric across candidates against the repeat-to-repeat CV (issue #23
  asks for >= 10x on decode latency).

Targets (issue #23), on genomes not measured when predicted:
- after 64 measurements, prefill and decode latency: Kendall tau >= 0.9, median absolute
  percentage error <= 10 %, >= 90 % of predictions within +-10 %;
- peak memory: every prediction within +-5 % (within_5 = 1.0);
- transfer: tau >= 0.8 on the new device class from <= 10 of its measurements, and better
  than from scratch at 5 and 10.

Every measurement is kept in `--cache` (by genome hash and device), so a rerun or a larger
run measures only what is new. The full run (64 + 32 genomes, two devices) exports ~100
phone-scale models; budget a few hours on 2 cores. Smoke run (a minute or two):

    python -m bench.latency_model --measurements 8 --test 4 --widths 64 --depth-min 2 \\
        --depth-max 4 --vocab 1024 --transfer-sizes 2 4 --out /tmp/latency_model.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.phone_measurements import CACHE, REFERENCE, PhoneMeasurements, Protocol, device
from core import Genome, SearchSpace
from core.manifest import GRAPH_REVISION
from core.prediction_accuracy import accuracy
from core.variation import sample
from orchestrator.search.latency_features import LatencyTarget
from orchestrator.search.latency_model import LatencyModel

RESULTS = Path(__file__).parent / "results"
# This graph revision's (core.manifest.GRAPH_REVISION): `_graphs6.json` holds revision 6's
# (runs 7-8), `phone_measurements_referenced.json` revision 5's (runs 4-6).
REFERENCED_CACHE = RESULTS / f"phone_measurements_referenced_graphs{GRAPH_REVISION}.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measurements", type=int, default=64, help="fit on this many")
    parser.add_argument("--test", type=int, default=32, help="held-out genomes scored")
    parser.add_argument("--devices", nargs=2, default=["host-int8", "host-int4"])
    parser.add_argument("--transfer-sizes", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 384, 512, 768])
    parser.add_argument("--depth-min", type=int, default=8)
    parser.add_argument("--depth-max", type=int, default=24)
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--prefill", type=int, default=128, help="prefill length L")
    parser.add_argument("--decode", type=int, default=128, help="decode context L")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--processes", type=int, default=3, help="fresh runner processes per case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reference",
        default=REFERENCE,
        help="a preset ('NAME key=value ...') timed alternately with every case; '' for none",
    )
    parser.add_argument(
        "--decode-pairs", type=int, default=60, help="pairs per process of a decode case"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"default {CACHE.name}, or with a reference {REFERENCED_CACHE.name}",
    )
    parser.add_argument(
        "--export-workers", type=int, default=2, help="exports at once (measured one by one)"
    )
    parser.add_argument(
        "--retest",
        type=int,
        default=0,
        help="then export and measure this many test genomes again on the first device",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_model.json")
    args = parser.parse_args(argv)
    if args.decode_pairs < 1:
        parser.error(f"--decode-pairs must be at least 1, got {args.decode_pairs}")
    try:
        Protocol(reference=args.reference).reference_genome()
    except (KeyError, ValueError) as error:
        parser.error(
            f"--reference {args.reference!r}: {error} (expected 'PRESET key=value ...', "
            "e.g. 'hyena-edge width=512 layers=8')"
        )
    if args.cache is None:
        args.cache = REFERENCED_CACHE if args.reference else CACHE
    return args


def genomes(args: argparse.Namespace) -> list[Genome]:
    """Distinct random genomes of the phone-scale space, the same ones for the same seed."""
    space = SearchSpace(
        widths=args.widths,
        depth_min=args.depth_min,
        depth_max=args.depth_max,
        vocab_size=args.vocab,
    )
    rng, found = random.Random(args.seed), {}
    needed = 2 * (args.measurements + args.test)  # spares for exports that fail
    for _ in range(100 * needed):
        if len(found) == needed:
            break
        g = sample(space, rng)
        found.setdefault(g.hash(), g)
    return list(found.values())


def protocol(args: argparse.Namespace) -> Protocol:
    pairs = {"decode_pairs": args.decode_pairs} if args.reference else {}  # else unused
    return Protocol(
        args.prefill,
        args.decode,
        args.warmup,
        args.repeats,
        args.processes,
        args.reference,
        **pairs,
    )


def measure_all(
    gs: list[Genome], devices: list[str], args: argparse.Namespace
) -> tuple[list[Genome], dict[str, dict[str, Any]]]:
    """The first `measurements + test` genomes whose export and measurement worked, and per
    genome hash and device what was measured (bench/phone_measurements.py's cache, shared
    with the phone-scale search). A failed export (e.g. a quantized variant that fails its
    decode-vs-prefill check) is recorded and the genome replaced by the next one."""
    cache = PhoneMeasurements(args.cache, protocol(args))
    needed, kept, offered = args.measurements + args.test, [], 0
    while len(kept) < needed and offered < len(gs):
        batch = gs[offered : offered + needed - len(kept)]
        offered += len(batch)
        cache.measure(batch, devices, workers=args.export_workers)
        kept += [g for g in batch if "error" not in cache.entries[g.hash()]]
        print(f"{len(kept)} of {needed} genomes measured", flush=True)
    if len(kept) < needed:
        raise SystemExit(f"only {len(kept)} of {needed} genomes exported and measured")
    failed = sum("error" in cache.entries.get(g.hash(), {}) for g in gs)
    return kept, {g.hash(): cache.entries[g.hash()] for g in kept} | {"failed": failed}


def add_referenced(gs: list[Genome], measured: dict, name: str) -> dict[str, float]:
    """Each genome's latencies in the reference's units, scaled to milliseconds: its ratio to
    the reference (timed alternately with it) times the reference's median over all `gs`.
    One scale per metric: the model's fit and every accuracy figure are the same for any.
    Returns the scales (the reference's medians)."""
    scales = {}
    for metric in measured[gs[0].hash()][name].get("relative", {}):
        scale = statistics.median(measured[g.hash()][name]["reference_ms"][metric] for g in gs)
        for g in gs:
            entry = measured[g.hash()][name]
            entry.setdefault("referenced", {})[metric] = entry["relative"][metric] * scale
        scales[metric] = scale
    return scales


def observations(gs: list[Genome], measured: dict, name: str, values: str = "metrics") -> list:
    """(genome, readings) pairs; `values`: "metrics" as measured, or "referenced"."""
    return [(g, measured[g.hash()][name][values]) for g in gs]


def metric_names(args: argparse.Namespace, name: str) -> list[str]:
    return protocol(args).metric_names(name)


def scored(
    model: LatencyModel,
    test: list[Genome],
    measured: dict,
    name: str,
    metric: str,
    values: str = "metrics",
    rows: bool = False,
):
    """Held-out accuracy of one metric, with the share within +-5 % (peak memory's bound);
    with `rows`, every held-out genome's prediction beside its measurement (`held_out`)."""
    truth = [measured[g.hash()][name][values][metric] for g in test]
    result = model.held_out_accuracy(test, truth, metric)
    predicted = model.predict(test, metric).mean
    result["within_5"] = sum(abs(p - m) <= 0.05 * m for p, m in zip(predicted, truth)) / len(truth)
    result["how"] = model.predict(test[:1], metric).how
    if rows:
        result["held_out"] = [
            {"hash": g.hash(), "predicted": float(p), "measured": m}
            for g, p, m in zip(test, predicted, truth)
        ]
    return result


def scored_names(args, measured, gs, name: str, values: str) -> list[str]:
    """The metrics scored: every one measured, or the latencies that have a reference."""
    if values == "metrics":
        return metric_names(args, name)
    return list(measured[gs[0].hash()][name].get(values, {}))


def from_scratch(args, gs, measured, source: str, values: str = "metrics") -> dict[str, Any]:
    """Per metric, the held-out figures and every held-out genome's prediction beside its
    measurement (`held_out`: what a miss is read from, without refitting)."""
    fit, test = gs[: args.measurements], gs[args.measurements :]
    seen = {device(source)[0]: observations(fit, measured, source, values)}
    model = _model(args, len(fit)).fit(seen)
    return {
        m: scored(model, test, measured, source, m, values, rows=True)
        for m in scored_names(args, measured, gs, source, values)
    }


def _model(args: argparse.Namespace, n_source: int) -> LatencyModel:
    return LatencyModel(peak_lengths=(args.prefill, args.decode), min_source=min(8, n_source))


def transfer(args, gs, measured, source: str, target: str, values: str = "metrics"):
    """Per k: the target device's accuracy with transfer and alone (alone needs k >= 2)."""
    fit, test = gs[: args.measurements], gs[args.measurements :]
    rows: dict[str, Any] = {}
    for k in [0, *args.transfer_sizes]:
        own = observations(fit[:k], measured, target, values)
        merged = {device(source)[0]: observations(fit, measured, source, values)}
        merged[device(target)[0]] = merged.get(device(target)[0], []) + own  # may share a class
        moved = _model(args, len(fit)).fit(merged)
        alone = _model(args, len(fit)).fit({device(target)[0]: own}) if k >= 2 else None
        rows[str(k)] = {
            m: {
                "transfer": scored(moved, test, measured, target, m, values),
                "scratch": scored(alone, test, measured, target, m, values) if alone else None,
                "set_aside": set_aside(moved, test, measured, target, m, values),
            }
            for m in scored_names(args, measured, gs, target, values)
        }
    return rows


def set_aside(model: LatencyModel, test, measured, name: str, metric: str, values: str):
    """The fit the model compared with the one it kept for `metric` (from scratch or transfer)
    and set aside, scored on the same held-out genomes, with the cross-validated difference
    that decided it (from scratch's error less transfer's, and its standard error); None
    where there was no choice (k < 2)."""
    predicted = model.set_aside(test, metric)
    if predicted is None:
        return None
    choice = model.choices[LatencyTarget.parse(metric)]
    truth = [measured[g.hash()][name][values][metric] for g in test]
    return {
        **accuracy(list(zip(predicted.mean.tolist(), truth))),
        "how": predicted.how,
        "kept": choice.kept,
        "cv_difference": choice.difference,
        "cv_standard_error": choice.standard_error,
    }


def spread_vs_noise(gs, measured, name: str) -> dict[str, dict[str, float]]:
    """Per latency case: max/min of the medians across genomes, and the median repeat CV."""
    out = {}
    for case in measured[gs[0].hash()][name]["cv"]:
        kind, length = case.split("@")
        metric = next(
            m
            for m in measured[gs[0].hash()][name]["metrics"]
            if m.startswith(f"{kind}_ms@{length}[")
        )
        values = [measured[g.hash()][name]["metrics"][metric] for g in gs]
        cv = statistics.median(measured[g.hash()][name]["cv"][case] for g in gs)
        out[metric] = {
            "spread_max_over_min": max(values) / min(values),
            "median_cv": cv,
            "spread_over_cv": (max(values) / min(values) - 1) / max(cv, 1e-9),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    source, target = args.devices
    gs = genomes(args)
    started = time.perf_counter()
    gs, measured = measure_all(gs, [source, target], args)
    result = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "genomes": len(gs),
        "failed_exports": measured.pop("failed"),
        "measure_s": time.perf_counter() - started,
        "spread": {d: spread_vs_noise(gs, measured, d) for d in (source, target)},
        "from_scratch": from_scratch(args, gs, measured, source),
        "transfer": transfer(args, gs, measured, source, target),
    }
    if args.reference:
        result["reference"] = {
            "preset": args.reference,
            "median_ms": {name: add_referenced(gs, measured, name) for name in (source, target)},
            "from_scratch": from_scratch(args, gs, measured, source, "referenced"),
            "transfer": transfer(args, gs, measured, source, target, "referenced"),
        }
    if args.retest:
        result["retest"] = retest(args, gs[args.measurements :][: args.retest], measured, source)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float))
    print_summary(result)
    return result


def retest(args, gs: list[Genome], measured: dict, name: str) -> list[dict[str, Any]]:
    """Each genome exported and measured once more (a cache of its own, thrown away): per
    metric, the new reading over the run's ("plain"), and for latencies timed beside a
    reference the new ratio over the run's ("relative")."""
    with tempfile.TemporaryDirectory() as root:
        again = PhoneMeasurements(Path(root) / "retest.json", protocol(args))
        again.measure(gs, [name], workers=args.export_workers)
    rows = []
    for g in gs:
        old, new = measured[g.hash()][name], again.entries[g.hash()].get(name)
        if new is None:
            rows.append({"hash": g.hash(), **again.entries[g.hash()]})
            continue
        row: dict[str, Any] = {"hash": g.hash()}
        for metric, value in old["metrics"].items():
            row[metric] = {"plain": new["metrics"][metric] / value}
            if metric in old.get("relative", {}):
                row[metric]["relative"] = new["relative"][metric] / old["relative"][metric]
        rows.append(row)
    return rows


def print_summary(result: dict[str, Any]) -> None:
    parts = [("", result)]
    if "reference" in result:
        parts.append(("relative to the reference, ", result["reference"]))
    for label, part in parts:
        for metric, r in part["from_scratch"].items():
            print(
                f"{label}{metric}: tau {r['kendall_tau']}, MdAPE {r['mdape']}, within 10 % "
                f"{r['within_10']}, within 5 % {r['within_5']} ({r['how']})"
            )
        for k, rows in part["transfer"].items():
            for metric, pair in rows.items():
                alone = pair["scratch"]["kendall_tau"] if pair["scratch"] else None
                tau = pair["transfer"]["kendall_tau"]
                other = pair.get("set_aside")
                aside = (
                    f"; kept {other['kept']}, the other's tau {other['kendall_tau']}, CV "
                    f"difference {other['cv_difference']:.4f} ± {other['cv_standard_error']:.4f}"
                    if other
                    else ""
                )
                print(f"{label}transfer k={k} {metric}: tau {tau} (alone {alone}{aside})")
    for row in result.get("retest", []):
        print(
            f"retest {row['hash'][:10]}: "
            + ", ".join(
                f"{m} plain {v['plain']:.3f}x, relative {v.get('relative', float('nan')):.3f}x"
                for m, v in row.items()
                if isinstance(v, dict)
            )
        )


if __name__ == "__main__":
    main()
