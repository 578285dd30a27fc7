"""Random search vs NSGA-II vs pre-screening vs surrogate-assisted NSGA-II (and the surrogate
on multi-fidelity rungs), in evaluations and in compute, read in a frame fixed before the run.

Real training on the built-in corpus (byte tokenizer, a fixed token budget) as Ray tasks, on
three objective sets:
- static:   tiny models (width 32-64, 2-8 slots): (perplexity, params, cache_bytes@1024)
- hardware: the same tiny models: (perplexity, decode_ms@128[host], params), decode latency
            measured by the host agent's own backend (`device_agent.host_backend`) on each
            candidate's ONNX export, one measurement at a time while the workers are idle.
- phone:    phone-scale models (width 256-768, 8-24 slots, 16k vocabulary: ~10-150M
            parameters), quality from proxy training at 1/8 of each candidate's width
            (`eval_width_divisor`: 32-96; the first phone runs trained every candidate at
            width 64 and were blind to width), prefill and
            decode latency and peak memory of the full-size int8 export on this host
            (bench/phone_measurements.py, a cache shared with bench.latency_model).
Each (set, algorithm, seed) is an independent search started without the presets, so every
algorithm gets the same start per seed. `surrogate+lm` is `surrogate` with the LIV latency
model as an input of its latency and memory models (`evolution.latency_prior`);
`surrogate+mf` is `surrogate` with `training.fidelities` (successive halving over the token
budget, orchestrator/search/fidelity.py; promotions on the objectives known after training,
as the driver does).
Evaluations are cached by genome and budget across runs (never trained or measured twice);
each archive entry carries the `compute_s` its evaluation cost (training CPU-seconds of every
rung it trained, plus export CPU-seconds and measurement seconds where the set measures).

The figures, the frame and the targets are bench/search_figures.py's docstring, fixed before
the first run: regret ratio to random's, evaluations and compute to reach random's final mean
hypervolume, per-seed paired differences, sample spread (ddof = 1).

    python -m bench.search [--sets static hardware phone] [--seeds 0 1 2 3 4] [--population 8]
                           [--generations 6] [--tokens 30000] [--fidelities 3000 10000 30000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.phone_measurements import CACHE, PhoneMeasurements, Protocol
from bench.search_evaluations import HOST, Evaluations, PhoneDevice
from bench.search_figures import figures
from core import SearchSpace
from core.job_spec import EvolutionSpec
from orchestrator.ray_evaluator import RayEvaluator, connect
from orchestrator.search.fidelity import Rungs, promotions
from orchestrator.search.loop import Individual, SearchLoop

RESULTS = Path(__file__).parent / "results"
PHONE_DEVICE = "host-int8"  # what the phone set measures on: this host, int8 graphs
PHONE_PROTOCOL = Protocol(prefill=128, decode=128)
OBJECTIVE_SETS = {
    "static": ["perplexity", "params", "cache_bytes@1024"],
    "hardware": ["perplexity", HOST, "params"],
    "phone": ["perplexity", *PHONE_PROTOCOL.metric_names(PHONE_DEVICE)],
}
MULTI_FIDELITY = "+mf"  # suffix: the algorithm on successive-halving rungs
LATENCY_PRIOR = "+lm"  # suffix: the surrogate with the LIV latency model as a prior
ALGORITHMS = ["random", "nsga2", "prescreen", "surrogate", "surrogate+mf", "surrogate+lm"]
DEFAULT_ALGORITHMS = {
    "static": ["random", "nsga2", "prescreen", "surrogate", "surrogate+mf"],
    "hardware": ["random", "nsga2", "prescreen", "surrogate", "surrogate+mf"],
    "phone": ["random", "nsga2", "surrogate", "surrogate+lm"],
}
VOCAB = 257  # byte tokenizer
CLASSES = ["attention", "hyena", "hyena_x", "hyena_y", "gla", "swiglu"]
SPACE = SearchSpace(
    classes=CLASSES, widths=[32, 48, 64], depth_min=2, depth_max=8, vocab_size=VOCAB
)
# Phone scale (issue 23): ~10-150M parameters; a 16k vocabulary as phone models have.
PHONE_SPACE = SearchSpace(
    classes=CLASSES, widths=[256, 384, 512, 768], depth_min=8, depth_max=24, vocab_size=16_384
)
SPACES = {"static": SPACE, "hardware": SPACE, "phone": PHONE_SPACE}
# The phone set's quality is proxy training (core/scaling.py): each candidate at 1/8 of its
# width (256-768 train at 32-96, so width still buys quality), on byte tokens (the genome's
# 16k-row embedding sees the 257 it is trained on).
TRAINING_BY_SET = {"phone": {"eval_width_divisor": 8}}


def evaluate_generation(
    loop: SearchLoop,
    individuals: list[Individual],
    objectives: list[str],
    budgets: list[int],
    evaluations: Evaluations,
) -> None:
    """Train every candidate on the first budget, promote the best third per rung (the
    driver's rule: orchestrator/rung_decisions.py), measure hardware, then tell the loop."""
    rungs = Rungs(tuple(budgets))
    reached = {c.hash: 0 for c in individuals}
    at = list(individuals)
    for rung, tokens in enumerate(budgets):
        evaluations.train(at, tokens)
        if rung == rungs.top:
            break
        results = {}
        for c in at:
            if evaluations.perplexity.get((c.hash, tokens)) is not None:
                metrics, _ = evaluations.metrics(c, objectives, [tokens])
                results[c.hash] = metrics
        known = [m for m in objectives if all(m in r for r in results.values())]
        promoted = set(promotions(results, known, [], rungs.keep(len(results))))
        at = [c for c in at if c.hash in promoted]
        for c in at:
            reached[c.hash] = rung + 1
    if HOST in objectives:
        evaluations.measure(individuals)
    if evaluations.phone is not None:
        evaluations.phone.measure([c.genome for c in individuals])
    for c in individuals:
        trained = budgets[: reached[c.hash] + 1]
        metrics, compute = evaluations.metrics(c, objectives, trained)
        loop.tell(c.hash, metrics, trained[-1])
        c.compute_s = compute  # type: ignore[attr-defined]


def run_search(
    objectives: list[str],
    algorithm: str,
    seed: int,
    args,
    evaluations: Evaluations,
    space: SearchSpace = SPACE,
) -> dict[str, Any]:
    base = algorithm.removesuffix(MULTI_FIDELITY).removesuffix(LATENCY_PRIOR)
    budgets = args.fidelities if algorithm.endswith(MULTI_FIDELITY) else [args.tokens]
    spec = EvolutionSpec(
        algorithm=base,
        population=args.population,
        generations=args.generations,
        seed=seed,
        include_presets=False,
        latency_prior=algorithm.endswith(LATENCY_PRIOR),
    )
    loop = SearchLoop(space, spec, objectives)
    started = time.perf_counter()
    predictor = []
    for generation in range(spec.generations):
        individuals = loop.add(loop.ask(generation), generation)
        todo = [c for c in individuals if c.metrics is None]
        if todo:
            evaluate_generation(loop, todo, objectives, budgets, evaluations)
        loop.complete(generation, [c.hash for c in individuals])
        if loop.algorithm.learns:
            info = loop.selection_info.get(generation, {})
            predictor.append(
                {
                    "generation": generation,
                    "fallback": info.get("fallback", True),
                    **loop.prediction_report(generation),
                }
            )
    print(
        f"{','.join(objectives):45s} {algorithm:13s} seed {seed}: "
        f"{loop.history[-1].evaluations} evaluations ({time.perf_counter() - started:.0f}s)",
        flush=True,
    )
    archive = [
        {
            "generation": c.generation,
            "origin": c.origin,
            "hash": c.hash,
            "architecture": c.genome.describe(),  # width, depth and slots: what a front holds
            "metrics": c.metrics,
            "fidelity": c.fidelity,
            "compute_s": getattr(c, "compute_s", None),
        }
        for c in sorted(loop.archive.values(), key=lambda c: c.generation)
    ]
    return {"algorithm": algorithm, "seed": seed, "archive": archive, "predictor": predictor}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags; the defaults are the README's run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sets",
        nargs="+",
        default=["static", "hardware"],
        choices=list(OBJECTIVE_SETS),
        help="phone (hours on 2 cores) runs only when named",
    )
    parser.add_argument(
        "--algorithms",
        nargs="+",
        default=None,
        choices=ALGORITHMS,
        help="default: per set, "
        + "; ".join(f"{k}: {' '.join(v)}" for k, v in DEFAULT_ALGORITHMS.items()),
    )
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--generations", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=30_000)
    parser.add_argument("--fidelities", type=int, nargs="+", default=[3_000, 10_000, 30_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2, help="local Ray CPUs")
    parser.add_argument("--out", type=Path, default=RESULTS / "search.json")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("runs/bench-search-evaluations.json"),
        help="every evaluation so far, so a run killed midway resumes (keyed by config)",
    )
    parser.add_argument(
        "--phone-cache",
        type=Path,
        default=CACHE,
        help="the phone set's measurements, shared with bench.latency_model",
    )
    args = parser.parse_args(argv)
    if args.fidelities[-1] != args.tokens or "random" not in (args.algorithms or ["random"]):
        parser.error("--fidelities must end at --tokens, and random (the baseline) must run")
    return args


