"""A validated genome -> its resolved architecture plan: slots, genes, execution order.

The compiler (`workers/`) builds modules from this plan and the cost model (`core.costs`)
counts from it, so both read one resolution of the genome. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import catalog
from .genome import Genome, Rope


@dataclass(frozen=True)
class SlotPlan:
    index: int
    op: str
    genes: dict[str, int]
    share_featurizer: int | None  # slot whose featurizer weights this slot borrows
    share_weights: int | None  # slot whose whole residual block this slot reuses


@dataclass(frozen=True)
class ArchPlan:
    width: int
    vocab_size: int
    tie_embeddings: bool
    block_repeat: int
    slots: list[SlotPlan]
    executions: list[int]  # slot index of every executed LIV, in order
    rope: Rope = Rope()  # what every attention slot rotates with

    @property
    def root_slots(self) -> list[SlotPlan]:
        return [s for s in self.slots if s.share_weights is None]


def execution_plan(ops: list[str], block_repeat: int) -> list[int]:
    """Slot indices in execution order: each block (a run of slots ending with a channel
    mixer) runs `block_repeat` times in a row before the next (MobileLLM-LS)."""
    order: list[int] = []
    block: list[int] = []
    for i, op in enumerate(ops):
        block.append(i)
        if catalog.REGISTRY[op].kind == "channel" or i == len(ops) - 1:
            order += block * block_repeat
            block = []
    return order


def plan(genome: Genome | dict[str, Any] | ArchPlan) -> ArchPlan:
    """The plan of a genome (a `Genome`, or its JSON twin, parsed and validated here)."""
    if isinstance(genome, ArchPlan):
        return genome
    genome = Genome.coerce(genome)
    slots = [
        SlotPlan(
            i, slot.op, dict(genome.operators[slot.op]), slot.share_featurizer, slot.share_weights
        )
        for i, slot in enumerate(genome.backbone)
    ]
    return ArchPlan(
        width=genome.width,
        vocab_size=genome.vocab_size,
        tie_embeddings=genome.tie_embeddings,
        block_repeat=genome.block_repeat,
        slots=slots,
        executions=execution_plan([s.op for s in slots], genome.block_repeat),
        rope=genome.rope,
    )
