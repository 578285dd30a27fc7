"""Random search vs NSGA-II vs surrogate-assisted NSGA-II at equal evaluation budgets.

Tiny models, real training on the built-in corpus (byte tokenizer, a fixed token budget) as
Ray tasks, on two objective sets:
- static:   (perplexity, params, cache_bytes@1024)
- hardware: (perplexity, decode_ms@128[host], params), decode latency measured by the host
            agent's own backend (`device_agent.host_backend`) on each candidate's ONNX export,
            one measurement at a time while the workers are idle.
Each (set, algorithm, seed) is an independent search (population 16, 9 generations: the
initial 16 and 8 x 14 offspring = 128 evaluations), started without the presets so the
three algorithms get the same start; hypervolume against evaluations is computed in two
frames shared by every run of a set: "front" (ideal and nadir of the best front known, the
non-dominated set of everything evaluated in that set: the frame the targets are read in,
since it measures how much of the best front a run found) and "all" (ideal and nadir of
everything evaluated, where any front near the corner is close to the maximum 1.1^k).
Evaluations are cached by genome across runs (the same genome is never trained or measured
twice). With
`--presets`, NSGA-II and the surrogate also run with the presets in the initial population,
as users run them, for STAR's table and the check against `lfm2`. The presets, sized like
the searched models and trained with the same budget, are the baselines.

Each run's evaluated candidates (generation, metrics) are stored too, so other frames can
be computed from the JSON later. Running a subset of the sets keeps the other sets already in
the output file.

Reported: hypervolume per evaluation count (mean and spread over seeds), evaluations each
algorithm needs to reach random search's final mean hypervolume, the surrogate's predictor
accuracy per generation (Kendall tau, median absolute percentage error), and STAR's table.

    python -m bench.search [--sets static hardware] [--seeds 0 1 2] [--population 16]
                           [--generations 9] [--tokens 30000] [--presets]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.search_evaluations import HOST, Evaluations
from bench.search_frames import (
    archives,
    curve,
    front_dominates_lfm2,
    shared_frames,
    star_rows,
    summarise,
)
from core import SearchSpace, preset
from core.job_spec import EvolutionSpec
from orchestrator.ray_evaluator import RayEvaluator, connect
from orchestrator.search.loop import Individual, SearchLoop

RESULTS = Path(__file__).parent / "results"
OBJECTIVE_SETS = {
    "static": ["perplexity", "params", "cache_bytes@1024"],
    "hardware": ["perplexity", HOST, "params"],
}
ALGORITHMS = ["random", "nsga2", "surrogate"]
BASELINES = ["transformer++", "lfm2", "hyena-edge", "striped-hyena", "mobilellm"]
VOCAB = 257  # byte tokenizer
SPACE = SearchSpace(
    classes=["attention", "hyena", "hyena_x", "hyena_y", "gla", "swiglu"],
    widths=[32, 48, 64],
    depth_min=2,
    depth_max=8,
    vocab_size=VOCAB,
)
PRESET_SIZE = {name: dict(width=48, layers=2, heads=4, kv_heads=2, ffn=96) for name in BASELINES}
PRESET_SIZE["mobilellm"] = dict(width=32, layers=4, heads=4, kv_heads=2, ffn=64)  # deep and thin


def run_search(
    name: str,
    objectives: list[str],
    algorithm: str,
    seed: int,
    args,
    evaluations: Evaluations,
    presets: bool,
) -> dict[str, Any]:
    spec = EvolutionSpec(
        algorithm=algorithm,
        population=args.population,
        generations=args.generations,
        seed=seed,
        include_presets=presets,
    )
    loop = SearchLoop(SPACE, spec, objectives)
    started = time.perf_counter()
    predictor = []  # the surrogate's accuracy, generation by generation
    for generation in range(spec.generations):
        individuals = loop.add(loop.children_for(generation), generation)
        todo = [c for c in individuals if c.metrics is None]
        if todo:
            evaluations.evaluate(todo, objectives)
        loop.complete(generation, [c.hash for c in individuals])
        if algorithm == "surrogate":
            predictor.append(
                {
                    "generation": generation,
                    "fallback": loop.selection_info.get(generation, {}).get("fallback", True),
                    **loop.prediction_report(generation),
                }
            )
    print(
        f"{name:8s} {algorithm:9s} seed {seed}{' +presets' if presets else ''}: "
        f"{loop.history[-1].evaluations} evaluations, {len(loop.history[-1].pareto)} on the "
        f"front ({time.perf_counter() - started:.0f}s)",
        flush=True,
    )
    return {
        "loop": loop,
        "predictor": predictor,
        "seed": seed,
        "algorithm": algorithm,
        "presets": presets,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags; the defaults are the README's three seeds at equal budgets."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sets", nargs="+", default=list(OBJECTIVE_SETS), choices=list(OBJECTIVE_SETS)
    )
    parser.add_argument("--algorithms", nargs="+", default=ALGORITHMS, choices=ALGORITHMS)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--generations", type=int, default=9)
    parser.add_argument("--tokens", type=int, default=30_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--presets",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run NSGA-II and the surrogate with presets in generation 0",
    )
    parser.add_argument("--workers", type=int, default=2, help="local Ray CPUs")
    parser.add_argument("--out", type=Path, default=RESULTS / "search.json")
    return parser.parse_args(argv)


def run_all_searches(
    name: str, objectives: list[str], args: argparse.Namespace, evaluations: Evaluations
) -> list[dict[str, Any]]:
    """Every (algorithm, seed) from the same start, then, with --presets, the presets seeded
    (random search has no initial population to seed)."""
    runs = [
        run_search(name, objectives, algorithm, seed, args, evaluations, False)
        for seed in args.seeds
        for algorithm in args.algorithms
    ]
    if args.presets:
        runs += [
            run_search(name, objectives, algorithm, seed, args, evaluations, True)
            for seed in args.seeds
            for algorithm in args.algorithms
            if algorithm != "random"
        ]
    return runs


def search_set(name: str, args: argparse.Namespace, evaluations: Evaluations) -> dict[str, Any]:
    """One objective set: its searches, the baselines, and the report entry for it."""
    objectives = OBJECTIVE_SETS[name]
    runs = run_all_searches(name, objectives, args, evaluations)
    baselines = [
        Individual(preset(p, vocab=VOCAB, **PRESET_SIZE[p]), -1, origin=p) for p in BASELINES
    ]
    evaluations.evaluate(baselines, objectives)
    reference = SearchLoop(SPACE, EvolutionSpec(), objectives)
    frames = shared_frames(reference, runs)
    plain = [r for r in runs if not r["presets"]]
    counts = [h.evaluations for h in plain[0]["loop"].history]
    by_frame = {
        f: summarise(
            {
                a: [curve(r, reference, frame) for r in plain if r["algorithm"] == a]
                for a in args.algorithms
            },
            counts,
        )
        for f, frame in frames.items()
    }
    base_metrics = {b.origin: b.metrics for b in baselines}
    dominated_lfm2 = front_dominates_lfm2(runs, base_metrics["lfm2"], objectives)
    entry = {
        "objectives": objectives,
        "evaluations": counts,
        "frames": {f: {"ideal": fr.ideal, "nadir": fr.nadir} for f, fr in frames.items()},
        **by_frame["front"],
        "all_frame": by_frame["all"],
        "predictor": [
            {"seed": r["seed"], "presets": r["presets"], "by_generation": r["predictor"]}
            for r in runs
            if r["algorithm"] == "surrogate"
        ],
        "baselines": base_metrics,
        "front_dominates_lfm2_on_perplexity_and_host_decode": dominated_lfm2,
        "star_table": [star_rows(r, base_metrics, objectives) for r in runs],
        "runs": archives(runs),
    }
    for f, summary in by_frame.items():
        print(
            f"{name} ({f} frame): final hypervolume mean "
            + ", ".join(f"{a} {m[-1]:.4f}" for a, m in summary["hypervolume_mean"].items())
            + f"; ratio to random {summary['final_ratio_to_random']}; evaluations to reach"
            f" random's final: {summary['evaluations_to_reach_random_final']}",
            flush=True,
        )
    return entry


def keep_previous_sets(report: dict[str, Any], args: argparse.Namespace, started: float) -> None:
    """Fold in the sets of the existing output file this invocation did not run, so sets can
    be run one at a time."""
    previous = json.loads(args.out.read_text())
    kept = {k: v for k, v in previous.get("sets", {}).items() if k not in report["sets"]}
    walls = previous.get("wall_s") if isinstance(previous.get("wall_s"), dict) else {}
    report["sets"] = {**kept, **report["sets"]}
    report["wall_s"] = {
        **{k: v for k, v in walls.items() if k in kept},
        ",".join(args.sets): time.perf_counter() - started,
    }
    report["args_by_sets"] = {
        **previous.get("args_by_sets", {}),
        ",".join(args.sets): report["args"],
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
    evaluations = Evaluations(RayEvaluator(), config)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "search",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "sets": {},
    }
    for name in args.sets:
        report["sets"][name] = search_set(name, args, evaluations)
    report["wall_s"] = {",".join(args.sets): time.perf_counter() - started}
    if args.out.exists():  # keep the sets this invocation did not run
        keep_previous_sets(report, args, started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    plot(report, args.out.with_suffix(".png"))
    print(f"wrote {args.out} ({time.perf_counter() - started:.0f}s)")
    return report


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(report["sets"])
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4), squeeze=False)
    for ax, name in zip(axes[0], sets):
        data = report["sets"][name]
        for i, (algorithm, mean) in enumerate(data["hypervolume_mean"].items()):
            std = np.asarray(data["hypervolume_std"][algorithm])
            ax.plot(data["evaluations"], mean, marker="o", color=f"C{i}", label=algorithm)
            ax.fill_between(
                data["evaluations"],
                np.asarray(mean) - std,
                np.asarray(mean) + std,
                color=f"C{i}",
                alpha=0.2,
            )
        ax.set_xlabel("evaluations")
        ax.set_ylabel("hypervolume (shared frame)")
        ax.set_title(f"{name}: {', '.join(data['objectives'])}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
