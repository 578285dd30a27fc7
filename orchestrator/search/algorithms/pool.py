"""The bred pool that pre-screening algorithms pick from (`prescreen`, `surrogate`).

Both breed `pool_factor` times the offspring they evaluate with NSGA-II's variation, add
what a walk along the front of the exact static objectives reaches from it
(orchestrator/search/static_front.py, `static_walk_rounds`), and drop those that break a
constraint on an exact static metric (free to know, so never worth an evaluation). Picking
the first `count` of the pool is exactly plain NSGA-II's brood (the walk's genomes come
last), which is what either falls back to.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from core import Genome, SearchSpace
from core.metrics import Constraint

from ..evolution import Child, breed
from ..selection import Ranking
from ..static_front import ORIGIN as STATIC_FRONT
from ..static_front import walk_static_front
from ..static_screen import statically_feasible

if TYPE_CHECKING:
    from .base import Algorithm

WALK_KEEP_PER_OFFSPRING = 2  # the walk offers up to 2 genomes per offspring evaluated


def bred_pool(
    algorithm: "Algorithm",
    parents: list[Genome],
    ranking: Ranking,
    space: SearchSpace,
    rng: random.Random,
    seen: set[str],
    count: int,
) -> list[Child]:
    """`algorithm`'s pool for `count` offspring: NSGA-II's brood of `pool_factor` x `count`,
    then the static-front walk's genomes (its objectives, constraints and rounds)."""
    params = algorithm.params
    pool = breed(
        parents, ranking, space, params, rng, seen, count * params.pool_factor, allow_fewer=True
    )
    walk = walk_static_front(
        pool,
        algorithm.objectives,
        algorithm.constraints,
        space,
        rng,
        seen,
        params.static_walk_rounds,
        WALK_KEEP_PER_OFFSPRING * count,
    )
    return pool + walk


def walked(pool: list[Child]) -> int:
    """How many of the pool the static-front walk added (stored in the generation's info)."""
    return sum(c.origin == STATIC_FRONT for c in pool)


def nsga2_brood(pool: list[Child], constraints: list[Constraint], count: int) -> list[Child]:
    """Plain NSGA-II's brood (the pool's first offspring) without static violators: fewer
    children rather than a known violator (violators only when the pool holds nothing else)."""
    feasible = set(statically_feasible([c.genome for c in pool], constraints))
    ordered = [c for i, c in enumerate(pool) if i in feasible] or pool
    return ordered[:count]