def algorithms_of(name: str, args: argparse.Namespace) -> list[str]:
    return args.algorithms or DEFAULT_ALGORITHMS[name]


def search_set(name: str, args: argparse.Namespace, evaluations: Evaluations) -> dict[str, Any]:
    """One objective set: every (algorithm, seed) run and its figures."""
    objectives = OBJECTIVE_SETS[name]
    runs = [
        run_search(objectives, algorithm, seed, args, evaluations, SPACES[name])
        for seed in args.seeds
        for algorithm in algorithms_of(name, args)
    ]
    read = figures(runs, objectives)
    for algorithm, f in read["algorithms"].items():
        print(
            f"{name} {algorithm:13s} regret ratio {f['regret_ratio_to_random']}, "
            f"evaluations to random's final {f['evaluations_to_reach_random_final']['mean']}, "
            f"compute ratio {f['compute_ratio_to_random_total']['mean']} "
            f"({f['seeds_reaching']} seeds reach)",
            flush=True,
        )
    print(f"{name} targets: {read['targets']}", flush=True)
    extra = {}
    if evaluations.phone is not None:
        extra["spread_vs_noise"] = spread_vs_noise(runs, evaluations.phone)
        print(f"{name} spread vs noise: {extra['spread_vs_noise']}", flush=True)
    return {"objectives": objectives, **read, **extra, "runs": runs}


