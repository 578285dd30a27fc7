"""The surrogate selector on synthetic data: it declines below its data threshold, never
picks an offspring whose exact static cost breaks a constraint, predicts what it learned,
and picks the same offspring from the same data."""

from __future__ import annotations

import math
import random

import pytest

from core import SearchSpace, sample
from core.job_spec import EvolutionSpec
from core.metrics import Constraint, static_metrics
from orchestrator.search.loop import SearchLoop
from orchestrator.search.surrogate import SurrogateSelector

SPACE = SearchSpace(widths=[32, 48, 64], depth_min=2, depth_max=8, vocab_size=257)
OBJECTIVES = ["perplexity", "decode_ms@128[host]", "params"]


def truth(genome) -> dict[str, float]:
    """A made-up but learnable world: bigger models are better and slower."""
    params = static_metrics(genome.to_json(), ["params"])["params"]
    return {
        "perplexity": 40.0 / math.log(params),
        "params": params,
        "decode_ms@128[host]": 0.05 * genome.depth + 2e-6 * params,
    }


def genomes(n: int, seed: int, exclude: set[str] = frozenset()):
    rng, out, seen = random.Random(seed), [], set(exclude)
    while len(out) < n:
        g = sample(SPACE, rng)
        if g.hash() not in seen:
            seen.add(g.hash())
            out.append(g)
    return out


@pytest.fixture(scope="module")
def world():
    observed = genomes(24, seed=1)
    pool = genomes(60, seed=2, exclude={g.hash() for g in observed})
    return [(g, truth(g)) for g in observed], pool


def test_below_the_data_threshold_it_declines(world):
    observations, pool = world
    selector = SurrogateSelector(OBJECTIVES, min_points=len(observations) + 1)
    assert selector.select(pool, 4, observations, generation=1) is None
    # a metric nobody measured yet also means no model
    missing = [(g, {"perplexity": m["perplexity"]}) for g, m in observations]
    assert SurrogateSelector(OBJECTIVES, min_points=5).select(pool, 4, missing, 1) is None


def test_it_never_picks_an_offspring_that_breaks_a_static_constraint(world):
    observations, pool = world
    limit = sorted(truth(g)["params"] for g in pool)[len(pool) // 3]
    selector = SurrogateSelector(OBJECTIVES, [Constraint("params", "<=", limit)], min_points=8)
    selection = selector.select(pool, 6, observations, generation=1)
    assert selection is not None and len(selection.picked) == 6
    assert selection.info["statically_feasible"] < len(pool)
    assert all(truth(pool[i])["params"] <= limit for i in selection.picked)
    assert len(set(selection.picked)) == 6


def test_predictions_track_what_it_learned_and_picks_are_repeatable(world):
    observations, pool = world
    first = SurrogateSelector(OBJECTIVES, min_points=8, seed=3).select(pool, 5, observations, 2)
    again = SurrogateSelector(OBJECTIVES, min_points=8, seed=3).select(pool, 5, observations, 2)
    assert first.picked == again.picked and first.predictions == again.predictions
    for metric in ("perplexity", "decode_ms@128[host]"):
        errors = sorted(
            abs(p[metric]["mean"] - truth(pool[i])[metric]) / truth(pool[i])[metric]
            for i, p in zip(first.picked, first.predictions)
        )
        assert errors[len(errors) // 2] < 0.15, (metric, errors)  # median relative error
        assert all(p[metric]["log_std"] >= 0 for p in first.predictions)


def test_the_loop_falls_back_to_plain_nsga2_until_the_models_have_data():
    def evaluate(individuals):
        for c in individuals:
            c.metrics = truth(c.genome)

    spec = {"population": 6, "generations": 3, "seed": 5, "pool_factor": 3}
    plain = SearchLoop(SPACE, EvolutionSpec(**spec, algorithm="nsga2"), OBJECTIVES)
    plain.run(evaluate)
    late = SearchLoop(
        SPACE, EvolutionSpec(**spec, algorithm="surrogate", surrogate_min_points=100), OBJECTIVES
    )
    late.run(evaluate)
    assert all(info["fallback"] for info in late.selection_info.values())
    assert sorted(plain.archive) == sorted(late.archive)  # the same brood, generation by generation
    early = SearchLoop(
        SPACE, EvolutionSpec(**spec, algorithm="surrogate", surrogate_min_points=6), OBJECTIVES
    )
    early.run(evaluate)
    assert not any(info["fallback"] for info in early.selection_info.values())
    assert all(c.predictions for c in early.archive.values() if c.generation > 0)


def test_even_before_the_models_have_data_static_violators_are_not_evaluated():
    def evaluate(individuals):
        for c in individuals:
            c.metrics = truth(c.genome)

    limit = 150_000  # about a quarter of this space's genomes are larger
    spec = EvolutionSpec(
        population=6,
        generations=3,
        seed=7,
        pool_factor=10,
        algorithm="surrogate",
        surrogate_min_points=100,
    )
    loop = SearchLoop(SPACE, spec, OBJECTIVES, [Constraint("params", "<=", limit)])
    loop.run(evaluate)
    bred = [c for c in loop.archive.values() if c.generation > 0]
    assert bred and all(truth(c.genome)["params"] <= limit for c in bred)


def test_the_job_spec_turns_the_latency_model_prior_on_and_it_predicts_a_phone_metric():
    """`evolution.latency_prior` reaches the selector, whose latency model then carries a
    device-class metric: on a world whose decode latency is a sum of per-layer costs (the
    shape of orchestrator/search/latency_features.py, per-column costs unknown to the model,
    3 % multiplicative noise) the predictions of what it picks stay within 10 % (median)."""
    import numpy as np

    from orchestrator.search.latency_features import LatencyTarget, columns, latency_features

    metric = "decode_ms@128[SM-X:int8]"
    target = LatencyTarget.parse(metric)
    unit = {"flops": 1e-9, "conv": 5e-9, "mix": 2e-9, "bytes": 1e-9, "count": 2e-3}
    cost = np.array([unit.get(c.kind, 1e-3) for c in columns(target)])
    cost *= np.random.default_rng(0).uniform(0.5, 2.0, len(cost))  # each class its own rate

    def latency(g) -> float:
        return float(latency_features(g, target) @ cost)

    noise = random.Random(4)
    objectives = ["perplexity", metric, "params"]
    observed = genomes(30, seed=5)
    pool = genomes(60, seed=6, exclude={g.hash() for g in observed})
    observations = [
        (g, {**truth(g), metric: latency(g) * math.exp(noise.gauss(0, 0.03))}) for g in observed
    ]
    loop = SearchLoop(SPACE, EvolutionSpec(algorithm="surrogate", latency_prior=True), objectives)
    selector = loop.algorithm.selector
    assert selector.latency_prior
    selection = selector.select(pool, 6, observations, generation=1)
    assert selection is not None and selection.info.get("latency_prior") == [metric]
    errors = sorted(
        abs(p[metric]["mean"] - latency(pool[i])) / latency(pool[i])
        for i, p in zip(selection.picked, selection.predictions)
    )
    assert errors[len(errors) // 2] < 0.10, errors
