"""`tailor demo`: the embedded end-to-end run on one machine."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.commands.arch import arch_presets


def demo(out: Path = typer.Option(Path("runs/demo"), help="where exports are written")):
    """The embedded demo. Until the search lands it walks the architecture toolchain:
    every preset's static costs, then an ONNX export of two presets checked in onnxruntime."""
    from orchestrator.genome import preset
    from workers.export.onnx_export import export_onnx

    arch_presets(context=1024)
    for name in ("transformer++", "hyena-edge"):
        genome = preset(name)
        result = export_onnx(genome.to_json(), out / name)
        typer.echo(f"exported {name} -> {out / name}  onnxruntime vs torch max abs diff "
                   f"{result.max_abs_diff:.2e}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
