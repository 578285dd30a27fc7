"""Evaluation-size genomes: train a candidate at a smaller width or depth than its target.

STAR evaluates candidates at reduced size when the target is too costly to train; Tailor
does the same when a job sets `eval_width` (or `eval_width_divisor`) / `eval_depth`, and
the scale-up check (`core/scale_check.py`) goes the other way, training the winners
larger (`resize_genome`). The scaled genome keeps every structural gene — classes,
sharing, heads, KV heads, windows, filter lengths, state sizes — and scales the genes the
catalog marks as proportional to width (`GeneSpec.scales_with_width`, e.g. the channel
mixers' inner width). `eval_depth` keeps the first N backbone slots. The profiled ONNX
graphs, the parameter count and the cache bytes always come from the unscaled genome; only
perplexity is measured small.
"""

from __future__ import annotations

import copy

from . import catalog
from .genome import Genome, GenomeError


class ScalingError(ValueError):
    pass


def scale_genome(genome: Genome, width: int | None = None, depth: int | None = None) -> Genome:
    """A validated copy of `genome` at `width` and the first `depth` slots."""
    scaled = genome.copy()
    if depth is not None and depth < scaled.depth:
        scaled.backbone = scaled.backbone[:depth]  # sharing only points backwards: still valid
    if width is not None and width != scaled.width:
        ratio = width / scaled.width
        scaled.width = width
        for op in scaled.used_classes():
            genes = scaled.operators[op]
            for gene in catalog.REGISTRY[op].genes:
                if gene.scales_with_width:
                    genes[gene.name] = max(gene.low, int(round(genes[gene.name] * ratio / 8)) * 8)
    try:
        scaled.validate()
    except GenomeError as exc:
        raise ScalingError(
            f"eval_width {width} / eval_depth {depth} give an invalid genome: {exc}"
        ) from None
    return scaled


def resize_genome(genome: Genome, width: int | None = None, depth: int | None = None) -> Genome:
    """`genome` at another width and depth, larger or smaller: widths scale the genes marked
    proportional to width (as `scale_genome`); a smaller depth keeps the first slots, a
    larger one repeats the backbone's pattern (slot i is slot i mod depth, its sharing
    pointing into its own repeat), as hybrid models grow by stacking their block."""
    if depth is None or depth <= genome.depth:
        return scale_genome(genome, width, depth)
    grown = genome.copy()
    base = genome.backbone
    slots = []
    for i in range(depth):
        slot = copy.copy(base[i % len(base)])
        offset = (i // len(base)) * len(base)
        if slot.share_featurizer is not None:
            slot.share_featurizer += offset
        if slot.share_weights is not None:
            slot.share_weights += offset
        slots.append(slot)
    grown.backbone = slots
    return scale_genome(grown, width)