def spread_vs_noise(runs: list[dict[str, Any]], phone: PhoneDevice) -> dict[str, Any]:
    """Per measured latency, over every genome the set's runs measured: the spread across
    candidates (max / min of their medians) against the repeat-to-repeat noise (the median
    of each measurement's CV across its repeats); issue 23 asks spread - 1 >= 10 x CV."""
    hashes = {e["hash"] for run in runs for e in run["archive"]}
    entries = [
        phone.measurements.entries[h][phone.device]
        for h in hashes
        if phone.device in phone.measurements.entries.get(h, {})
    ]
    out: dict[str, Any] = {}
    for metric in phone.metric_names:
        values = [e["metrics"][metric] for e in entries if metric in e["metrics"]]
        case = metric.split("[")[0].replace("_ms", "")  # decode_ms@128 -> decode@128
        cvs = [e["cv"][case] for e in entries if case in e.get("cv", {})]
        if not values:
            continue
        spread = max(values) / min(values)
        cv = float(np.median(cvs)) if cvs else None
        out[metric] = {
            "candidates": len(values),
            "min": min(values),
            "max": max(values),
            "spread_max_over_min": spread,
            "median_repeat_cv": cv,
            "spread_over_cv": (spread - 1) / cv if cv else None,
        }
    return out


