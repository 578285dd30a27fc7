"""What every search algorithm implements, and the registry it joins.

An algorithm decides which offspring a generation evaluates, given the ranked parents, the
genomes already seen and everything observed so far; the search loop
(`orchestrator/search/loop.py`) owns the archive, survival and the summaries, and implements
the ask/tell contract (`orchestrator/search/searcher.py`) on top, so every algorithm is
restored from the database the same way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core import Genome, SearchSpace
from core.job_spec import EvolutionSpec
from core.metrics import Constraint

from ..evolution import Child
from ..selection import Ranking
from ..surrogate import Observation


@dataclass
class Brood:
    """One generation's offspring, and how they were picked (stored with the generation)."""

    children: list[Child]
    info: dict[str, Any] = field(default_factory=dict)


class Algorithm:
    """Breeding policy of one named algorithm; subclasses override `offspring`."""

    name: ClassVar[str]
    uniform: ClassVar[bool] = False  # samples the space instead of varying parents
    keeps_everything: ClassVar[bool] = False  # no survival selection (random search)
    learns: ClassVar[bool] = False  # reads the observations (the archive and other jobs')

    def __init__(self, objectives: list[str], constraints: list[Constraint], params: EvolutionSpec):
        self.objectives, self.constraints, self.params = objectives, constraints, params

    def offspring(
        self,
        parents: list[Genome],
        ranking: Ranking,
        space: SearchSpace,
        rng: random.Random,
        seen: set[str],
        count: int,
        observations: list[Observation],
        generation: int,
    ) -> Brood:
        raise NotImplementedError


_REGISTRY: dict[str, type[Algorithm]] = {}


def register(cls: type[Algorithm]) -> type[Algorithm]:
    if cls.name in _REGISTRY:
        raise ValueError(f"search algorithm {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Algorithm]]:
    """Every registered algorithm by name (the package's modules imported)."""
    return dict(_REGISTRY)


def make(
    name: str, objectives: list[str], constraints: list[Constraint], params: EvolutionSpec
) -> Algorithm:
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown search algorithm {name!r}; registered: {sorted(_REGISTRY)}"
        ) from None
    return cls(objectives, constraints, params)
