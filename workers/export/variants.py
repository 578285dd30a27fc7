"""Every export variant a job needs, in one folder: the float32 graphs each variant is made
from (`Variant.base`: plain or fused attention), then the quantized ones from those.

One call per candidate, so a candidate profiled at float32 and int4 is exported once and
quantized once; the files are named by their variant (core.precision.Variant.files) and
never collide.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.genome import Genome
from core.manifest import GraphManifest
from core.precision import Variant


@dataclass
class VariantExport:
    manifest: GraphManifest
    max_abs_diff: float  # float graphs: onnxruntime vs torch; quantized: decode vs prefill
    exporter: str


def export_variants(
    genome: Genome | dict[str, Any],
    out_dir: str | Path,
    variants: list[Variant],
    model=None,
    example_context: int = 16,
    chunk_graph: bool = False,
) -> dict[str, VariantExport]:
    """Write every variant's graphs and manifest into `out_dir`; keyed by variant tag.
    `chunk_graph`: every variant also gets the chunk graph (`prefill_chunk`)."""
    from workers.export.onnx_export import export_onnx

    out = Path(out_dir)
    done: dict[str, VariantExport] = {}
    for variant in sorted(set(variants), key=lambda v: (v.precision != "float32", v.tag)):
        base = variant.base
        if base.tag not in done:
            options = {"attention": base.attention} if base.attention != "plain" else {}
            result = export_onnx(
                genome,
                out,
                model=model,
                example_context=example_context,
                chunk_graph=chunk_graph,
                **options,
            )
            done[base.tag] = VariantExport(result.manifest, result.max_abs_diff, result.exporter)
        if variant.tag not in done:
            from workers.export.quantize import quantize_export

            manifest = quantize_export(out, variant)
            done[variant.tag] = VariantExport(
                manifest, manifest.check.decode_vs_prefill_max_diff, manifest.exporter
            )
    return {tag: done[tag] for tag in done}
