"""NSGA-II selection with constraint domination, on pymoo's sorting and metrics.

Objectives are minimised. Constraint domination (Deb 2000): a feasible candidate beats an
infeasible one; two infeasible candidates compare by total violation; feasible ones by
Pareto rank, then crowding distance (larger is better). A candidate whose evaluation failed
gets the worst fitness: it is infeasible with an infinite violation.

Hypervolume is computed on objectives normalised by a fixed frame (the ideal and nadir of
the first evaluated generation), so values are comparable across generations and against
random search run with the same frame.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

FAILED_VIOLATION = float("inf")


@dataclass
class Ranking:
    rank: np.ndarray  # 0 = first front; infeasible candidates rank after every feasible one
    crowding: np.ndarray  # larger = more isolated; inf at front extremes
    violation: np.ndarray

    def key(self, i: int) -> tuple[float, float, float]:
        """Sort key: smaller is better."""
        return (self.violation[i] > 0, self.violation[i], self.rank[i], -self.crowding[i])

    def order(self) -> list[int]:
        return sorted(range(len(self.rank)), key=self.key)


def rank_population(objectives: np.ndarray, violation: np.ndarray) -> Ranking:
    """objectives (N, M), violation (N,) >= 0 (inf for failed evaluations)."""
    n = len(objectives)
    rank = np.zeros(n, dtype=int)
    crowding = np.zeros(n)
    feasible = np.nonzero(violation <= 0)[0]
    if len(feasible):
        fronts = NonDominatedSorting().do(objectives[feasible])
        for r, front in enumerate(fronts):
            members = feasible[front]
            rank[members] = r
            crowding[members] = (
                calc_crowding_distance(objectives[members]) if len(members) > 2 else np.inf
            )
        next_rank = len(fronts)
    else:
        next_rank = 0
    infeasible = np.nonzero(violation > 0)[0]
    for offset, i in enumerate(sorted(infeasible, key=lambda i: violation[i])):
        rank[i] = next_rank + offset
    return Ranking(rank, crowding, violation.astype(float))


def survive(
    objectives: np.ndarray, violation: np.ndarray, n: int, protected: list[int] = ()
) -> list[int]:
    """Indices of the `n` survivors: `protected` ones first (elitism), then the best by
    constraint domination, rank and crowding."""
    ranking = rank_population(objectives, violation)
    chosen = list(dict.fromkeys(protected))[:n]
    for i in ranking.order():
        if len(chosen) >= n:
            break
        if i not in chosen:
            chosen.append(i)
    return chosen


def tournament(ranking: Ranking, rng: random.Random, size: int = 2) -> int:
    """The best of `size` distinct random candidates."""
    contestants = rng.sample(range(len(ranking.rank)), min(size, len(ranking.rank)))
    return min(contestants, key=ranking.key)


def pareto_front(objectives: np.ndarray, violation: np.ndarray) -> list[int]:
    """Indices of the feasible non-dominated candidates."""
    feasible = np.nonzero(violation <= 0)[0]
    if not len(feasible):
        return []
    front = NonDominatedSorting().do(objectives[feasible], only_non_dominated_front=True)
    return sorted(int(i) for i in feasible[front])


@dataclass
class NormalisationFrame:
    """Fixed per job: ideal and nadir of the first evaluated generation."""

    ideal: list[float]
    nadir: list[float]

    @classmethod
    def from_objectives(cls, objectives: np.ndarray, violation: np.ndarray) -> "NormalisationFrame":
        usable = objectives[np.isfinite(violation)]
        usable = usable[np.all(np.isfinite(usable), axis=1)]
        if not len(usable):
            raise ValueError("no successful evaluation to set the hypervolume frame from")
        ideal, nadir = usable.min(axis=0), usable.max(axis=0)
        nadir = np.where(nadir > ideal, nadir, ideal + 1.0)  # avoid a zero-width axis
        return cls(ideal.tolist(), nadir.tolist())

    def normalise(self, objectives: np.ndarray) -> np.ndarray:
        ideal, nadir = np.asarray(self.ideal), np.asarray(self.nadir)
        return (objectives - ideal) / (nadir - ideal)


REFERENCE = 1.1  # reference point per normalised objective, just past the first nadir


def hypervolume(objectives: np.ndarray, violation: np.ndarray, frame: NormalisationFrame) -> float:
    """Hypervolume of the feasible set in the normalised frame, reference point 1.1."""
    front = pareto_front(objectives, violation)
    if not front:
        return 0.0
    points = frame.normalise(objectives[front])
    ref = np.full(points.shape[1], REFERENCE)
    return float(HV(ref_point=ref)(points))
