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


def test_eval_width_divisor_keeps_candidates_widths_apart():
    """Phone widths 256-768 at divisor 8 train at 32-96; one eval_width would train them all
    at one width (quality blind to width)."""
    config = TrainConfig(eval_width_divisor=8)
    assert [config.eval_width_for(w) for w in (256, 384, 512, 768)] == [32, 48, 64, 96]
    assert config.eval_width_for(40) == 16  # never below one even head size for 8 heads
    assert all(config.eval_width_for(w) % 16 == 0 for w in range(8, 2048, 8))
    assert TrainConfig(eval_width=64).eval_width_for(768) == 64
    assert TrainConfig().eval_width_for(768) is None
    assert TrainConfig().trains_full_size and not config.trains_full_size


def test_eval_width_and_its_divisor_are_one_rule_or_the_other():
    with pytest.raises(ValueError, match="eval_width or eval_width_divisor, not both"):
        TrainConfig(eval_width=64, eval_width_divisor=8)


def test_the_divisor_changes_the_cache_key_only_when_set():
    """A setting added later leaves the keys of configs without it as they were."""
    import hashlib
    import json

    from core.training import RESULT_NEUTRAL

    plain = TrainConfig()
    before = plain.model_dump(exclude=RESULT_NEUTRAL | {"eval_width_divisor"})
    for name in ("sample_documents", "sample_bytes"):
        del before["tokenizer"][name]
    old_key = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert plain.cache_key() == old_key
    assert TrainConfig(eval_width_divisor=8).cache_key() != old_key
    assert (
        TrainConfig(eval_width_divisor=8).cache_key()
        != TrainConfig(eval_width_divisor=4).cache_key()
    )