def keep_previous_sets(report: dict[str, Any], args: argparse.Namespace, started: float) -> None:
    """Fold in the sets of the existing output file this invocation did not run, so sets can
    be run one at a time (each set keeps the arguments it ran with)."""
    previous = json.loads(args.out.read_text())
    kept = {k: v for k, v in previous.get("sets", {}).items() if k not in report["sets"]}
    report["sets"] = {**kept, **report["sets"]}
    report["wall_s"] = {
        **{k: v for k, v in (previous.get("wall_s") or {}).items() if k in kept},
        **report["wall_s"],
    }
    report["args_by_set"] = {
        **{k: v for k, v in (previous.get("args_by_set") or {}).items() if k in kept},
        **report["args_by_set"],
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    connect(num_cpus=args.workers)
    config = {
        "tokens": args.tokens,
        "seq_len": 64,
        "batch_size": 16,
        "tokenizer": {"kind": "byte"},
        "eval_tokens": 8_192,
    }
    evaluator = RayEvaluator()
    started = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "search", "sets": {}, "wall_s": {}, "args_by_set": {}}
    for name in args.sets:
        set_started = time.perf_counter()
        report["sets"][name] = search_set(
            name, args, set_evaluations(name, evaluator, config, args)
        )
        report["wall_s"][name] = time.perf_counter() - set_started
        report["args_by_set"][name] = {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "algorithms": algorithms_of(name, args),
        }
    if args.out.exists():  # keep the sets this invocation did not run
        keep_previous_sets(report, args, started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    plot(report, args.out.with_suffix(".png"))
    print(f"wrote {args.out} ({time.perf_counter() - started:.0f}s)")
    return report


def set_evaluations(
    name: str, evaluator: RayEvaluator, config: dict[str, Any], args: argparse.Namespace
) -> Evaluations:
    """The set's evaluations: its own training config where it has one (then its own
    evaluation cache file beside `--cache`), and the phone measurements for the phone set."""
    overrides = TRAINING_BY_SET.get(name, {})
    cache = args.cache.with_suffix(f".{name}.json") if overrides else args.cache
    phone = None
    if any(m in OBJECTIVE_SETS[name] for m in PHONE_PROTOCOL.metric_names(PHONE_DEVICE)):
        phone = PhoneDevice(PhoneMeasurements(args.phone_cache, PHONE_PROTOCOL), PHONE_DEVICE)
    return Evaluations(evaluator, {**config, **overrides}, cache=cache, phone=phone)


def plot(report: dict, path: Path) -> None:
    """Hypervolume (fixed frame) against evaluations and against compute, mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [name for name, data in report["sets"].items() if "curves" in data]
    fig, axes = plt.subplots(2, len(sets), figsize=(6 * len(sets), 8), squeeze=False)
    for column, name in enumerate(sets):
        data = report["sets"][name]
        for i, algorithm in enumerate(data["algorithms"]):
            curves = [c for k, c in data["curves"].items() if k.rsplit(":", 1)[0] == algorithm]
            for row, x in enumerate(("evaluations", "compute_s")):
                ax = axes[row][column]
                xs = np.mean([c[x] for c in curves], axis=0)
                hv = np.asarray([c["hypervolume"] for c in curves])
                ax.plot(xs, hv.mean(0), marker="o", color=f"C{i}", label=algorithm)
                if len(curves) > 1:
                    spread = hv.std(0, ddof=1)
                    ax.fill_between(
                        xs, hv.mean(0) - spread, hv.mean(0) + spread, color=f"C{i}", alpha=0.15
                    )
                ax.set_xlabel("evaluations" if x == "evaluations" else "compute, CPU-seconds")
                ax.set_ylabel("hypervolume (fixed frame)")
                ax.set_title(f"{name}: {', '.join(data['objectives'])}", fontsize=9)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
