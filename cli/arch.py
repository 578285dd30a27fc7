"""`tailor arch ...`: presets, validity checks, exact static costs, ONNX export."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.support import fail, output_dir, parse_json, print_json, read_text
from cli.weights import load_problem, read_state_dict
from core.genome import GLOBAL_RANGES
from core.presets import SLOTS_PER_LAYER
from core.protocol import MAX_LENGTH

arch = typer.Typer(
    help="Architectures: presets, validity checks, static costs, ONNX export.", no_args_is_help=True
)


def load_genome(path: str):
    """Read and validate a genome JSON file ('-' = stdin); exit 2 naming the problem."""
    from core import Genome, GenomeError

    data = parse_json(read_text(path), path)
    try:
        return Genome.from_json(data)
    except GenomeError as exc:
        fail(f"invalid genome: {exc}")


@arch.command("presets")
def arch_presets(context: int = typer.Option(1024, help="context length for cache bytes")):
    """List the preset architectures with their size and cache at a context."""
    from rich.console import Console
    from rich.table import Table

    from core import PRESETS, costs, preset

    table = Table("preset", "layout", "params", f"cache@{context} (fp16)", "summary")
    for name, p in PRESETS.items():
        genome = preset(name)
        data = genome.to_json()
        table.add_row(
            name,
            genome.describe()[:48],
            f"{costs.params(data):,}",
            f"{costs.cache_bytes(data, context):,}",
            p.summary,
        )
    Console(width=160).print(table)


@arch.command("preset")
def arch_preset(
    name: str = typer.Argument(
        ..., help="transformer++, lfm2, hyena-edge, striped-hyena, mobilellm"
    ),
    width: Optional[int] = typer.Option(
        None, min=GLOBAL_RANGES["width"][0], max=GLOBAL_RANGES["width"][1], help="model width"
    ),
    depth: Optional[int] = typer.Option(
        None,
        min=1,
        max=GLOBAL_RANGES["depth"][1] // SLOTS_PER_LAYER,  # the genome's depth counts slots
        help="layers (each a sequence mixer + a channel mixer)",
    ),
    heads: Optional[int] = typer.Option(None, help="attention query heads"),
    kv_heads: Optional[int] = typer.Option(None, "--kv-heads", help="attention key/value heads"),
    ffn: Optional[int] = typer.Option(None, help="SwiGLU inner width"),
    vocab: Optional[int] = typer.Option(
        None,
        min=GLOBAL_RANGES["vocab_size"][0],
        max=GLOBAL_RANGES["vocab_size"][1],
        help="vocabulary size",
    ),
    tie: Optional[bool] = typer.Option(
        None, "--tie/--no-tie", help="tie input and output embeddings"
    ),
    repeat: Optional[int] = typer.Option(
        None,
        min=GLOBAL_RANGES["block_repeat"][0],
        max=GLOBAL_RANGES["block_repeat"][1],
        help="immediate block-wise repeat (MobileLLM-LS)",
    ),
):
    """Print a preset's genome JSON, with optional size overrides."""
    from core import GenomeError, preset

    try:
        genome = preset(
            name,
            width=width,
            layers=depth,
            heads=heads,
            kv_heads=kv_heads,
            ffn=ffn,
            vocab=vocab,
            tie=tie,
            repeat=repeat,
        )
    except KeyError as exc:
        fail(str(exc.args[0]))
    except GenomeError as exc:
        fail(f"these overrides make an invalid genome: {exc}")
    print_json(genome.to_json())


@arch.command("check")
def arch_check(genome_path: str = typer.Argument(..., metavar="GENOME.json")):
    """Exit 0 if the genome is valid, else 2 with one line naming the bad gene."""
    genome = load_genome(genome_path)
    typer.echo(f"ok {genome.hash()} {genome.describe()}")


