"""Multi-fidelity training: successive-halving rungs over the training token budget.

With `training.fidelities: [b0, b1, ..., tokens]`, every candidate of a generation trains on
b0 tokens first; when the whole generation has its rung-r results, the best
ceil(n / reduction_factor) of those that reached rung r (NSGA-II order: constraint
domination, non-dominated rank, crowding, over every objective of the job with quality read
at rung r) train again on b(r+1) tokens, and so on (Hyperband's successive halving, run
synchronously per generation so that a resumed job decides exactly as the first run did).
A candidate's quality objective is the one read at the highest rung it reached, so the
search ranks a candidate that was never promoted by its cheaper, pessimistic reading.
Training restarts at each rung (a cosine schedule fitted to the rung's own budget), as in
the original successive halving; each rung's result is cached under its own training key.

How well the rungs agree is reported per job (`rank_agreement`: Kendall tau between
consecutive rungs' perplexities of the promoted candidates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.metrics import Constraint, fitness
from core.prediction_accuracy import accuracy
from core.training import TrainConfig

from .selection import rank_population

# The observation key of the training budget a quality was read at, as a fraction of the
# job's highest budget (1: the full budget; absent: the full budget too).
FIDELITY = "fidelity_fraction"


@dataclass(frozen=True)
class Rungs:
    budgets: tuple[int, ...]  # training tokens per rung, rising; the last is the job's
    reduction_factor: int = 3

    @classmethod
    def of(cls, training: TrainConfig) -> "Rungs":
        """The job's rungs; a job without `fidelities` has one rung, its full budget."""
        budgets = tuple(training.fidelities or [training.tokens])
        return cls(budgets, training.reduction_factor)

    @property
    def top(self) -> int:
        return len(self.budgets) - 1

    def keep(self, n: int) -> int:
        """How many of `n` candidates at a rung move up (at least one)."""
        return max(1, math.ceil(n / self.reduction_factor)) if n else 0


def promotions(
    results: dict[str, dict[str, Any]],
    objectives: list[str],
    constraints: list[Constraint],
    keep: int,
) -> list[str]:
    """The `keep` best of `results` (genome hash -> metrics with quality at this rung), in
    NSGA-II order; ties broken by the order of `results` (the generation's order)."""
    hashes = list(results)
    if not hashes or keep <= 0:
        return []
    rows, violations = zip(*(fitness(results[h], objectives, constraints) for h in hashes))
    order = rank_population(
        np.array(rows, dtype=float).reshape(len(hashes), len(objectives)),
        np.array(violations, dtype=float),
    ).order()
    return [hashes[i] for i in order[:keep]]


def rank_agreement(
    lower: dict[str, float | None], upper: dict[str, float | None]
) -> dict[str, float | int | None]:
    """Kendall tau (and the rest of `core.prediction_accuracy.accuracy`) between two rungs'
    quality over the candidates that have both: how well the cheap rung predicts the next."""
    return accuracy(
        [(lower[h], upper[h]) for h in lower if lower[h] is not None and upper.get(h) is not None]
    )
