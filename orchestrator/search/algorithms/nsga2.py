"""NSGA-II: binary tournaments on rank and crowding, crossover and mutation (STAR's loop)."""

from __future__ import annotations

from ..evolution import breed
from .base import Algorithm, Brood, register


@register
class NSGA2(Algorithm):
    name = "nsga2"

    def offspring(self, parents, ranking, space, rng, seen, count, observations, generation):
        return Brood(breed(parents, ranking, space, self.params, rng, seen, count))
