"""NSGA-II vs random search at equal evaluation budget, then STAR's table at this scale.

Tiny models, real training on the built-in corpus (byte tokenizer, a fixed token budget),
evaluations fanned out as Ray tasks. Each algorithm runs with 3 seeds; hypervolume against
the number of evaluations is computed in one frame shared by all runs (the ideal and nadir
of everything evaluated), on the search objectives (perplexity, params, cache_bytes@1024).
The presets, sized like the search's models and trained with the same budget, are the
baselines; the search starts without them. STAR's table: how many of the final Pareto set
dominate each baseline on (perplexity, params) and on (perplexity, cache bytes), and the
best cache reduction at equal or better perplexity.

    python -m bench.search [--population 8 --generations 5 --tokens 60000 --seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from orchestrator.ray_evaluator import RayEvaluator, connect
from core import SearchSpace, preset
from core.job_spec import EvolutionSpec
from orchestrator.search.loop import Individual, SearchLoop
from core.metrics import static_metrics
from orchestrator.search.selection import NormalisationFrame, hypervolume

RESULTS = Path(__file__).parent / "results"
OBJECTIVES = ["perplexity", "params", "cache_bytes@1024"]
BASELINES = ["transformer++", "striped-hyena", "lfm2", "mobilellm"]
VOCAB = 257  # byte tokenizer


def evaluate_all(evaluator: RayEvaluator, candidates: list[Individual], config: dict) -> None:
    by_key = {str(i): c for i, c in enumerate(candidates)}
    for key, c in by_key.items():
        evaluator.submit_quality(key, c.genome.to_json(), config, timeout_s=900)
    while evaluator.in_flight():
        for finished in evaluator.collect(1.0):
            c = by_key[finished.genome_hash]
            metrics = static_metrics(c.genome.to_json(), OBJECTIVES)
            record = finished.value["result"] if finished.ok else {"status": "failed"}
            if record.get("status") == "ok":
                metrics["perplexity"] = record["perplexity"]
            c.metrics = metrics


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=60_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2, help="local Ray CPUs")
    args = parser.parse_args(argv)
    connect(num_cpus=args.workers)
    evaluator = RayEvaluator()
    config = {"tokens": args.tokens, "seq_len": 64, "batch_size": 16,
              "tokenizer": {"kind": "byte"}, "eval_tokens": 16_384}
    space = SearchSpace(classes=["attention", "hyena", "hyena_x", "hyena_y", "gla", "swiglu"],
                        widths=[32, 48, 64], depth_min=2, depth_max=8, vocab_size=VOCAB)
    started = time.perf_counter()

    runs: dict[str, list[SearchLoop]] = {"nsga2": [], "random": []}
    for seed in args.seeds:
        for algorithm in runs:
            params = EvolutionSpec(algorithm=algorithm, population=args.population,
                                     generations=args.generations, seed=seed,
                                     include_presets=False)
            loop = SearchLoop(space, params, OBJECTIVES)
            loop.run(lambda cs: evaluate_all(evaluator, cs, config))
            runs[algorithm].append(loop)
            print(f"{algorithm:6s} seed {seed}: {loop.history[-1].evaluations} evaluations, "
                  f"{len(loop.history[-1].pareto)} on the Pareto front "
                  f"({time.perf_counter() - started:.0f}s)", flush=True)

    sizes = {name: dict(width=64, layers=2, heads=4, kv_heads=2, ffn=128) for name in BASELINES}
    sizes["mobilellm"] = dict(width=48, layers=4, heads=4, kv_heads=2, ffn=96)  # deep and thin
    baselines = [Individual(preset(name, vocab=VOCAB, **sizes[name]), -1, origin=name)
                 for name in BASELINES]
    evaluate_all(evaluator, baselines, config)

    # One hypervolume frame for every run: ideal/nadir over all evaluations.
    everything = [c for loops in runs.values() for loop in loops for c in loop.archive.values()]
    reference = SearchLoop(space, EvolutionSpec(), OBJECTIVES)
    all_obj, all_vio = reference.matrix(everything)
    frame = NormalisationFrame.from_objectives(all_obj, all_vio)
    curves: dict[str, list[list[float]]] = {}
    for algorithm, loops in runs.items():
        curves[algorithm] = []
        for loop in loops:
            ordered = sorted(loop.archive.values(), key=lambda c: c.generation)
            obj, vio = reference.matrix(ordered)
            counts = [h.evaluations for h in loop.history]
            curves[algorithm].append([hypervolume(obj[:n], vio[:n], frame) for n in counts])
    evaluations = [h.evaluations for h in runs["nsga2"][0].history]

    table = []
    base_vectors = {b.origin: b.metrics for b in baselines}
    for algorithm, loops in runs.items():
        for seed, loop in zip(args.seeds, loops):
            front = [loop.archive[h] for h in loop.history[-1].pareto]
            row = {"algorithm": algorithm, "seed": seed, "pareto_size": len(front)}
            for name, base in base_vectors.items():
                if "perplexity" not in base:
                    continue
                for pair, metric in (("ppl_params", "params"), ("ppl_cache", "cache_bytes@1024")):
                    b = np.array([base["perplexity"], base[metric]])
                    row[f"{name}:{pair}"] = sum(
                        dominates(np.array([c.metrics["perplexity"], c.metrics[metric]]), b)
                        for c in front if "perplexity" in c.metrics)
                better = [c for c in front if c.metrics.get("perplexity", np.inf)
                          <= base["perplexity"]]
                row[f"{name}:best_cache_reduction"] = max(
                    (1 - c.metrics["cache_bytes@1024"] / base["cache_bytes@1024"]
                     for c in better), default=None)
            table.append(row)

    final = {a: [c[-1] for c in cs] for a, cs in curves.items()}
    result = {"benchmark": "search", "args": vars(args), "objectives": OBJECTIVES,
              "evaluations": evaluations, "hypervolume": curves,
              "final_hypervolume_mean": {a: float(np.mean(v)) for a, v in final.items()},
              "baselines": {b.origin: b.metrics for b in baselines},
              "star_table": table, "wall_s": time.perf_counter() - started}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search.json").write_text(json.dumps(result, indent=2, default=float))
    plot(result, RESULTS / "search.png")
    print(f"final hypervolume (mean of {len(args.seeds)} seeds): NSGA-II "
          f"{result['final_hypervolume_mean']['nsga2']:.4f}  random "
          f"{result['final_hypervolume_mean']['random']:.4f}  ratio "
          f"{result['final_hypervolume_mean']['nsga2'] / max(result['final_hypervolume_mean']['random'], 1e-12):.3f}")
    for name, base in result["baselines"].items():
        print(f"baseline {name:14s} perplexity {base.get('perplexity', float('nan')):.3f} "
              f"params {base['params']:,.0f} cache@1024 {base['cache_bytes@1024']:,.0f}")
    for row in table:
        cells = "  ".join(f"{k}={v if not isinstance(v, float) else round(v, 3)}"
                          for k, v in row.items() if k not in ("algorithm", "seed"))
        print(f"{row['algorithm']:6s} seed {row['seed']}: {cells}")
    return result


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for algorithm, colour in (("nsga2", "C0"), ("random", "C1")):
        for i, curve in enumerate(result["hypervolume"][algorithm]):
            ax.plot(result["evaluations"], curve, color=colour, alpha=0.8, marker="o",
                    label=algorithm if i == 0 else None)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume (shared normalised frame)")
    ax.set_title("NSGA-II vs random search, equal budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
