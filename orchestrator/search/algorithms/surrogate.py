"""Surrogate-assisted NSGA-II: the bred pool, picked by predicted hypervolume improvement.

The model and the acquisition are `orchestrator/search/surrogate.py`; below its minimum of
observations the generation is plain NSGA-II's brood (`fallback` in the generation's info).
"""

from __future__ import annotations

from ..surrogate import SurrogateSelector
from .base import Algorithm, Brood, register
from .pool import bred_pool, nsga2_brood, walked


@register
class Surrogate(Algorithm):
    name = "surrogate"
    learns = True

    def __init__(self, objectives, constraints, params):
        super().__init__(objectives, constraints, params)
        self.selector = SurrogateSelector(
            objectives,
            constraints,
            min_points=params.surrogate_min_points,
            seed=params.seed,
            latency_prior=params.latency_prior,
        )

    def offspring(self, parents, ranking, space, rng, seen, count, observations, generation):
        pool = bred_pool(self, parents, ranking, space, rng, seen, count)
        selection = self.selector.select([c.genome for c in pool], count, observations, generation)
        if selection is None:
            children = nsga2_brood(pool, self.constraints, count)
            return Brood(
                children, {"pool": len(pool), "static_front": walked(pool), "fallback": True}
            )
        picked = [pool[i] for i in selection.picked]
        for child, predicted in zip(picked, selection.predictions):
            child.predictions = predicted
        return Brood(picked, {**selection.info, "static_front": walked(pool), "fallback": False})
