"""The walk along the exact static objectives' front that widens the pre-screening pool
(orchestrator/search/static_front.py).

The space is the search benchmark's (bench/search.py): the benchmark's runs lost most of
their hypervolume by missing its smallest genomes, which is what the walk is for.
"""

from __future__ import annotations

import random

import numpy as np

from core import SearchSpace
from core.job_spec import EvolutionSpec
from core.metrics import Constraint, static_metrics
from orchestrator.search.algorithms.base import make
from orchestrator.search.algorithms.pool import bred_pool
from orchestrator.search.evolution import breed, initial_population
from orchestrator.search.selection import rank_population
from orchestrator.search.static_front import ORIGIN, walk_static_front

SPACE = SearchSpace(
    classes=["attention", "hyena", "hyena_x", "hyena_y", "gla", "swiglu"],
    widths=[32, 48, 64],
    depth_min=2,
    depth_max=8,
    vocab_size=257,
)
OBJECTIVES = ["perplexity", "params", "cache_bytes@1024"]
STATIC = OBJECTIVES[1:]


def pool_of(seed: int):
    """A first generation's bred pool (20 x 6 offspring), as prescreen and surrogate breed."""
    rng, seen = random.Random(seed), set()
    spec = EvolutionSpec(population=8, seed=seed)
    parents = [c.genome for c in initial_population(SPACE, spec, rng, seen, presets=False)]
    ranking = rank_population(np.random.default_rng(seed).random((8, 2)), np.zeros(8))
    return breed(parents, ranking, SPACE, spec, rng, seen, 120, allow_fewer=True), seen


def costs(children) -> np.ndarray:
    return np.array([[static_metrics(c.genome.to_json(), STATIC)[m] for m in STATIC]
                     for c in children])  # fmt: skip


def test_the_walk_offers_unseen_genomes_that_no_pool_member_dominates_on_static_costs():
    pool, seen = pool_of(0)
    before = set(seen)
    walked = walk_static_front(pool, OBJECTIVES, [], SPACE, random.Random(0), seen, 30, 12)
    assert 0 < len(walked) <= 12
    assert all(c.origin == ORIGIN for c in walked)
    hashes = [c.genome.hash() for c in walked]
    assert len(set(hashes)) == len(hashes) and not set(hashes) & before
    assert set(hashes) <= seen  # never bred again in the job
    ours, theirs = costs(walked), costs(pool)
    for a in ours:
        assert not np.any(np.all(theirs <= a, axis=1) & np.any(theirs < a, axis=1))


def test_the_walk_reaches_smaller_models_than_breeding_alone():
    """Over ten first generations, the walk finds a genome with fewer parameters than the
    pool's smallest in most of them (the pool's minimum is what NSGA-II's variation gives)."""
    smaller = 0
    for seed in range(10):
        pool, seen = pool_of(seed)
        walked = walk_static_front(pool, OBJECTIVES, [], SPACE, random.Random(seed), seen, 30, 12)
        smaller += bool(walked) and costs(walked)[:, 0].min() < costs(pool)[:, 0].min()
    assert smaller >= 8


def test_constraints_hold_and_the_walk_is_deterministic():
    pool, seen = pool_of(1)
    limit = float(np.median(costs(pool)[:, 1]))
    constraints = [Constraint("cache_bytes@1024", "<=", limit)]
    first = walk_static_front(pool, OBJECTIVES, constraints, SPACE, random.Random(3), set(seen),
                              30, 12)  # fmt: skip
    again = walk_static_front(pool, OBJECTIVES, constraints, SPACE, random.Random(3), set(seen),
                              30, 12)  # fmt: skip
    assert [c.genome.hash() for c in first] == [c.genome.hash() for c in again]
    assert first and costs(first)[:, 1].max() <= limit


def test_no_static_objective_or_no_rounds_means_no_walk():
    pool, seen = pool_of(2)
    assert walk_static_front(pool, ["perplexity"], [], SPACE, random.Random(0), seen, 30, 12) == []
    assert walk_static_front(pool, OBJECTIVES, [], SPACE, random.Random(0), seen, 0, 12) == []


def test_the_pool_starts_with_nsga2s_brood_and_ends_with_the_walk():
    """The walk only appends: the pool's first members (plain NSGA-II's brood, the fallback)
    are the same with the walk on or off."""
    pools = {}
    for rounds in (0, 30):
        rng, seen = random.Random(4), set()
        spec = EvolutionSpec(population=8, seed=4, static_walk_rounds=rounds)
        parents = [c.genome for c in initial_population(SPACE, spec, rng, seen, presets=False)]
        ranking = rank_population(np.random.default_rng(4).random((8, 2)), np.zeros(8))
        algorithm = make("prescreen", OBJECTIVES, [], spec)
        pools[rounds] = bred_pool(algorithm, parents, ranking, SPACE, rng, seen, 6)
    plain, walked = pools[0], pools[30]
    assert [c.genome.hash() for c in walked[: len(plain)]] == [c.genome.hash() for c in plain]
    assert len(walked) > len(plain) and {c.origin for c in walked[len(plain) :]} == {ORIGIN}
