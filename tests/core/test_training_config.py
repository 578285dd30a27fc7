"""The `training` block: unknown fields refused, micro-batching must divide the batch, and
settings that change no result leave the cache key alone."""

from __future__ import annotations

import pytest

from core.training import TrainConfig


def test_micro_batch_size_must_divide_the_batch_and_leaves_the_cache_key_alone():
    with pytest.raises(ValueError, match="must divide batch_size"):
        TrainConfig(batch_size=16, micro_batch_size=5)
    plain = TrainConfig()
    for neutral in (
        {"micro_batch_size": 4},
        {"compile": True},
        {"gpus_per_task": 0.25},
        {"peak_flops": 1e14},
        {"token_cache": "/tmp/x"},
    ):
        assert TrainConfig(**neutral).cache_key() == plain.cache_key(), neutral
    assert TrainConfig(tokenizer={"sample_bytes": 10**6}).cache_key() != plain.cache_key()


def test_unknown_config_fields_are_rejected():
    with pytest.raises(ValueError, match="tokenz"):
        TrainConfig.model_validate({"tokenz": 5})
