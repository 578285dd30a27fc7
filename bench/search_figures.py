"""The search benchmark's figures, in the frame fixed before any run was read (bench/README.md,
"Search"), computed from the stored archives alone so anyone can
recompute them from `bench/results/search.json`.

Frame, per objective set: ideal = the per-objective best value of every evaluation of every
run of the set, reference = 1.1 x the per-objective worst (raw units); hypervolume of a set of
points = the hypervolume of their normalised values ((x - ideal) / (reference - ideal)) against
the unit reference point, so the box is 1. Regret of a run = hypervolume of the best-known front
(every evaluation of every run of the set) minus the run's final hypervolume.

Figures per algorithm, in this order: (1) regret ratio to random's = mean regret / random's
mean regret (per-seed paired ratios and differences beside it); (2) evaluations to reach
random's final mean hypervolume, and (3) the compute (`compute_s`, cumulative over the run's
evaluations) to reach it, also as a ratio to random's mean total compute. Means with sample
spread (ddof = 1) over seeds; a seed that never reaches the level counts as not reaching it
(reported as a count, excluded from the mean).

Targets (issue #24, fixed before the run): the best algorithm (lowest regret ratio) reaches
random's final hypervolume with <= 25 % of random's compute and has a regret ratio <= 0.2;
`surrogate` beats `prescreen` on regret in >= 4 of 5 seeds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pymoo.indicators.hv import HV


def _points(entries: list[dict[str, Any]], objectives: list[str]) -> np.ndarray:
    rows = [
        [e["metrics"][m] for m in objectives]
        for e in entries
        if e.get("metrics") and all(e["metrics"].get(m) is not None for m in objectives)
    ]
    return np.array(rows, dtype=float).reshape(-1, len(objectives))


def fixed_frame(runs: list[dict[str, Any]], objectives: list[str]) -> dict[str, list[float]]:
    everything = _points([e for r in runs for e in r["archive"]], objectives)
    return {"ideal": everything.min(0).tolist(), "reference": (1.1 * everything.max(0)).tolist()}


def hypervolume(points: np.ndarray, frame: dict[str, list[float]]) -> float:
    if len(points) == 0:
        return 0.0
    ideal, reference = np.array(frame["ideal"]), np.array(frame["reference"])
    normalised = (points - ideal) / np.maximum(reference - ideal, 1e-300)
    inside = normalised[(normalised < 1).all(axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(HV(ref_point=np.ones(points.shape[1]))(inside))


def curve(
    run: dict[str, Any], objectives: list[str], frame: dict[str, list[float]]
) -> dict[str, list[float]]:
    """Hypervolume, evaluations and cumulative compute after each generation of a run."""
    entries = sorted(run["archive"], key=lambda e: e["generation"])
    out: dict[str, list[float]] = {"evaluations": [], "compute_s": [], "hypervolume": []}
    for g in sorted({e["generation"] for e in entries}):
        upto = [e for e in entries if e["generation"] <= g]
        out["evaluations"].append(len(upto))
        out["compute_s"].append(float(sum(e.get("compute_s") or 0.0 for e in upto)))
        out["hypervolume"].append(hypervolume(_points(upto, objectives), frame))
    return out


def _spread(values: list[float]) -> dict[str, Any]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return {
        "mean": float(np.mean(finite)) if finite else None,
        "std_ddof1": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
        "per_seed": values,
    }


def _reach(c: dict[str, list[float]], level: float) -> tuple[float | None, float | None]:
    for evaluations, compute, hv in zip(c["evaluations"], c["compute_s"], c["hypervolume"]):
        if hv >= level - 1e-12:
            return evaluations, compute
    return None, None


def figures(runs: list[dict[str, Any]], objectives: list[str]) -> dict[str, Any]:
    """Every figure of the module docstring, per algorithm, seeds paired by seed number."""
    frame = fixed_frame(runs, objectives)
    best = hypervolume(_points([e for r in runs for e in r["archive"]], objectives), frame)
    curves = {(r["algorithm"], r["seed"]): curve(r, objectives, frame) for r in runs}
    algorithms = list(dict.fromkeys(r["algorithm"] for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    regret = {k: best - c["hypervolume"][-1] for k, c in curves.items()}
    random_final = float(np.mean([curves[("random", s)]["hypervolume"][-1] for s in seeds]))
    random_regret = float(np.mean([regret[("random", s)] for s in seeds]))
    random_compute = float(np.mean([curves[("random", s)]["compute_s"][-1] for s in seeds]))
    out: dict[str, Any] = {}
    for a in algorithms:
        reached = [_reach(curves[(a, s)], random_final) for s in seeds]
        mine = [regret[(a, s)] for s in seeds]
        out[a] = {
            "regret_ratio_to_random": float(np.mean(mine)) / random_regret
            if random_regret > 0
            else None,
            "regret": _spread(mine),
            "regret_paired_ratio": [
                regret[(a, s)] / regret[("random", s)] if regret[("random", s)] > 0 else None
                for s in seeds
            ],
            "regret_paired_difference": [regret[(a, s)] - regret[("random", s)] for s in seeds],
            "evaluations_to_reach_random_final": _spread([e for e, _ in reached]),
            "compute_s_to_reach_random_final": _spread([c for _, c in reached]),
            "compute_ratio_to_random_total": _spread(
                [None if c is None else c / random_compute for _, c in reached]
            ),
            "seeds_reaching": sum(e is not None for e, _ in reached),
            "final_hypervolume": _spread([curves[(a, s)]["hypervolume"][-1] for s in seeds]),
            "total_compute_s": _spread([curves[(a, s)]["compute_s"][-1] for s in seeds]),
        }
    return {
        "frame": frame,
        "best_known_hypervolume": best,
        "random_final_hypervolume_mean": random_final,
        "seeds": seeds,
        "algorithms": out,
        "curves": {f"{a}:{s}": c for (a, s), c in curves.items()},
        "targets": targets(out, seeds),
    }


def targets(out: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    ranked = [a for a in out if a != "random" and out[a]["regret_ratio_to_random"] is not None]
    best = min(ranked, key=lambda a: out[a]["regret_ratio_to_random"]) if ranked else None
    result: dict[str, Any] = {"best_algorithm": best}
    if best is not None:
        ratio = out[best]["compute_ratio_to_random_total"]["per_seed"]
        result["best_reaches_with_25pct_compute_every_seed"] = all(
            r is not None and r <= 0.25 for r in ratio
        )
        mean = out[best]["compute_ratio_to_random_total"]["mean"]
        result["best_mean_compute_ratio"] = mean
        result["best_regret_ratio_le_0_2"] = out[best]["regret_ratio_to_random"] <= 0.2
    if "surrogate" in out and "prescreen" in out:
        wins = sum(
            s < p
            for s, p in zip(
                out["surrogate"]["regret"]["per_seed"], out["prescreen"]["regret"]["per_seed"]
            )
        )
        result["surrogate_beats_prescreen_seeds"] = f"{wins} of {len(seeds)}"
        result["surrogate_beats_prescreen_4_of_5"] = wins >= 4
    return result
