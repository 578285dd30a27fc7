"""Random search: fresh uniform samples at the same budget, every one kept (the baseline)."""

from __future__ import annotations

from ..evolution import fresh_children
from .base import Algorithm, Brood, register


@register
class RandomSearch(Algorithm):
    name = "random"
    uniform = True
    keeps_everything = True

    def offspring(self, parents, ranking, space, rng, seen, count, observations, generation):
        return Brood(fresh_children(space, rng, seen, count))
