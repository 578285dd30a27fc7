"""What `bench.search` reads from its runs: the shared hypervolume frames, each run's curve in
them, the summary over seeds, STAR's table, the check against `lfm2`, and the archives."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.search_evaluations import HOST
from orchestrator.search.loop import SearchLoop
from orchestrator.search.selection import NormalisationFrame, hypervolume, pareto_front


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether `a` is at least as good everywhere and better somewhere (all minimised)."""
    return bool(np.all(a <= b) and np.any(a < b))


def summarise(curves: dict[str, list[list[float]]], counts: list[int]) -> dict[str, Any]:
    """Mean and spread over seeds, ratio to random's final mean, evaluations to reach it."""
    mean = {a: np.mean(c, axis=0).tolist() for a, c in curves.items()}
    target = mean["random"][-1] if "random" in mean else None
    return {
        "hypervolume": curves,
        "hypervolume_mean": mean,
        "hypervolume_std": {a: np.std(c, axis=0).tolist() for a, c in curves.items()},
        "final_ratio_to_random": {a: m[-1] / target for a, m in mean.items()} if target else {},
        "evaluations_to_reach_random_final": {
            a: next((n for n, v in zip(counts, m) if target is not None and v >= target), None)
            for a, m in mean.items()
        },
    }


def curve(run: dict[str, Any], reference: SearchLoop, frame: NormalisationFrame) -> list[float]:
    """A run's hypervolume after each generation, in a frame every run of its set shares."""
    loop = run["loop"]
    ordered = sorted(loop.archive.values(), key=lambda c: c.generation)
    obj, vio = reference.matrix(ordered)
    return [hypervolume(obj[: h.evaluations], vio[: h.evaluations], frame) for h in loop.history]


def star_rows(run: dict[str, Any], baselines: dict[str, dict], objectives: list[str]) -> dict:
    """A run's row of STAR's table: how many of its front dominate each baseline, on
    perplexity and params and on perplexity and the set's cost."""
    front = [run["loop"].archive[h] for h in run["loop"].history[-1].pareto]
    row: dict[str, Any] = {
        "algorithm": run["algorithm"],
        "seed": run["seed"],
        "presets": run["presets"],
        "pareto_size": len(front),
    }
    cost = next(m for m in objectives if m not in ("perplexity", "params"))
    for name, base in baselines.items():
        if "perplexity" not in base or cost not in base:
            continue
        for label, metric in (("ppl_params", "params"), (f"ppl_{cost}", cost)):
            b = np.array([base["perplexity"], base[metric]])
            row[f"{name}:{label}"] = sum(
                dominates(np.array([c.metrics["perplexity"], c.metrics[metric]]), b)
                for c in front
                if "perplexity" in c.metrics and metric in c.metrics
            )
    return row


def shared_frames(reference: SearchLoop, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The "front" and "all" frames from everything the runs of a set evaluated, so every
    run's hypervolume is read in the same frame."""
    everything = [c for run in runs for c in run["loop"].archive.values()]
    obj, vio = reference.matrix(everything)
    best = pareto_front(obj, vio)
    return {
        "front": NormalisationFrame.from_objectives(obj[best], vio[best]),
        "all": NormalisationFrame.from_objectives(obj, vio),
    }


def front_dominates_lfm2(
    runs: list[dict[str, Any]], lfm2: dict[str, float], objectives: list[str]
) -> dict[str, bool] | None:
    """Per preset-seeded run, whether its final front beats `lfm2` on perplexity and host
    decode latency at once (None when the set does not measure latency)."""
    if HOST not in objectives:
        return None
    pair = ("perplexity", HOST)
    return {
        f"{r['algorithm']}:{r['seed']}": any(
            dominates(np.array([c.metrics[m] for m in pair]), np.array([lfm2[m] for m in pair]))
            for c in (r["loop"].archive[h] for h in r["loop"].history[-1].pareto)
            if all(m in c.metrics for m in pair)
        )
        for r in runs
        if r["presets"]
    }


def archives(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run's evaluated candidates, so other frames can be computed from the JSON later."""
    return [
        {
            "algorithm": r["algorithm"],
            "seed": r["seed"],
            "presets": r["presets"],
            "archive": [
                {"generation": c.generation, "origin": c.origin, "metrics": c.metrics}
                for c in sorted(r["loop"].archive.values(), key=lambda c: c.generation)
            ],
        }
        for r in runs
    ]
