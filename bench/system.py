"""System throughput and orchestration overhead, on the real embedded system.

The same job (same seed, so the same candidates) runs twice through the persistent driver —
SQLite, the API, a host profiling agent, the orchestrator on a fresh local Ray — first with
one Ray worker CPU, then with two. Every evaluation is a training run, an ONNX export and a
host profiling task. Reported: evaluations per hour for each, their ratio, and

    overhead = wall time during which no training, export or profiling runs / job wall time

computed from the intervals each task records (Ray tasks time themselves; a measurement's
interval is its report time minus its wall time). Writes system.json and system.png.

    python -m bench.system [--population 6 --generations 3 --tokens 30000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import timezone
from pathlib import Path

import ray
from sqlalchemy import select

from cli.embedded import start_embedded
from core.job_spec import JobSpec
from orchestrator.driver import JobRunner
from orchestrator.ray_evaluator import connect
from store import jobs as job_store
from store import transaction
from store.models import Evaluation, Measurement

RESULTS = Path(__file__).parent / "results"


def union_seconds(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    covered, cursor = 0.0, start
    for a, b in sorted((max(a, start), min(b, end)) for a, b in intervals):
        if b <= cursor:
            continue
        covered += b - max(a, cursor)
        cursor = b
    return covered


def job_spec(workers: int, args) -> JobSpec:
    """The job both runs share: the same seed, so the same candidates, named by worker count."""
    return JobSpec.model_validate(
        {
            "name": f"system-{workers}",
            "objectives": ["perplexity", "decode_ms@128[host]", "params"],
            "search_space": {
                "classes": ["attention", "hyena", "hyena_y", "gla", "swiglu"],
                "widths": [32, 48, 64],
                "depth_min": 2,
                "depth_max": 6,
                "vocab_size": 257,
            },
            "evolution": {"population": args.population, "generations": args.generations},
            "training": {
                "tokens": args.tokens,
                "seq_len": 64,
                "eval_tokens": 8192,
                "tokenizer": {"kind": "byte"},
            },
            "profiling": {
                "devices": ["host"],
                "prefill_lengths": [128],
                "decode_contexts": [128],
                "repeats": 5,
                "warmup": 1,
            },
        }
    )


def work_intervals(sessions) -> tuple[list[tuple[float, float]], int]:
    """The (start, end) of every training, export and measurement the store recorded, and the
    number of measurements (one per finished evaluation)."""
    intervals: list[tuple[float, float]] = []
    with transaction(sessions) as s:
        for result in s.scalars(select(Evaluation.result)).all():
            if result.get("task_interval"):
                intervals.append(tuple(result["task_interval"]))
        for created, report in s.execute(select(Measurement.created_at, Measurement.report)).all():
            end = (
                created.replace(tzinfo=timezone.utc).timestamp()
                if created.tzinfo is None
                else created.timestamp()
            )
            intervals.append((end - report["wall_s"], end))
        evaluations = len(s.scalars(select(Measurement.id)).all())
    return intervals, evaluations


def run_job(workers: int, args) -> dict:
    """The job on a fresh embedded system and Ray with `workers` CPUs: its throughput and the
    share of its wall time no task was running."""
    folder = Path(tempfile.mkdtemp(prefix=f"tailor-system{workers}-"))
    system = start_embedded(folder)
    sessions = system.app.state.sessions
    spec = job_spec(workers, args)
    job = job_store.create_job(sessions, spec.name, spec.model_dump(mode="json"))
    connect(num_cpus=workers)
    job_store.claim_job(sessions, "bench")
    started = time.time()
    status = JobRunner(sessions, folder / "artifacts", job.id, "bench").run()
    ended = time.time()
    system.stop()
    ray.shutdown()
    intervals, evaluations = work_intervals(sessions)
    wall = ended - started
    busy = union_seconds(intervals, started, ended)
    return {
        "workers": workers,
        "status": status,
        "evaluations": evaluations,
        "wall_s": wall,
        "evaluations_per_hour": evaluations / wall * 3600,
        "busy_s": busy,
        "overhead": 1 - busy / wall,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    labels = [f"{r['workers']} worker(s)" for r in runs]
    a.bar(labels, [r["evaluations_per_hour"] for r in runs], color=["C0", "C1"])
    a.set_ylabel("evaluations per hour")
    a.set_title(f"throughput (ratio {result['speedup_2_over_1']:.2f})")
    b.bar(labels, [100 * r["overhead"] for r in runs], color=["C0", "C1"])
    b.axhline(5, color="k", linestyle="--", label="target 5%")
    b.set_ylabel("orchestration overhead (%)")
    b.set_title("wall time with no evaluation work")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--population", type=int, default=6)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=30_000)
    args = parser.parse_args(argv)
    runs = [run_job(1, args), run_job(2, args)]
    result = {
        "benchmark": "system",
        "args": vars(args),
        "runs": runs,
        "speedup_2_over_1": runs[1]["evaluations_per_hour"] / runs[0]["evaluations_per_hour"],
        "overhead_target": 0.05,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "system.json").write_text(json.dumps(result, indent=2))
    plot(result, RESULTS / "system.png")
    for run in runs:
        print(
            f"{run['workers']} worker(s): {run['evaluations']} evaluations in "
            f"{run['wall_s']:.1f}s = {run['evaluations_per_hour']:.0f}/hour; overhead "
            f"{run['overhead']:.1%} (target <= 5%)"
        )
    print(f"evaluations/hour, 2 workers / 1 worker = {result['speedup_2_over_1']:.2f}")
    return result


if __name__ == "__main__":
    main()