@arch.command("stats")
def arch_stats(
    genome_path: str = typer.Argument(..., metavar="GENOME.json"),
    context: int = typer.Option(1024, min=1, help="context length L for the decode cache"),
    dtype: str = typer.Option("float16", help="cache dtype: float32, float16, bfloat16, int8"),
):
    """Print exact static costs: parameters and decode-cache bytes after L tokens."""
    from core import costs

    genome = load_genome(genome_path)
    if dtype not in costs.DTYPE_BYTES:
        fail(f"--dtype must be one of {', '.join(costs.DTYPE_BYTES)}, got {dtype!r}")
    data = genome.to_json()
    per_token, fixed = costs.cache_split(data)
    print_json(
        {
            "hash": genome.hash(),
            "layout": genome.describe(),
            "params": costs.params(data),
            "context": context,
            "dtype": dtype,
            "cache_bytes": costs.cache_bytes(data, context, dtype),
            "cache_elements_per_token": per_token,
            "cache_elements_fixed": fixed,
        }
    )


@arch.command("export")
def arch_export(
    genome_path: str = typer.Argument(..., metavar="GENOME.json"),
    out: Path = typer.Option(..., help="output directory"),
    context: int = typer.Option(
        16, min=4, max=MAX_LENGTH, help="example prompt length used for tracing"
    ),
    weights: Optional[Path] = typer.Option(None, help="trained state_dict (.pt) to export"),
    precision: list[str] = typer.Option(
        ["float32"],
        help="float32, int8 (dynamic, "
        "onnxruntime.quantization) or int4 (MatMulNBits); "
        "repeat for several",
    ),
    attention: str = typer.Option("plain", help="plain, or fused (GroupQueryAttention)"),
    int4_block_size: int = typer.Option(32, help="int4: weights per quantization block"),
    chunk_graph: bool = typer.Option(
        False, help="also the chunk graph (prefill_chunk.*.onnx): a prompt a chunk at a time"
    ),
):
    """Write the graphs, their one weights file and the manifest of every asked precision
    (prefill.onnx, prefill_last.onnx, decode.onnx, weights.data, manifest.json for float32,
    with --chunk-graph prefill_chunk.onnx;
    prefill.int8.onnx, ..., weights.int8.data for the others) and genome.json; print
    each variant's check: onnxruntime vs torch for float32, decode vs prefill and the
    deviation from float for quantized ones."""
    genome = load_genome(genome_path)
    from core.precision import PRECISIONS, ExportSpec

    bad = [p for p in precision if p not in PRECISIONS]
    if bad:
        fail(f"--precision {bad[0]!r} is not one of {', '.join(PRECISIONS)}")
    try:
        spec = ExportSpec(attention=attention, int4_block_size=int4_block_size)
    except ValueError as exc:
        fail(f"bad export option: {exc.errors()[0]['msg'] if hasattr(exc, 'errors') else exc}")
    from workers.export.variants import export_variants
    from workers.model.compiler import compile_genome

    data = genome.to_json()
    model = compile_genome(data, seed=0)
    if weights is not None:
        why = load_problem(model, read_state_dict(weights, f"--weights {weights}"))
        if why:
            fail(f"--weights {weights} does not fit this genome: {why}")
    output_dir(out)
    try:
        exported = export_variants(
            data,
            out,
            [spec.variant(p) for p in precision],
            model=model,
            example_context=context,
            chunk_graph=chunk_graph,
        )
    except ValueError as exc:
        fail(f"export failed: {exc}")
    report = {
        tag: {
            "max_abs_diff": e.max_abs_diff,
            **({"check": e.manifest.check.model_dump()} if e.manifest.check else {}),
            "model_bytes": e.manifest.model_bytes,
        }
        for tag, e in exported.items()
    }
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    first = next(iter(exported.values()))
    print_json(
        {
            "out": str(out),
            "files": files,
            "variants": {tag or "float32": info for tag, info in report.items()},
            "max_abs_diff": report.get("", next(iter(report.values())))["max_abs_diff"],
            "params": first.manifest.params,
        }
    )


def register(app: typer.Typer) -> None:
    app.add_typer(arch, name="arch")
