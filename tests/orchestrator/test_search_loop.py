"""The search loop over generations, on exact static objectives (no training needed)."""

from __future__ import annotations

import math

import pytest

from core import SearchSpace
from core.job_spec import EvolutionSpec
from core.metrics import Constraint, fitness, parse_metric, static_metrics
from orchestrator.search.loop import SearchLoop

SPACE = SearchSpace(widths=[32, 48, 64, 96, 128], depth_min=2, depth_max=12, vocab_size=512)
OBJECTIVES = ["params", "cache_bytes@1024"]


def static_evaluate(candidates):
    for c in candidates:
        c.metrics = static_metrics(c.genome.to_json(), OBJECTIVES)


def run(algorithm: str, seed: int = 0, generations: int = 6, constraints=None) -> SearchLoop:
    loop = SearchLoop(
        SPACE,
        EvolutionSpec(algorithm=algorithm, population=10, generations=generations, seed=seed),
        OBJECTIVES,
        constraints,
    )
    loop.run(static_evaluate)
    return loop


def test_budget_dedup_and_monotone_hypervolume():
    loop = run("nsga2")
    assert [h.evaluations for h in loop.history] == [10 + 8 * g for g in range(6)]
    assert len(loop.archive) == 10 + 8 * 5  # nothing evaluated twice
    hv = [h.hypervolume for h in loop.history]
    assert all(b >= a for a, b in zip(hv, hv[1:])) and hv[-1] > hv[0]
    assert all(len(h.population) == 10 for h in loop.history)


def test_random_search_spends_the_same_budget():
    nsga, rand = run("nsga2"), run("random")
    assert nsga.history[-1].evaluations == rand.history[-1].evaluations


def test_breeding_is_reproducible_for_resume():
    a, b = run("nsga2", seed=3, generations=3), run("nsga2", seed=3, generations=3)
    assert list(a.archive) == list(b.archive)
    # Breeding the next generation twice from the same state gives the same children.
    first = [c.genome.hash() for c in a.children_for(3)]
    second = [c.genome.hash() for c in a.children_for(3)]
    assert first == second


def test_constraints_keep_the_population_feasible_when_possible():
    bound = Constraint("params", "<=", 300_000)
    loop = run("nsga2", constraints=[bound], generations=5)
    feasible = [h for h in loop.population if loop.archive[h].metrics["params"] <= 300_000]
    assert len(feasible) == len(loop.population)
    for h in loop.history[-1].pareto:
        assert loop.archive[h].metrics["params"] <= 300_000


def test_elites_survive():
    loop = run("nsga2", generations=4)
    best_params = min(loop.archive.values(), key=lambda c: c.metrics["params"]).hash
    assert best_params in loop.population


@pytest.mark.parametrize(
    "text,expected",
    [
        ("params", ("params", None, None)),
        ("cache_bytes@1024", ("cache_bytes", 1024, None)),
        ("decode_ms@512[SM-S928B]", ("decode_ms", 512, "SM-S928B")),
        ("peak_mem_mb[host]", ("peak_mem_mb", None, "host")),
    ],
)
def test_metric_grammar(text, expected):
    metric = parse_metric(text)
    assert (metric.name, metric.length, metric.device) == expected
    assert str(metric) == text


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("latency", "unknown metric"),
        ("cache_bytes", "needs a positive length"),
        ("decode_ms@128", "needs a device class"),
        ("params@5", "takes no length"),
        ("perplexity[host]", "takes no device"),
    ],
)
def test_metric_grammar_errors(text, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[")):
        parse_metric(text)


def test_missing_metrics_are_the_worst_fitness():
    vector, violation = fitness({"params": 5.0}, ["params", "perplexity"], [])
    assert violation == math.inf and vector[0] == 5.0 and vector[1] > 1e300
