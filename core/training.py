"""The training configuration: the quality half of every candidate's fitness (torch-free).

Its fields are the `training` block of a job spec. Defaults are sized for a 2-core machine:
200k tokens at sequence length 128 train a ~1M-parameter model in about a minute.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field, model_validator

from .strict import DAY_S, SEED_MAX, StrictModel

BYTE_VOCAB_SIZE = 257  # the byte tokenizer: 256 bytes and the end-of-document token
BPE_VOCAB_RANGE = (260, 1 << 20)


class TokenizerConfig(StrictModel):
    kind: Literal["bpe", "byte"] = "bpe"
    vocab_size: int = Field(
        default=4096,
        ge=BPE_VOCAB_RANGE[0],
        le=BPE_VOCAB_RANGE[1],
        description=f"BPE vocabulary (the byte tokenizer always has "
        f"{BYTE_VOCAB_SIZE}); the same setting as search_space.vocab_size",
    )
    sample_documents: int = Field(
        default=200_000,
        ge=1,
        le=10**9,
        description="the BPE trains on at most this many training "
        "documents (a hash-chosen, order-independent sample)",
    )
    sample_bytes: int = Field(
        default=64_000_000,
        ge=1,
        le=1 << 40,
        description="... and at most this many bytes of their text",
    )


class TrainConfig(StrictModel):
    tokens: int = Field(default=200_000, ge=1, le=10**13, description="training token budget")
    seq_len: int = Field(default=128, ge=2, le=1 << 16)
    batch_size: int = Field(default=16, ge=1, le=4096)
    lr: float = Field(default=1e-2, gt=0, le=10, description="peak; tuned for tiny models")
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1)
    min_lr_fraction: float = Field(
        default=0.1, ge=0, le=1, description="cosine decays to lr * this"
    )
    weight_decay: float = Field(default=0.1, ge=0, le=10)
    grad_clip: float = Field(default=1.0, gt=0, le=1e6)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    data: str | None = Field(
        default=None, max_length=4096, description="corpus path; None = the built-in KJV"
    )
    text_field: str = Field(default="text", min_length=1, max_length=256)
    val_fraction: float = Field(default=0.05, gt=0, lt=1)
    eval_tokens: int | None = Field(
        default=65_536, ge=1, le=10**12, description="held-out tokens scored; None = all of them"
    )
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    eval_width: int | None = Field(
        default=None, ge=8, le=16384, description="train at this width instead of the genome's"
    )
    eval_width_divisor: int | None = Field(
        default=None,
        ge=2,
        le=64,
        description="train at the genome's width / this (a multiple of 16): a proxy that keeps "
        "the candidates' widths apart, where one eval_width for all makes quality width-blind",
    )
    eval_depth: int | None = Field(
        default=None, ge=1, le=512, description="train only the first N backbone slots"
    )
    threads: int = Field(default=1, ge=1, le=256)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mad: bool = Field(default=False, description="also score the MAD synthetic tasks")
    timeout_s: float = Field(default=1800, gt=0, le=7 * DAY_S)
    divergence_factor: float = Field(
        default=1.5, gt=1, le=1e6, description="fail when loss exceeds this x the first loss"
    )
    log_every: int = Field(default=10, ge=1, le=10**6, description="loss-curve sampling, in steps")
    token_cache: str | None = Field(
        default=None,
        max_length=4096,
        description="folder of tokenized corpora; None = "
        "$TAILOR_TOKEN_CACHE, else ~/.cache/tailor/tokens",
    )
    micro_batch_size: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="split each batch into micro-batches of "
        "this many sequences (gradient accumulation); the "
        "effective batch stays batch_size",
    )
    compile: bool = Field(default=False, description="torch.compile the model before training")
    gpus_per_task: float = Field(
        default=1.0,
        gt=0,
        le=64,
        description="GPUs a training task asks Ray for where the "
        "cluster has GPUs; a fraction lets small candidates share one",
    )
    peak_flops: float | None = Field(
        default=None,
        gt=0,
        le=1e18,
        description="the device's peak FLOP/s for MFU; None = looked up from the GPU's name",
    )

    fidelities: list[int] | None = Field(
        default=None,
        min_length=2,
        max_length=8,
        description="multi-fidelity training: token budgets of the successive-halving rungs, "
        "rising, the last equal to `tokens`; every candidate trains on the first, the best "
        "1/reduction_factor of a generation move up a rung (orchestrator/search/fidelity.py)",
    )
    reduction_factor: int = Field(
        default=3, ge=2, le=64, description="successive halving's eta: 1 of this many moves up"
    )

    @model_validator(mode="after")
    def _rungs_rise_to_the_budget(self) -> "TrainConfig":
        rungs = self.fidelities
        if rungs is not None:
            if any(b <= a for a, b in zip(rungs, rungs[1:])) or rungs[0] < 1:
                raise ValueError(f"fidelities {rungs} must be positive and strictly rising")
            if rungs[-1] != self.tokens:
                raise ValueError(
                    f"the last of fidelities ({rungs[-1]}) must equal tokens ({self.tokens})"
                )
        return self

    @model_validator(mode="after")
    def _one_rule_for_the_eval_width(self) -> "TrainConfig":
        if self.eval_width is not None and self.eval_width_divisor is not None:
            raise ValueError("set eval_width or eval_width_divisor, not both")
        return self

    def eval_width_for(self, width: int) -> int | None:
        """The width a genome of `width` trains at: `eval_width`, or `width /
        eval_width_divisor` rounded to a multiple of 16 (at least 16: an even head size for
        RoPE with up to 8 heads), or None for its own."""
        if self.eval_width_divisor is not None:
            return max(16, round(width / self.eval_width_divisor / 16) * 16)
        return self.eval_width

    @property
    def trains_full_size(self) -> bool:
        """Whether training runs on the genome as it is (its weights fit its exported graph)."""
        return (
            self.eval_width is None and self.eval_width_divisor is None and self.eval_depth is None
        )

    def at_fidelity(self, tokens: int) -> "TrainConfig":
        """This config trained on `tokens` (one rung): its own cache key, no rungs."""
        return self.model_copy(update={"tokens": tokens, "fidelities": None})

    @model_validator(mode="after")
    def _micro_batches_divide_the_batch(self) -> "TrainConfig":
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"micro_batch_size {self.micro_batch_size} must divide batch_size {self.batch_size}"
            )
        return self

    def cache_key(self) -> str:
        """Identifies the evaluation config: equal keys give equal results (same seed).
        Settings that change where or how fast a run goes, not what it computes, are left
        out; so are later-added settings at their defaults, so old keys stay valid."""
        fields = self.model_dump(exclude=RESULT_NEUTRAL)
        for name in LATER_SETTINGS:
            if fields[name] == TrainConfig.model_fields[name].default:
                del fields[name]
        for name, default in TOKENIZER_SAMPLE_DEFAULTS.items():
            if fields["tokenizer"][name] == default:
                del fields["tokenizer"][name]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


RESULT_NEUTRAL = {
    "fidelities",  # how a search spends training, not what one run computes
    "reduction_factor",
    "threads",
    "device",
    "timeout_s",
    "log_every",
    "token_cache",
    "micro_batch_size",
    "compile",
    "gpus_per_task",
    "peak_flops",
}
LATER_SETTINGS = ("eval_width_divisor",)  # left out of cache keys at their defaults
TOKENIZER_SAMPLE_DEFAULTS = {
    name: TokenizerConfig.model_fields[name].default
    for name in ("sample_documents", "sample_bytes")
}
