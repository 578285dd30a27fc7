"""Pre-screening without a model: the surrogate's pool, picked by exact static objectives.

The baseline that separates what breeding a larger pool and reading its free static
objectives gives from what the Gaussian process gives: the same pool as `surrogate`, its
statically feasible members ranked by non-dominated sorting and crowding on the static
objectives alone (params, cache_bytes@L, flops@L...), the best `count` evaluated. With no
static objective in the job it is plain NSGA-II.
"""

from __future__ import annotations

import numpy as np

from core.metrics import static_metrics

from ..selection import rank_population
from ..static_screen import is_static, statically_feasible
from .base import Algorithm, Brood, register
from .pool import bred_pool, nsga2_brood, walked


@register
class Prescreen(Algorithm):
    name = "prescreen"

    def offspring(self, parents, ranking, space, rng, seen, count, observations, generation):
        pool = bred_pool(self, parents, ranking, space, rng, seen, count)
        static = [m for m in self.objectives if is_static(m)]
        allowed = statically_feasible([c.genome for c in pool], self.constraints)
        info = {
            "pool": len(pool),
            "static_front": walked(pool),
            "statically_feasible": len(allowed),
            "fallback": False,
        }
        if not static or not allowed:
            return Brood(nsga2_brood(pool, self.constraints, count), {**info, "fallback": True})
        values = np.array(
            [
                [static_metrics(pool[i].genome.to_json(), static)[m] for m in static]
                for i in allowed
            ],
            dtype=float,
        )
        order = rank_population(values, np.zeros(len(allowed))).order()
        return Brood([pool[allowed[i]] for i in order[:count]], info)
