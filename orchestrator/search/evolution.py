"""Breeding: the initial population and each generation's offspring, deduplicated by hash.

Defaults follow STAR (population 16, 18 generations, 10% mutation, elitism 2, binary
tournaments, two-point crossover on the backbone). Each generation breeds
`population - elitism` new genomes; survival (selection.survive) then keeps `population`
of parents + offspring, the `elitism` best parents always among them. No genome is bred
twice in a job: a child whose hash was already seen is mutated again, and after a few tries
replaced by a fresh random sample.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from core import PRESETS, Genome, SearchSpace, crossover, mutate, preset, repair, sample
from core.job_spec import EvolutionSpec

from .selection import Ranking, tournament

MAX_RETRIES = 20


@dataclass
class Child:
    genome: Genome
    parents: list[str] = field(default_factory=list)  # parent genome hashes
    origin: str = "random"  # preset:<name>, random, crossover, mutation
    # What the surrogate predicted when it picked this child: metric -> {"mean", "log_std"}
    predictions: dict[str, dict[str, float]] = field(default_factory=dict)


def preset_seeds(space: SearchSpace) -> list[Child]:
    """Every preset moved into the search space (repair keeps the layout where it can)."""
    children = []
    for name in PRESETS:
        genome = repair(preset(name, vocab=space.vocab_size), space)
        children.append(Child(genome, origin=f"preset:{name}"))
    return children


class SpaceExhausted(RuntimeError):
    """No unseen genome is left to breed; `children` holds what was bred before."""

    def __init__(self, message: str, children: list[Child] | None = None):
        super().__init__(message)
        self.children = children or []


def _fresh(space: SearchSpace, rng: random.Random, seen: set[str]) -> Genome:
    for _ in range(MAX_RETRIES * 5):
        genome = sample(space, rng)
        if genome.hash() not in seen:
            return genome
    raise SpaceExhausted(
        f"the search space seems exhausted: no unseen genome after {MAX_RETRIES * 5} samples"
    )


def fresh_children(
    space: SearchSpace, rng: random.Random, seen: set[str], count: int
) -> list[Child]:
    """`count` unseen uniform samples (random search's offspring)."""
    out = []
    for _ in range(count):
        genome = _fresh(space, rng, seen)
        seen.add(genome.hash())
        out.append(Child(genome))
    return out


def initial_population(
    space: SearchSpace, params: EvolutionSpec, rng: random.Random, seen: set[str], presets: bool
) -> list[Child]:
    """The presets (when `presets`) then uniform samples, `params.population` in all."""
    children: list[Child] = []
    if presets:
        for child in preset_seeds(space):
            if len(children) < params.population and child.genome.hash() not in seen:
                seen.add(child.genome.hash())
                children.append(child)
    while len(children) < params.population:
        genome = _fresh(space, rng, seen)
        seen.add(genome.hash())
        children.append(Child(genome))
    return children


def breed(
    parents: list[Genome],
    ranking: Ranking,
    space: SearchSpace,
    params: EvolutionSpec,
    rng: random.Random,
    seen: set[str],
    count: int,
    allow_fewer: bool = False,
) -> list[Child]:
    """`count` new, unseen children of `parents` (ranked by `ranking`). The first n children
    do not depend on `count`, so a larger pool starts with what a smaller one holds. With
    `allow_fewer`, a search space that runs out of unseen genomes ends the pool early."""
    try:
        return _breed(parents, ranking, space, params, rng, seen, count)
    except SpaceExhausted as exc:
        if allow_fewer and exc.children:
            return exc.children
        raise


def _breed(
    parents: list[Genome],
    ranking: Ranking,
    space: SearchSpace,
    params: EvolutionSpec,
    rng: random.Random,
    seen: set[str],
    count: int,
) -> list[Child]:
    children: list[Child] = []
    try:
        while len(children) < count:
            a = parents[tournament(ranking, rng, params.tournament_size)]
            b = parents[tournament(ranking, rng, params.tournament_size)]
            if rng.random() < params.crossover_rate:
                candidates = list(crossover(a, b, space, rng))
                origin, lineage = "crossover", [a.hash(), b.hash()]
            else:
                candidates = [a.copy()]
                origin, lineage = "mutation", [a.hash()]
            for genome in candidates:
                if len(children) >= count:
                    break
                genome = mutate(genome, space, rng, params.mutation_rate)
                tries = 0
                while genome.hash() in seen and tries < MAX_RETRIES:
                    genome = mutate(genome, space, rng, max(params.mutation_rate, 0.3))
                    tries += 1
                if genome.hash() in seen:  # no unseen variation: a fresh sample instead
                    children.append(Child(_fresh(space, rng, seen), [], "random"))
                else:
                    children.append(Child(genome, lineage, origin))
                seen.add(children[-1].genome.hash())
    except SpaceExhausted as exc:
        raise SpaceExhausted(str(exc), children) from None
    return children
