"""Genome JSON -> a resolved architecture plan (torch-free).

`workers/` does not import the orchestrator, so the compiler and the cost model read the
genome's JSON twin through this small resolver. The orchestrator validates genomes before
they get here; this module still fails with a clear message on a malformed one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from workers.liv import catalog


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


def resolve(genome: dict[str, Any]) -> ArchPlan:
    try:
        glob = genome["global"]
        backbone = genome["backbone"]
        operators = genome.get("operators", {})
        slots = []
        for i, raw in enumerate(backbone):
            spec = catalog.REGISTRY[raw["op"]]
            genes = {**spec.defaults(), **operators.get(raw["op"], {})}
            slots.append(SlotPlan(i, raw["op"], genes, raw.get("share_featurizer"),
                                  raw.get("share_weights")))
        repeat = int(glob.get("block_repeat", 1))
        return ArchPlan(width=int(glob["width"]), vocab_size=int(glob["vocab_size"]),
                        tie_embeddings=bool(glob.get("tie_embeddings", True)),
                        block_repeat=repeat, slots=slots,
                        executions=execution_plan([s.op for s in slots], repeat))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed genome JSON: {exc!r}") from None


def genome_hash(genome: dict[str, Any]) -> str:
    """Same value as orchestrator.genome.Genome.hash: sha256 of the canonical phenotype
    (globals, backbone, genes of the classes that appear), first 16 hex digits."""
    resolve(genome)
    used = {slot["op"] for slot in genome["backbone"]}
    phenotype = {**genome, "operators": {k: v for k, v in genome.get("operators", {}).items()
                                         if k in used}}
    canonical = json.dumps(phenotype, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
