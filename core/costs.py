"""Exact static costs of a genome, computed without building it (torch-free).

`params` equals the number of unique parameters of the module the compiler builds, and
`cache_bytes` equals the bytes of the decode state the built module holds after L tokens,
and `macs_per_token` equals the multiply-accumulates of one decode step at context L; tests
check them against real modules for every operator.
"""

from __future__ import annotations

from typing import Any

from . import catalog
from .arch import ArchPlan, plan
from .genome import Genome

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}
GenomeLike = Genome | dict[str, Any] | ArchPlan


def params(genome: GenomeLike) -> int:
    p = plan(genome)
    d = p.width
    total = p.vocab_size * d + d  # embedding + final RMSNorm
    if not p.tie_embeddings:
        total += p.vocab_size * d
    for slot in p.root_slots:
        count = catalog.REGISTRY[slot.op].params(slot.genes, d)
        total += d  # the slot's pre-norm
        total += count.other if slot.share_featurizer is not None else count.total
    return total


def cache_elements(genome: GenomeLike, context: int) -> int:
    p = plan(genome)
    return sum(
        catalog.REGISTRY[p.slots[i].op].cache(p.slots[i].genes, p.width).elements(context)
        for i in p.executions
    )


def macs_per_token(genome: GenomeLike, context: int) -> int:
    """Multiply-accumulates of one decode step with `context` tokens cached, batch 1.

    Exactly: the multiply-accumulates in the matrix products and convolutions of one
    `TailorLM.step` (what `torch.utils.flop_counter.FlopCounterMode` reports for it, divided
    by 2, with every contraction counted; `core.catalog` says which ops that adds on CPU).
    Every execution counts (block repeat and shared weights execute again), plus the LM
    head (width x vocab); the embedding lookup, norms, elementwise ops and activations count
    0. `tests/workers/test_flops.py` checks it against FlopCounterMode for every operator.
    """
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    p = plan(genome)
    steps = sum(
        catalog.REGISTRY[p.slots[i].op].macs(p.slots[i].genes, p.width, context)
        for i in p.executions
    )
    return steps + p.width * p.vocab_size


def cache_bytes(genome: GenomeLike, context: int, dtype: str = "float16") -> int:
    """Bytes of all decode state after `context` tokens, batch 1 (STAR counts 16-bit)."""
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    return cache_elements(genome, context) * DTYPE_BYTES[dtype]


def cache_split(genome: GenomeLike) -> tuple[int, int]:
    """(elements per held token, fixed elements), ignoring window caps; for manifests."""
    p = plan(genome)
    per_token = fixed = 0
    for i in p.executions:
        shape = catalog.REGISTRY[p.slots[i].op].cache(p.slots[i].genes, p.width)
        per_token += shape.per_token
        fixed += shape.fixed
    return per_token, fixed
