"""A walk along the front of the exact static objectives, to widen the pool for free.

NSGA-II's variation moves a step or two from the current parents, so the ends of the front
that the static objectives alone decide (the smallest model, the one with the least decode
cache) are reached only after many generations, if at all: in the search benchmark the
runs that missed the smallest genome of the space lost most of their hypervolume there.
The static objectives cost microseconds, not a training run, so before a pre-screening
algorithm picks, the pool's static front is walked: its members are mutated for a few
rounds, and the non-dominated set on the static objectives (and constraints) alone is kept
each round. What the walk ends with and the pool lacks joins the pool (origin
`static_front`); the algorithm still decides whether any of it is worth an evaluation (the
surrogate by its predicted hypervolume improvement, which weighs the predicted quality).

Deterministic for a given rng; genomes already seen are never offered.
"""

from __future__ import annotations

import random

import numpy as np

from core import Genome, SearchSpace, mutate
from core.metrics import Constraint, static_metrics

from .evolution import Child
from .selection import rank_population
from .static_screen import is_static, statically_feasible

ORIGIN = "static_front"
WALK_MUTATION_RATE = 0.2  # per gene: a few genes per step
STEPS_PER_MEMBER = 2  # mutations tried from each front member per round


def _values(genomes: list[Genome], static: list[str]) -> np.ndarray:
    return np.array(
        [[static_metrics(g.to_json(), static)[m] for m in static] for g in genomes], dtype=float
    )


def _front(genomes: list[Genome], static: list[str], keep: int) -> list[Genome]:
    """The `keep` best of `genomes` by non-dominated rank then crowding on `static`."""
    order = rank_population(_values(genomes, static), np.zeros(len(genomes))).order()
    return [genomes[i] for i in order[:keep]]


def walk_static_front(
    pool: list[Child],
    objectives: list[str],
    constraints: list[Constraint],
    space: SearchSpace,
    rng: random.Random,
    seen: set[str],
    rounds: int,
    keep: int,
) -> list[Child]:
    """Up to `keep` unseen genomes on the static front reached by `rounds` rounds of mutation
    from the pool's static front; [] when the job has no static objective or `rounds` is 0.
    Their hashes are added to `seen` (like every bred child)."""
    static = [m for m in objectives if is_static(m)]
    if not static or rounds <= 0 or keep <= 0 or not pool:
        return []
    by_hash = {c.genome.hash(): c.genome for c in pool}
    genomes = list(by_hash.values())
    members = [genomes[i] for i in statically_feasible(genomes, constraints)]
    if not members:
        return []
    front = _front(members, static, keep)
    found: dict[str, Genome] = {}
    for _ in range(rounds):
        steps = []
        for genome in front:
            for _ in range(STEPS_PER_MEMBER):
                child = mutate(genome, space, rng, WALK_MUTATION_RATE)
                h = child.hash()
                if h in seen or h in by_hash or h in found:
                    continue
                found[h] = child
                steps.append(child)
        ok = statically_feasible(steps, constraints)
        candidates = front + [steps[i] for i in ok]
        front = _front(candidates, static, keep)
    new = [g for g in front if g.hash() in found]
    for g in new:
        seen.add(g.hash())
    return [Child(g, [], ORIGIN) for g in new]
