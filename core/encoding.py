"""A fixed-length numeric encoding of genomes, for the search's surrogate models.

Every genome of every search space maps to the same vector layout, so one model can learn
from every evaluation Tailor ever made. The layout is built from the catalog (a newly
registered operator adds its columns by itself):

- layout: for each of `SEGMENTS` equal parts of the backbone (by slot position), the share
  of its slots that hold each catalog class;
- globals: log2 width, depth, executed depth (block repeat included), block repeat, tied
  embeddings;
- operator genes: for each catalog class and gene, log2(1 + value) when the class appears in
  the backbone, else 0 (attention heads, KV heads, window, QK-norm, filter lengths, ...);
- sharing: the share of slots that share weights and that share a featurizer;
- exact static costs: log10 of parameters, and of cache bytes and multiply-accumulates per
  decoded token at each context in `contexts`.
Torch-free and deterministic: the same genome always gives the same vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import catalog, costs
from .arch import plan
from .genome import Genome

SEGMENTS = 4


@dataclass(frozen=True)
class GenomeEncoding:
    contexts: tuple[int, ...] = (128, 1024)

    @property
    def names(self) -> list[str]:
        """What each column means, in order."""
        ops = catalog.ordered()
        names = [f"segment{s}.{spec.name}" for s in range(SEGMENTS) for spec in ops]
        names += ["log2_width", "depth", "executed_depth", "block_repeat", "tie_embeddings"]
        names += [f"{spec.name}.{gene.name}" for spec in ops for gene in spec.genes]
        names += ["share_weights", "share_featurizer", "log10_params"]
        for context in self.contexts:
            names += [f"log10_cache_bytes@{context}", f"log10_flops@{context}"]
        return names

    def encode(self, genome: Genome) -> np.ndarray:
        ops = catalog.ordered()
        index = {spec.name: i for i, spec in enumerate(ops)}
        layout = np.zeros((SEGMENTS, len(ops)))
        for i, slot in enumerate(genome.backbone):
            layout[min(SEGMENTS - 1, i * SEGMENTS // genome.depth), index[slot.op]] += 1
        layout /= np.maximum(layout.sum(axis=1, keepdims=True), 1)
        arch = plan(genome)
        used = set(genome.used_classes())
        row = list(layout.ravel())
        row += [
            math.log2(genome.width),
            genome.depth,
            len(arch.executions),
            genome.block_repeat,
            float(genome.tie_embeddings),
        ]
        row += [
            math.log2(1 + genome.operators[spec.name][gene.name]) if spec.name in used else 0.0
            for spec in ops
            for gene in spec.genes
        ]
        row += [
            sum(s.share_weights is not None for s in genome.backbone) / genome.depth,
            sum(s.share_featurizer is not None for s in genome.backbone) / genome.depth,
            math.log10(costs.params(arch)),
        ]
        for context in self.contexts:
            row += [
                math.log10(max(1, costs.cache_bytes(arch, context))),
                math.log10(costs.macs_per_token(arch, context)),
            ]
        return np.asarray(row, dtype=np.float64)

    def encode_all(self, genomes: list[Genome]) -> np.ndarray:
        if not genomes:
            return np.zeros((0, len(self.names)))
        return np.stack([self.encode(g) for g in genomes])
