"""Evaluation-size genomes: train a candidate at a smaller width or depth than its target.

STAR evaluates candidates at reduced size when the target is too costly to train; Tailor
does the same when a job sets `eval_width` / `eval_depth`. The scaled genome keeps every
structural gene — classes, sharing, heads, KV heads, windows, filter lengths, state sizes —
and scales the genes the catalog marks as proportional to width (`GeneSpec.scales_with_width`,
e.g. the channel mixers' inner width). `eval_depth` keeps the first N backbone slots. The
profiled ONNX graphs, the parameter count and the cache bytes always come from the unscaled
genome; only perplexity is measured small.
"""

from __future__ import annotations

from . import catalog
from .genome import Genome, GenomeError


class ScalingError(ValueError):
    pass


def scale_genome(genome: Genome, width: int | None = None,
                 depth: int | None = None) -> Genome:
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
        raise ScalingError(f"eval_width {width} / eval_depth {depth} give an invalid genome: "
                           f"{exc}") from None
    return scaled
