"""Evaluation-size genomes: train a candidate at a smaller width or depth than its target.

STAR evaluates candidates at reduced size when the target is too costly to train; Tailor
does the same when a job sets `eval_width` / `eval_depth`. The scaled genome keeps every
structural gene — classes, sharing, heads, KV heads, windows, filter lengths, state sizes —
and scales what is proportional to width (the channel mixers' inner width). `eval_depth`
keeps the first N backbone slots. The profiled ONNX graphs, the parameter count and the
cache bytes always come from the unscaled genome; only perplexity is measured small.
"""

from __future__ import annotations

import copy
from typing import Any

from workers.liv import catalog


class ScalingError(ValueError):
    pass


def scale_genome(genome: dict[str, Any], width: int | None = None,
                 depth: int | None = None) -> dict[str, Any]:
    scaled = copy.deepcopy(genome)
    if depth is not None and depth < len(scaled["backbone"]):
        scaled["backbone"] = scaled["backbone"][:depth]
        scaled["global"]["depth"] = depth
    if width is not None and width != scaled["global"]["width"]:
        ratio = width / scaled["global"]["width"]
        scaled["global"]["width"] = width
        used = {slot["op"] for slot in scaled["backbone"]}
        for op in sorted(used):
            genes = scaled.setdefault("operators", {}).setdefault(
                op, catalog.REGISTRY[op].defaults())
            if "ffn" in genes:
                genes["ffn"] = max(8, int(round(genes["ffn"] * ratio / 8)) * 8)
            for gene, problem in catalog.REGISTRY[op].check(genes, width):
                raise ScalingError(f"eval_width {width} is not valid for {op}: {gene} {problem}")
    return scaled
