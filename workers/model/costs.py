"""Exact static costs of a genome, computed without building it (torch-free).

`params` equals the number of unique parameters of the module the compiler builds, and
`cache_bytes` equals the bytes of the decode state the built module holds after L tokens;
tests check both against real modules for every operator and for random genomes.
"""

from __future__ import annotations

from typing import Any

from workers.liv import catalog

from .arch import ArchPlan, resolve

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


def params(genome: dict[str, Any] | ArchPlan) -> int:
    plan = genome if isinstance(genome, ArchPlan) else resolve(genome)
    d = plan.width
    total = plan.vocab_size * d + d  # embedding + final RMSNorm
    if not plan.tie_embeddings:
        total += plan.vocab_size * d
    for slot in plan.root_slots:
        count = catalog.REGISTRY[slot.op].params(slot.genes, d)
        total += d  # the slot's pre-norm
        total += count.other if slot.share_featurizer is not None else count.total
    return total


def cache_elements(genome: dict[str, Any] | ArchPlan, context: int) -> int:
    plan = genome if isinstance(genome, ArchPlan) else resolve(genome)
    return sum(catalog.REGISTRY[plan.slots[i].op].cache(plan.slots[i].genes, plan.width)
               .elements(context) for i in plan.executions)


def cache_bytes(genome: dict[str, Any] | ArchPlan, context: int, dtype: str = "float16") -> int:
    """Bytes of all decode state after `context` tokens, batch 1 (STAR counts 16-bit)."""
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    return cache_elements(genome, context) * DTYPE_BYTES[dtype]


def cache_split(genome: dict[str, Any] | ArchPlan) -> tuple[int, int]:
    """(elements per held token, fixed elements), ignoring window caps; for manifests."""
    plan = genome if isinstance(genome, ArchPlan) else resolve(genome)
    per_token = fixed = 0
    for i in plan.executions:
        shape = catalog.REGISTRY[plan.slots[i].op].cache(plan.slots[i].genes, plan.width)
        per_token += shape.per_token
        fixed += shape.fixed
    return per_token, fixed
