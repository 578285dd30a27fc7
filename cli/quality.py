"""`tailor train` and `tailor mad`: the quality half of a candidate's fitness, by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError

from cli.arch import load_genome
from cli.support import fail, parse_json, print_json
from core.strict import error_message


def train(
    genome_path: str = typer.Argument(..., metavar="GENOME.json"),
    tokens: int = typer.Option(200_000, help="training token budget"),
    seq_len: int = typer.Option(128, "--seq-len", help="sequence length"),
    batch: int = typer.Option(16, help="batch size"),
    lr: float = typer.Option(1e-2, help="peak learning rate"),
    seed: int = typer.Option(0, help="seed for weights and batch order"),
    data: Optional[str] = typer.Option(
        None, help="corpus: .txt, .jsonl, .parquet, a saved datasets dir; default the built-in KJV"
    ),
    tokenizer: str = typer.Option("bpe", help="bpe or byte"),
    vocab: Optional[int] = typer.Option(
        None,
        help="BPE vocabulary size; it is the genome's "
        "vocab_size (the default), another value is an error",
    ),
    eval_width: Optional[int] = typer.Option(
        None, "--eval-width", help="train at this width instead"
    ),
    threads: int = typer.Option(1, help="torch threads"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    out: Optional[Path] = typer.Option(Path("runs/train"), help="where trained weights go"),
    config_json: Optional[str] = typer.Option(
        None, "--config", help="a full training config as JSON (overrides)"
    ),
):
    """Train a genome for a token budget and print the result JSON (validation perplexity,
    loss curve, tokens/s, peak memory, split and tokenizer identity, weights path)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from core.training import BYTE_VOCAB_SIZE, TrainConfig

    parsed = load_genome(genome_path)
    # One vocabulary: the genome's (what `params` counts) is the tokenizer's.
    if tokenizer == "byte" and parsed.vocab_size != BYTE_VOCAB_SIZE:
        fail(
            f"the genome's vocab_size is {parsed.vocab_size} but the byte tokenizer has "
            f"{BYTE_VOCAB_SIZE} tokens: build the genome with --vocab {BYTE_VOCAB_SIZE}"
        )
    if vocab is not None and vocab != parsed.vocab_size:
        fail(
            f"--vocab {vocab} differs from the genome's vocab_size {parsed.vocab_size}: "
            "they are the same vocabulary"
        )
    fields = dict(
        tokens=tokens,
        seq_len=seq_len,
        batch_size=batch,
        lr=lr,
        seed=seed,
        data=data,
        tokenizer={"kind": tokenizer}
        if tokenizer == "byte"
        else {"kind": tokenizer, "vocab_size": parsed.vocab_size},
        eval_width=eval_width,
        threads=threads,
        device=device,
    )
    if config_json:
        overrides = parse_json(config_json, "--config")
        if not isinstance(overrides, dict):
            fail(f"--config must be a JSON object {{...}}, got {config_json[:40]}")
        fields.update(overrides)
    try:
        config = TrainConfig.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"training config {'.'.join(map(str, first['loc']))}: {first['msg']}")
    if data is not None and not Path(data).exists():
        fail(f"--data {data} does not exist")
    from workers.train.trainer import evaluate_quality  # torch: only once the input is good

    with Progress(
        TextColumn("training"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps  loss {task.fields[loss]:.3f}"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("train", total=None, loss=float("nan"))

        def progress(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, loss=loss)

        result = evaluate_quality(parsed.to_json(), config, out_dir=out, progress=progress)
    print_json(result.to_json())
    if result.status != "ok":
        raise typer.Exit(1)


def mad(
    genome_path: str = typer.Argument(..., metavar="GENOME.json"),
    seed: int = typer.Option(0, help="seed for task data and weights"),
    eval_width: Optional[int] = typer.Option(None, "--eval-width", help="score at this width"),
    task: Optional[list[str]] = typer.Option(None, help="only these tasks (repeatable)"),
    threads: int = typer.Option(1, help="torch threads"),
):
    """Score a genome on the MAD synthetic tasks; prints per-task accuracy and the mean."""
    from core.scaling import ScalingError, scale_genome
    from core.training import TrainConfig
    from workers.mad.tasks import TASKS

    parsed = load_genome(genome_path)
    genome = parsed.to_json()
    try:  # `train`'s bounds on the seed and torch threads
        TrainConfig.model_validate({"threads": threads, "seed": seed})
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"--{first['loc'][0]} {first['input']}: {error_message(first)}")
    for name in task or []:
        if name not in TASKS:
            fail(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    try:
        scale_genome(parsed, eval_width)  # what evaluate_mad scores: refused before torch loads
    except ScalingError as exc:
        fail(str(exc))
    from workers.mad.runner import evaluate_mad  # torch: only once the input is good

    def progress(name: str, accuracy: float) -> None:
        typer.echo(f"{name:26s} {accuracy:.3f}", err=True)

    try:
        result = evaluate_mad(
            genome, seed=seed, eval_width=eval_width, tasks=task, threads=threads, progress=progress
        )
    except ScalingError as exc:
        fail(str(exc))
    print_json(result.to_json())


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("mad")(mad)
