"""The storage-free search core: constraint-domination ranking, survival, breeding,
hypervolume and motifs."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core import Genome, SearchSpace, Slot, preset
from core.job_spec import EvolutionSpec
from orchestrator.search.algorithms import registered
from orchestrator.search.algorithms.base import make
from orchestrator.search.evolution import initial_population
from orchestrator.search.motifs import enrichment, motifs_of
from orchestrator.search.selection import (
    NormalisationFrame,
    hypervolume,
    pareto_front,
    rank_population,
    survive,
    tournament,
)


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


@settings(max_examples=200, deadline=None)
@given(
    objectives=arrays(
        np.float64,
        st.tuples(st.integers(2, 12), st.integers(2, 3)),
        elements=st.floats(0, 10, allow_nan=False).map(lambda x: round(x, 1)),
    ),
    data=st.data(),
)
def test_ranking_respects_constraint_domination(objectives, data):
    n = len(objectives)
    violation = np.array(
        data.draw(st.lists(st.sampled_from([0.0, 0.0, 0.5, 2.0, np.inf]), min_size=n, max_size=n))
    )
    ranking = rank_population(objectives, violation)
    for i in range(n):
        for j in range(n):
            if violation[i] == 0 and violation[j] > 0:
                assert ranking.rank[i] < ranking.rank[j]
            if violation[i] == violation[j] == 0 and dominates(objectives[i], objectives[j]):
                assert ranking.rank[i] < ranking.rank[j]
            if 0 < violation[i] < violation[j]:
                assert ranking.rank[i] < ranking.rank[j]
    front = pareto_front(objectives, violation)
    assert all(ranking.rank[i] == 0 for i in front)
    for i in front:
        assert not any(
            violation[j] == 0 and dominates(objectives[j], objectives[i]) for j in range(n)
        )


def test_survival_keeps_elites_and_the_best():
    objectives = np.array([[5.0, 5.0], [1.0, 4.0], [4.0, 1.0], [2.0, 2.0], [9.0, 9.0]])
    violation = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    assert sorted(survive(objectives, violation, 3)) == [1, 2, 3]
    assert survive(objectives, violation, 3, protected=[0])[0] == 0


def test_tournament_prefers_better_rank():
    ranking = rank_population(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]), np.zeros(3))
    rng = random.Random(0)
    wins = [tournament(ranking, rng, size=3) for _ in range(20)]
    assert set(wins) == {0}


def test_hypervolume_grows_with_a_dominating_point():
    objectives = np.array([[1.0, 3.0], [3.0, 1.0], [2.0, 2.5]])
    violation = np.zeros(3)
    frame = NormalisationFrame.from_objectives(objectives, violation)
    before = hypervolume(objectives, violation, frame)
    better = np.vstack([objectives, [[1.5, 1.5]]])
    after = hypervolume(better, np.zeros(4), frame)
    assert 0 < before < after <= 1.1**2
    # Infeasible points never count.
    assert hypervolume(better, np.array([0, 0, 0, 1.0]), frame) == pytest.approx(before)


SPACE = SearchSpace(widths=[32, 64], depth_min=2, depth_max=8, vocab_size=512)


def test_initial_population_has_presets_and_unique_valid_genomes():
    seen: set[str] = set()
    children = initial_population(
        SPACE, EvolutionSpec(population=10), random.Random(0), seen, presets=True
    )
    hashes = [c.genome.hash() for c in children]
    assert len(children) == 10 and len(set(hashes)) == 10 and set(hashes) == seen
    assert sum(c.origin.startswith("preset:") for c in children) == 5
    for child in children:
        assert SPACE.contains(child.genome) == []


@pytest.mark.parametrize("algorithm", sorted(registered()))
def test_every_algorithm_breeds_unseen_children_inside_the_space(algorithm):
    """Every registered algorithm (new ones too): offspring are new, valid, and never more
    than asked for; variation's children name parents from the population."""
    rng = random.Random(1)
    params = EvolutionSpec(algorithm=algorithm, population=8, pool_factor=3)
    objectives = ["perplexity", "params", "cache_bytes@256"]
    seen: set[str] = set()
    parents = [c.genome for c in initial_population(SPACE, params, rng, seen, presets=True)]
    ranking = rank_population(np.random.default_rng(0).random((8, 2)), np.zeros(8))
    before = set(seen)
    brood = make(algorithm, objectives, [], params).offspring(
        parents, ranking, SPACE, rng, seen, 6, [], generation=1
    )
    hashes = {c.genome.hash() for c in brood.children}
    assert len(brood.children) == 6 and len(hashes) == 6 and not hashes & before
    for child in brood.children:
        assert SPACE.contains(child.genome) == []
        if child.origin != "random":
            assert set(child.parents) <= {p.hash() for p in parents}


def test_motifs_count_ngrams_and_sharing():
    genome = Genome(
        width=64,
        vocab_size=100,
        backbone=[
            Slot("hyena_y"),
            Slot("swiglu"),
            Slot("attention"),
            Slot("swiglu", share_weights=1),
        ],
    )
    found = motifs_of(genome)
    assert found["hyena_y > swiglu"] == 1 and found["swiglu > attention"] == 1
    assert found["swiglu shares weights (distance 2)"] == 1
    pareto = [preset("lfm2")]
    rows = enrichment(pareto, pareto + [preset("transformer++")] * 3)
    top = {r["motif"]: r for r in rows}
    assert top["hyena_y > swiglu"]["enrichment"] == 4.0
