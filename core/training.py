"""The training configuration: the quality half of every candidate's fitness (torch-free).

Its fields are the `training` block of a job spec. Defaults are sized for a 2-core machine:
200k tokens at sequence length 128 train a ~1M-parameter model in about a minute.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field

from .strict import DAY_S, SEED_MAX, StrictModel


BYTE_VOCAB_SIZE = 257  # the byte tokenizer: 256 bytes and the end-of-document token
BPE_VOCAB_RANGE = (260, 1 << 20)


class TokenizerConfig(StrictModel):
    kind: Literal["bpe", "byte"] = "bpe"
    vocab_size: int = Field(default=4096, ge=BPE_VOCAB_RANGE[0], le=BPE_VOCAB_RANGE[1],
                            description=f"BPE vocabulary (the byte tokenizer always has "
                            f"{BYTE_VOCAB_SIZE}); the same setting as search_space.vocab_size")


class TrainConfig(StrictModel):
    tokens: int = Field(default=200_000, ge=1, le=10**13, description="training token budget")
    seq_len: int = Field(default=128, ge=2, le=1 << 16)
    batch_size: int = Field(default=16, ge=1, le=4096)
    lr: float = Field(default=1e-2, gt=0, le=10, description="peak; tuned for tiny models")
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1)
    min_lr_fraction: float = Field(default=0.1, ge=0, le=1,
                                   description="cosine decays to lr * this")
    weight_decay: float = Field(default=0.1, ge=0, le=10)
    grad_clip: float = Field(default=1.0, gt=0, le=1e6)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    data: str | None = Field(default=None, max_length=4096, description="corpus path; None = the built-in KJV")
    text_field: str = Field(default="text", min_length=1, max_length=256)
    val_fraction: float = Field(default=0.05, gt=0, lt=1)
    eval_tokens: int | None = Field(default=65_536, ge=1, le=10**12,
                                    description="held-out tokens scored; None = all of them")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    eval_width: int | None = Field(default=None, ge=8, le=16384,
                                   description="train at this width instead of the genome's")
    eval_depth: int | None = Field(default=None, ge=1, le=512,
                                   description="train only the first N backbone slots")
    threads: int = Field(default=1, ge=1, le=256)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mad: bool = Field(default=False, description="also score the MAD synthetic tasks")
    timeout_s: float = Field(default=1800, gt=0, le=7 * DAY_S)
    divergence_factor: float = Field(default=1.5, gt=1, le=1e6,
                                     description="fail when loss exceeds this x the first loss")
    log_every: int = Field(default=10, ge=1, le=10**6, description="loss-curve sampling, in steps")

    def cache_key(self) -> str:
        """Identifies the evaluation config: equal keys give equal results (same seed)."""
        fields = self.model_dump(exclude={"threads", "device", "timeout_s", "log_every"})
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
