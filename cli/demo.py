"""`tailor demo`: the embedded end-to-end run on one machine.

Everything in one process tree: a SQLite file, the API on localhost, a host profiling agent,
and the orchestrator on a local Ray. The demo submits a small job over REST (objectives:
perplexity, decode latency at 128 tokens measured by the host agent, parameters), shows
progress while generations complete, then prints the Pareto front. It keeps serving the
API until Ctrl-C, or exits with --exit.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import typer

DEMO_SPEC = {
    "name": "demo",
    "objectives": ["perplexity", "decode_ms@128[host]", "params"],
    "search_space": {
        "classes": ["attention", "hyena", "hyena_x", "hyena_y", "gla", "swiglu"],
        "widths": [32, 48, 64],
        "depth_min": 2,
        "depth_max": 8,
        "vocab_size": 257,
    },
    "evolution": {"population": 8, "generations": 4, "seed": 0},
    "training": {
        "tokens": 40_000,
        "seq_len": 64,
        "batch_size": 16,
        "eval_tokens": 16_384,
        "tokenizer": {"kind": "byte"},
    },
    "profiling": {
        "devices": ["host"],
        "prefill_lengths": [128],
        "decode_contexts": [128],
        "warmup": 2,
        "repeats": 10,
    },
}


def demo(
    out: Path = typer.Option(Path("runs/demo"), help="data directory (SQLite file, artifacts)"),
    port: int = typer.Option(0, help="API port (0: a free one)"),
    population: int = typer.Option(8, min=2, help="population size"),
    generations: int = typer.Option(4, min=1, help="generations"),
    tokens: int = typer.Option(40_000, min=1000, help="training tokens per candidate"),
    workers: int = typer.Option(2, min=1, help="local Ray CPUs"),
    precision: str = typer.Option(
        "float32",
        help="float32, or int8/int4: profile and score "
        "the quantized graphs (perplexity[:P], decode_ms@128[host:P])",
    ),
    fidelities: str = typer.Option(
        "",
        help="multi-fidelity training: comma-separated rung budgets ending at --tokens, "
        "e.g. 4000,13000,40000 (successive halving, one in three moves up)",
    ),
    exit_after: bool = typer.Option(False, "--exit", help="exit when the job is done"),
):
    """Run the whole system on this machine and search a small architecture space."""
    from rich.console import Console
    from rich.markup import escape

    from core.precision import PRECISIONS

    if precision not in PRECISIONS:
        from cli.support import fail

        fail(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    from cli.embedded import start_embedded
    from cli.rest import TailorClient

    console = Console(width=max(Console().width, 150))
    system = start_embedded(out, port)
    url, admin_key, app = system.url, system.admin_key, system.app
    console.print(f"dashboard on {url} (API docs {url}/docs); SQLite {out / 'tailor.db'}")
    console.print("host profiling agent enrolled (device class 'host')")

    spec = _job_spec(population, generations, tokens, precision)
    if fidelities:
        spec["training"]["fidelities"] = _budgets(fidelities)
    api = TailorClient(url, admin_key)
    job_id = api.submit_job(spec)["id"]
    console.print(escape(f"submitted job {job_id}: objectives {', '.join(spec['objectives'])}"))

    outcome: dict[str, str] = {}
    runner = _run_job(app, job_id, workers, outcome)
    total = population + (generations - 1) * (population - min(2, population - 1))
    _follow(console, api, job_id, runner, total, generations)
    _print_front(console, api.pareto(job_id), job_id, spec["objectives"], outcome.get("status"))
    console.print(
        f"dashboard: {url}/#/jobs/{job_id}   API: {url}/docs   "
        f"(admin key in {out / 'admin_key.txt'})"
    )
    if exit_after:
        system.stop()
        return
    console.print("serving until Ctrl-C")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        system.stop()


def _budgets(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        from cli.support import fail

        fail(f"--fidelities {text!r} must be comma-separated whole numbers of tokens")
        raise


def _job_spec(population: int, generations: int, tokens: int, precision: str) -> dict:
    """DEMO_SPEC at the command's sizes; a quantized precision scores and profiles its graphs."""
    spec = {
        **DEMO_SPEC,
        "evolution": {
            **DEMO_SPEC["evolution"],
            "population": population,
            "generations": generations,
            "elitism": min(2, population - 1),
        },
        "training": {**DEMO_SPEC["training"], "tokens": tokens},
    }
    if precision != "float32":
        spec["objectives"] = [
            f"perplexity[:{precision}]",
            f"decode_ms@128[host:{precision}]",
            "params",
        ]
    return spec


def _run_job(app, job_id: int, workers: int, outcome: dict[str, str]) -> threading.Thread:
    """Claim and run the job in a daemon thread, so the main thread can show progress."""
    from orchestrator.driver import JobRunner
    from orchestrator.job_support import owner_id
    from orchestrator.ray_evaluator import connect
    from store import jobs as job_store

    connect(num_cpus=workers)
    sessions = app.state.sessions
    owner = owner_id()
    claimed = job_store.claim_job(sessions, owner)
    if claimed is None or claimed.id != job_id:
        raise typer.Exit(1)
    runner = threading.Thread(
        target=lambda: outcome.update(
            status=JobRunner(
                sessions, app.state.settings.resolved_artifact_dir(), job_id, owner
            ).run()
        ),
        daemon=True,
    )
    runner.start()
    return runner


def _follow(
    console, api, job_id: int, runner: threading.Thread, total: int, generations: int
) -> None:
    """Poll like the dashboard (generations?since) until the run ends, each generation once."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} evaluations"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("searching", total=total)
        seen = 0

        def poll() -> int:
            job = api.job(job_id)
            bar.update(
                task,
                completed=job["evaluations_done"],
                description=f"generation {job['generations_done']}/{generations}",
            )
            gens = api.generations(job_id, since=seen)["generations"]  # incremental
            for g in gens:
                bar.console.print(
                    f"generation {g['index']}: {g['evaluations']} evaluated, "
                    f"{len(g['pareto'])} on the Pareto front, hypervolume "
                    f"{g['hypervolume']:.3f}"
                )
            return gens[-1]["index"] + 1 if gens else seen

        while runner.is_alive():
            seen = poll()
            time.sleep(1.0)
        seen = poll()
        bar.update(task, completed=total)


def _print_front(
    console, front: dict, job_id: int, objectives: list[str], status: str | None
) -> None:
    """The Pareto front as a table, best first by the first objective."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        "id",
        "gen",
        "origin",
        *map(escape, objectives),
        title=f"job {job_id} ({status}): Pareto front",
    )
    for c in sorted(front["candidates"], key=lambda c: c["metrics"].get(objectives[0], 1e9)):
        cells = [
            f"{c['metrics'].get(o, float('nan')):,.3f}"
            if o != "params"
            else f"{c['metrics'].get(o, 0):,.0f}"
            for o in objectives
        ]
        table.add_row(str(c["id"]), str(c["generation"]), c["origin"], *cells)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
