"""The two models `bench.inference` compares and their ONNX variants: the matched pair, and
each (model, variant) exported into a folder laid out as an agent's task folder, with the
chunk graph (prefill runs the prompt a chunk at a time)."""

from __future__ import annotations

import json
from pathlib import Path

from core import costs, preset
from core.manifest import GraphManifest
from core.precision import Variant
from workers.export.variants import export_variants

VARIANTS = {
    "float32": Variant(),
    "int8": Variant("int8"),
    "int4": Variant("int4"),
    "float32-fused": Variant(attention="fused"),
    "int4-fused": Variant("int4", "fused"),
}  # the last: what onnxruntime-genai ships
ARCHS = ("transformer++", "hyena-edge")


def matched_pair(width: int, layers: int, heads: int, kv_heads: int, ffn: int, vocab: int):
    """transformer++ at the given size, and hyena-edge with its SwiGLU width chosen so the
    parameter counts match as closely as multiples of 8 allow."""
    base = dict(width=width, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab)
    transformer = preset("transformer++", ffn=ffn, **base).to_json()
    target = costs.params(transformer)
    best = min(
        range(8, 4 * ffn, 8),
        key=lambda f: abs(costs.params(preset("hyena-edge", ffn=f, **base).to_json()) - target),
    )
    hybrid = preset("hyena-edge", ffn=best, **base).to_json()
    return transformer, hybrid


def variant_folder(export_dir: Path, variant: Variant) -> Path:
    """A folder laid out as an agent's task folder: the variant's graphs (linked) and its
    manifest as manifest.json."""
    folder = export_dir / f"run-{variant.tag or 'float32'}"
    folder.mkdir(exist_ok=True)
    manifest = json.loads((export_dir / variant.file("manifest")).read_text())
    for name in GraphManifest.model_validate(manifest).files:  # graphs and their weights
        (folder / name).symlink_to(export_dir / name)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def export_all(genomes: dict[str, dict], variants: list[str], tmp: Path) -> tuple[dict, ...]:
    """Every model at every variant, each in a folder laid out as an agent's task folder; the
    file sizes and fused layers are read from the manifests, as an agent would read them."""
    dirs: dict = {}
    model_bytes: dict[str, dict] = {name: {} for name in genomes}
    fused_layers: dict[str, dict] = {name: {} for name in genomes}
    for name, genome in genomes.items():
        dirs[name] = tmp / name
        wanted = [VARIANTS[v] for v in variants]
        exported = export_variants(genome, dirs[name], wanted, chunk_graph=True)
        for v in variants:
            manifest = exported[VARIANTS[v].tag].manifest
            model_bytes[name][v] = manifest.model_bytes
            fused_layers[name][v] = manifest.fused_attention_layers
            dirs[(name, v)] = variant_folder(dirs[name], VARIANTS[v])
    return dirs, model_bytes, fused_layers
