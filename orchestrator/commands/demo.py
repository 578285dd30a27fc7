"""`tailor demo`: the embedded run on one machine.

Until the service side lands (API, database, phone agents), the demo runs the search in
memory: a small NSGA-II job on local Ray — real training on the built-in corpus for
perplexity, exact static costs — then prints the Pareto table and exports the front's
smallest-cache member to ONNX. The full embedded demo (SQLite, API and dashboard, host
profiling agent) replaces this when the orchestrator's persistence exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("runs/demo"), help="where results and exports are written"),
    population: int = typer.Option(6, min=2, help="population size"),
    generations: int = typer.Option(3, min=1, help="generations"),
    tokens: int = typer.Option(40_000, min=1000, help="training tokens per candidate"),
    workers: int = typer.Option(2, min=1, help="local Ray CPUs"),
    seed: int = typer.Option(0, help="search seed"),
):
    """Run a small architecture search on this machine and print its Pareto front."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from orchestrator.evaluation import Evaluator, connect
    from orchestrator.genome import SearchSpace
    from orchestrator.search.evolution import EvolutionParams
    from orchestrator.search.loop import SearchLoop
    from orchestrator.search.metrics import static_metrics
    from orchestrator.search.motifs import enrichment
    from workers.export.onnx_export import export_onnx

    console = Console(width=max(Console().width, 150))
    objectives = ["perplexity", "params", "cache_bytes@1024"]
    config = {"tokens": tokens, "seq_len": 64, "batch_size": 16,
              "tokenizer": {"kind": "byte"}, "eval_tokens": 16_384}
    space = SearchSpace(classes=["attention", "hyena", "hyena_x", "hyena_y", "gla", "swiglu"],
                        widths=[32, 48, 64], depth_min=2, depth_max=8, vocab_size=257)
    params = EvolutionParams(population=population, generations=generations, seed=seed,
                             elitism=min(2, population - 1))
    loop = SearchLoop(space, params, objectives)
    console.print(f"[bold]Tailor demo[/bold]: NSGA-II, population {population}, {generations} "
                  f"generations, objectives {', '.join(objectives)}; {tokens:,} training "
                  "tokens per candidate on the built-in KJV corpus")
    connect(num_cpus=workers)
    evaluator = Evaluator()
    total = population + (generations - 1) * params.offspring_per_generation

    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} evaluations"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("searching", total=total)

        def evaluate(candidates):
            by_key = {str(i): c for i, c in enumerate(candidates)}
            for key, c in by_key.items():
                evaluator.submit_quality(key, c.genome.to_json(), config, timeout_s=600)
            while evaluator.in_flight():
                for finished in evaluator.collect(1.0):
                    c = by_key[finished.key]
                    c.metrics = static_metrics(c.genome.to_json(), objectives)
                    record = finished.value["result"] if finished.ok else {}
                    if record.get("status") == "ok":
                        c.metrics["perplexity"] = record["perplexity"]
                    bar.advance(task)

        def on_generation(summary):
            bar.console.print(f"generation {summary.index}: {summary.evaluations} evaluated, "
                              f"{len(summary.pareto)} on the Pareto front, hypervolume "
                              f"{summary.hypervolume:.3f}")

        loop.run(evaluate, on_generation)

    front = sorted((loop.archive[h] for h in loop.history[-1].pareto),
                   key=lambda c: c.metrics["perplexity"])
    table = Table("hash", "gen", "origin", "perplexity", "params", "cache@1024 B", "layout",
                  title="Pareto front")
    for c in front:
        table.add_row(c.hash[:10], str(c.generation), c.origin,
                      f"{c.metrics['perplexity']:.3f}", f"{c.metrics['params']:,.0f}",
                      f"{c.metrics['cache_bytes@1024']:,.0f}", c.genome.describe()[:80])
    console.print(table)
    for row in enrichment([c.genome for c in front],
                          [c.genome for c in loop.archive.values()], top=5):
        console.print(f"motif {row['motif']!r}: {row['pareto_share']:.0%} of the front, "
                      f"{row['population_share']:.0%} of all ({row['enrichment']}x)")

    out.mkdir(parents=True, exist_ok=True)
    (out / "pareto.json").write_text(json.dumps(
        [{"hash": c.hash, "metrics": c.metrics, "genome": c.genome.to_json()} for c in front],
        indent=2))
    smallest = min(front, key=lambda c: c.metrics["cache_bytes@1024"])
    export = export_onnx(smallest.genome.to_json(), out / smallest.hash)
    console.print(f"exported the smallest-cache member {smallest.hash[:10]} to "
                  f"{out / smallest.hash} (onnxruntime vs torch max abs diff "
                  f"{export.max_abs_diff:.1e}); front written to {out / 'pareto.json'}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
