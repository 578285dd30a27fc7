"""System throughput: evaluations per hour with 1 and 2 Ray workers, and orchestration
overhead.

The same search (same seed, so the same candidates) runs twice on a fresh local Ray
cluster, first with one worker CPU, then with two. Each evaluation is a real training run
plus an ONNX export of the candidate. Overhead is the share of worker capacity not spent
inside training or export tasks:

    overhead = 1 - sum(task wall time) / (workers x job wall time)

It counts everything the driver adds — breeding, selection, scheduling, result handling —
and the idle time at each generation's barrier while the last evaluations finish.
Profiling on phones is not part of this run (no phone here). Storage writes are not either:
this measures the in-memory search loop until the persistent driver lands.

    python -m bench.system [--population 6 --generations 3 --tokens 30000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import ray

from orchestrator.evaluation import Evaluator, connect
from orchestrator.genome import SearchSpace
from orchestrator.search.evolution import EvolutionParams
from orchestrator.search.loop import SearchLoop
from orchestrator.search.metrics import static_metrics

RESULTS = Path(__file__).parent / "results"
OBJECTIVES = ["perplexity", "params", "cache_bytes@1024"]


def run_job(workers: int, args) -> dict:
    connect(num_cpus=workers)
    evaluator = Evaluator()
    config = {"tokens": args.tokens, "seq_len": 64, "batch_size": 16,
              "tokenizer": {"kind": "byte"}, "eval_tokens": 8_192, "threads": 1}
    space = SearchSpace(classes=["attention", "hyena", "hyena_y", "gla", "swiglu"],
                        widths=[32, 48, 64], depth_min=2, depth_max=6, vocab_size=257)
    loop = SearchLoop(space, EvolutionParams(population=args.population,
                                             generations=args.generations, seed=0,
                                             elitism=2), OBJECTIVES)
    busy = {"quality": 0.0, "export": 0.0}
    evaluations = 0

    def evaluate(candidates):
        nonlocal evaluations
        by_key = {str(i): c for i, c in enumerate(candidates)}
        for key, c in by_key.items():
            evaluator.submit_quality(key, c.genome.to_json(), config, timeout_s=900)
        while evaluator.in_flight():
            for finished in evaluator.collect(0.2):
                busy[finished.kind] += finished.value.get("task_wall_s", 0.0) \
                    if finished.ok else finished.wall_s
                c = by_key[finished.key]
                if finished.kind == "quality":
                    record = finished.value["result"] if finished.ok else {}
                    c.metrics = static_metrics(c.genome.to_json(), OBJECTIVES)
                    if record.get("status") == "ok":
                        c.metrics["perplexity"] = record["perplexity"]
                    evaluator.submit_export(finished.key, c.genome.to_json(),
                                            finished.value.get("weights") if finished.ok
                                            else None, timeout_s=900)
                else:
                    evaluations += 1

    started = time.perf_counter()
    loop.run(evaluate)
    wall = time.perf_counter() - started
    ray.shutdown()
    task_time = busy["quality"] + busy["export"]
    return {"workers": workers, "evaluations": evaluations, "wall_s": wall,
            "evaluations_per_hour": evaluations / wall * 3600,
            "task_busy_s": busy, "overhead": 1 - task_time / (workers * wall)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--population", type=int, default=6)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=30_000)
    args = parser.parse_args(argv)
    runs = [run_job(1, args), run_job(2, args)]
    one, two = runs
    result = {"benchmark": "system", "args": vars(args), "runs": runs,
              "speedup_2_over_1": two["evaluations_per_hour"] / one["evaluations_per_hour"],
              "overhead_target": 0.05}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "system.json").write_text(json.dumps(result, indent=2))
    for run in runs:
        print(f"{run['workers']} worker(s): {run['evaluations']} evaluations in "
              f"{run['wall_s']:.1f}s = {run['evaluations_per_hour']:.0f}/hour; overhead "
              f"{run['overhead']:.1%} (target <= 5%)")
    print(f"evaluations/hour, 2 workers / 1 worker = {result['speedup_2_over_1']:.2f}")
    return result


if __name__ == "__main__":
    main()
