"""The bred pool that pre-screening algorithms pick from (`prescreen`, `surrogate`).

Both breed `pool_factor` times the offspring they evaluate with NSGA-II's variation and drop
those that break a constraint on an exact static metric (free to know, so never worth an
evaluation). Picking the first `count` of the pool is exactly plain NSGA-II's brood, which
is what either falls back to.
"""

from __future__ import annotations

import random

from core import Genome, SearchSpace
from core.job_spec import EvolutionSpec
from core.metrics import Constraint

from ..evolution import Child, breed
from ..selection import Ranking
from ..static_screen import statically_feasible


def bred_pool(
    parents: list[Genome],
    ranking: Ranking,
    space: SearchSpace,
    params: EvolutionSpec,
    rng: random.Random,
    seen: set[str],
    count: int,
) -> list[Child]:
    return breed(
        parents, ranking, space, params, rng, seen, count * params.pool_factor, allow_fewer=True
    )


def nsga2_brood(pool: list[Child], constraints: list[Constraint], count: int) -> list[Child]:
    """Plain NSGA-II's brood (the pool's first offspring) without static violators: fewer
    children rather than a known violator (violators only when the pool holds nothing else)."""
    feasible = set(statically_feasible([c.genome for c in pool], constraints))
    ordered = [c for i, c in enumerate(pool) if i in feasible] or pool
    return ordered[:count]
