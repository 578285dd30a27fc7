"""MAD-style tasks: solvable by construction, seeded, and they separate token mixers from
architectures that cannot mix tokens at all."""

from __future__ import annotations

import numpy as np
import pytest

from core import Genome, Slot, preset
from workers.mad.runner import evaluate_mad
from workers.mad.tasks import BLANK, COPY, IGNORE, TASKS, VOCAB


@pytest.mark.parametrize("name", list(TASKS))
def test_generators_are_seeded_and_in_vocabulary(name):
    task = TASKS[name]
    a = task.generate(np.random.default_rng(5), 20)
    b = task.generate(np.random.default_rng(5), 20)
    c = task.generate(np.random.default_rng(6), 20)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    x, y = a
    assert x.min() >= 0 and x.max() < VOCAB
    scored = y[y != IGNORE]
    assert scored.size > 0 and scored.min() >= 0 and scored.max() < VOCAB


@pytest.mark.parametrize(
    "name", ["in_context_recall", "noisy_in_context_recall", "fuzzy_in_context_recall"]
)
def test_recall_targets_are_recoverable_from_context(name):
    """An oracle that copies what followed the previous occurrence of the current key span
    scores 100%: every scored target really is in the context."""
    x, y = TASKS[name].generate(np.random.default_rng(0), 50)
    for row_x, row_y in zip(x, y):
        for t in np.nonzero(row_y != IGNORE)[0]:
            found = any(row_x[s] == row_x[t] and row_x[s + 1] == row_y[t] for s in range(t))
            assert found


def test_selective_copying_targets_are_the_data_tokens_in_order():
    x, y = TASKS["selective_copying"].generate(np.random.default_rng(0), 10)
    for row_x, row_y in zip(x, y):
        scored = row_y[row_y != IGNORE]
        data = [t for t in row_x if t not in (BLANK, COPY)]
        assert list(scored) == data and len(data) == np.count_nonzero(row_x == COPY)


def test_token_mixing_beats_a_model_that_cannot_mix_tokens():
    attention = preset("transformer++", width=48, layers=2, heads=4, kv_heads=2, ffn=96).to_json()
    no_mixing = Genome(
        width=48,
        vocab_size=4096,
        backbone=[Slot("swiglu"), Slot("mlp")],
        operators={"swiglu": {"ffn": 96}, "mlp": {"ffn": 96}},
    ).to_json()
    task = ["selective_copying"]
    mixer = evaluate_mad(attention, tasks=task)
    blind = evaluate_mad(no_mixing, tasks=task)
    assert mixer.accuracies["selective_copying"] > blind.accuracies["selective_copying"] + 0.2
    assert blind.accuracies["selective_copying"] < 0.3  # about chance over 8 symbols
    assert 0.0 <= mixer.score <= 1.0 and mixer.score == mixer.accuracies["selective_copying"]


def test_same_seed_same_scores():
    genome = preset("hyena-edge", width=32, layers=1, heads=2, kv_heads=1, ffn=64).to_json()
    a = evaluate_mad(genome, seed=3, tasks=["memorization"])
    b = evaluate_mad(genome, seed=3, tasks=["memorization"])
    assert a.accuracies == b.accuracies
