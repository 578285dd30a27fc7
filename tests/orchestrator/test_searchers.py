"""The searcher contract, for every registered algorithm, and static values in the models.

Every algorithm of the registry goes through ask/tell (SearchLoop): its generations are
bred, told and completed; a second loop restored from what the first told (as the driver
restores from the database) asks for exactly the next proposals the first asks for.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from core import SearchSpace
from core.job_spec import EvolutionSpec
from core.metrics import static_metrics
from core.search_algorithms import ALGORITHMS
from orchestrator.search.algorithms import registered
from orchestrator.search.loop import Individual, SearchLoop
from orchestrator.search.searcher import Searcher
from orchestrator.search.static_screen import static_scale

SPACE = SearchSpace(widths=[32, 48, 64], depth_min=2, depth_max=6, vocab_size=512)
OBJECTIVES = ["perplexity", "params", "cache_bytes@256"]


def measured(genome_hash: str, genome) -> dict:
    """Deterministic made-up perplexity, exact static costs."""
    metrics = static_metrics(genome.to_json(), OBJECTIVES[1:])
    metrics["perplexity"] = 5 + int(genome_hash[:6], 16) / 0xFFFFFF * 10
    return metrics


def spec(algorithm: str) -> EvolutionSpec:
    return EvolutionSpec(
        algorithm=algorithm, population=6, generations=4, seed=7, pool_factor=3,
        surrogate_min_points=6,
    )  # fmt: skip


def run(loop: SearchLoop, generations: range) -> None:
    for g in generations:
        for child in loop.ask(g):
            loop.add([child], g)
            loop.tell(child.genome.hash(), measured(child.genome.hash(), child.genome))
        loop.complete(g, [c.hash for c in loop.archive.values() if c.generation == g])


def test_the_registry_is_the_job_specs_list():
    assert sorted(registered()) == sorted(ALGORITHMS)


@pytest.mark.parametrize("algorithm", sorted(registered()))
def test_every_algorithm_asks_tells_and_restores_to_the_same_next_proposals(algorithm):
    first = SearchLoop(SPACE, spec(algorithm), OBJECTIVES)
    assert isinstance(first, Searcher)
    run(first, range(3))
    assert [h.evaluations for h in first.history] == [6, 10, 14]  # 6, then 4 per generation
    restored = SearchLoop(SPACE, spec(algorithm), OBJECTIVES)
    for h, c in first.archive.items():  # what the database holds after a crash
        restored.archive[h] = Individual(c.genome, c.generation, c.parents, c.origin)
        restored.tell(h, c.metrics, c.fidelity)
    restored.history, restored.population = list(first.history), list(first.population)
    restored.frame = first.frame
    assert [c.genome.hash() for c in restored.ask(3)] == [c.genome.hash() for c in first.ask(3)]


def test_a_told_fidelity_is_kept_and_a_failure_is_the_worst_fitness():
    loop = SearchLoop(SPACE, spec("nsga2"), OBJECTIVES)
    children = loop.ask(0)
    loop.add(children, 0)
    first, second = (c.genome.hash() for c in children[:2])
    loop.tell(first, measured(first, children[0].genome), fidelity=3000)
    loop.tell(second, None)
    assert loop.archive[first].fidelity == 3000
    values, violation = loop.matrix([loop.archive[second]])
    assert math.isinf(violation[0])


def test_zero_static_values_sit_next_to_small_ones_not_orders_of_magnitude_below():
    """A zero-cache genome is 0 on the scale, the smallest non-zero value close above it,
    and ratios between large values stay ratios (log1p over 1 % of the median)."""
    values = np.array([0.0, 1e3, 2e4, 1e5, 4e5, 1e6])
    scaled = static_scale(values)
    assert scaled[0] == 0.0
    assert 0 < scaled[1] < 0.2 * (scaled[-1] - scaled[0])  # not 27 decades below
    assert np.all(np.diff(scaled) > 0)  # order kept
    unit = 0.01 * np.median(values[values > 0])
    assert scaled[-1] - scaled[-2] == pytest.approx(np.log1p(1e6 / unit) - np.log1p(4e5 / unit))
    assert np.all(static_scale(np.zeros(3)) == 0)
