"""The trainer: honest perplexity on the built-in corpus, reproducibility, clean failures."""

from __future__ import annotations

import math

import pytest
import torch

from core import costs, preset
from core.training import TrainConfig
from workers.model.compiler import compile_genome
from workers.train.trainer import evaluate_quality, lr_at

TINY = preset("transformer++", width=64, layers=2, heads=4, kv_heads=2, ffn=192).to_json()
BPE_1K = {"vocab_size": 1024}


def test_tiny_transformer_beats_unigram_by_far_and_more_tokens_help():
    short = evaluate_quality(TINY, {"tokens": 200_000, "tokenizer": BPE_1K})
    long = evaluate_quality(TINY, {"tokens": 400_000, "tokenizer": BPE_1K})
    assert short.status == long.status == "ok", (short.reason, long.reason)
    assert long.perplexity < short.perplexity
    assert long.perplexity < long.unigram_perplexity / 2.5
    assert math.isclose(long.perplexity, math.exp(long.val_loss))
    assert long.tokens_trained >= 400_000 and long.tokens_per_s > 0
    assert long.split["corpus"] == "kjv" and long.split["val_documents"] > 0
    assert long.tokenizer["kind"] == "bpe" and long.tokenizer["vocab_size"] == 1024
    losses = [loss for _, loss in long.loss_curve]
    assert losses[-1] < losses[0]


def test_same_seed_gives_identical_results_and_another_seed_does_not():
    config = {"tokens": 20_000, "tokenizer": {"kind": "byte"}, "seed": 7}
    a, b = evaluate_quality(TINY, config), evaluate_quality(TINY, config)
    c = evaluate_quality(TINY, {**config, "seed": 8})
    assert a.status == "ok"
    assert a.perplexity == b.perplexity
    assert a.loss_curve == b.loss_curve
    assert c.perplexity != a.perplexity


def test_divergence_is_a_failed_result_not_an_exception():
    result = evaluate_quality(
        TINY, {"tokens": 40_000, "lr": 10.0, "warmup_fraction": 0.0, "tokenizer": {"kind": "byte"}}
    )
    assert result.status == "failed"
    assert "diverged" in result.reason


def test_timeout_is_a_failed_result():
    result = evaluate_quality(
        TINY, {"tokens": 10_000_000, "timeout_s": 0.5, "tokenizer": {"kind": "byte"}}
    )
    assert result.status == "failed" and result.reason.startswith("timeout")


def test_malformed_genome_is_a_failed_result():
    result = evaluate_quality({"global": {}}, {"tokens": 1000, "tokenizer": {"kind": "byte"}})
    assert result.status == "failed" and "malformed genome" in result.reason


def test_eval_width_trains_a_smaller_model_and_saves_loadable_weights(tmp_path):
    genome = preset("hyena-edge", width=128, layers=3, heads=4, kv_heads=2, ffn=256).to_json()
    result = evaluate_quality(
        genome, {"tokens": 8_000, "eval_width": 64, "tokenizer": {"kind": "byte"}}, out_dir=tmp_path
    )
    assert result.status == "ok", result.reason
    assert result.eval_genome["global"]["width"] == 64
    assert result.eval_genome["operators"]["swiglu"]["ffn"] == 128
    assert result.params_trained == costs.params(result.eval_genome)
    assert result.params_trained < costs.params(genome)
    model = compile_genome(result.eval_genome)
    model.load_state_dict(torch.load(result.weights_path, weights_only=True))


def test_eval_width_divisor_trains_each_genome_at_its_own_share_of_its_width():
    genome = preset("hyena-edge", width=128, layers=2, heads=4, kv_heads=2, ffn=256).to_json()
    config = {"tokens": 2_000, "eval_width_divisor": 4, "tokenizer": {"kind": "byte"}}
    result = evaluate_quality(genome, config)
    assert result.status == "ok", result.reason
    assert result.eval_genome["global"]["width"] == 32
    assert result.eval_genome["operators"]["swiglu"]["ffn"] == 64
    assert result.params_trained == costs.params(result.eval_genome)


def test_invalid_eval_width_names_the_problem():
    result = evaluate_quality(
        TINY, {"tokens": 1000, "eval_width": 36, "tokenizer": {"kind": "byte"}}
    )
    assert result.status == "failed" and "eval_width 36" in result.reason


def test_schedule_warms_up_then_decays_to_the_floor():
    config = TrainConfig(warmup_fraction=0.1, min_lr_fraction=0.1)
    values = [lr_at(s, 100, config) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert values[-1] == pytest.approx(0.1, abs=0.01)


@pytest.mark.slow
def test_mad_flag_adds_the_proxy_scores():
    result = evaluate_quality(TINY, {"tokens": 4_000, "tokenizer": {"kind": "byte"}, "mad": True})
    assert result.status == "ok"
    assert set(result.mad["accuracies"]) == {
        "in_context_recall",
        "fuzzy_in_context_recall",
        "noisy_in_context_recall",
        "selective_copying",
        "compression",
        "memorization",
    }
