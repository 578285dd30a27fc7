"""Train and score one architecture on the MAD tasks.

Per task: the genome is compiled with the tasks' vocabulary (and the evaluation width, if
any), trained with AdamW on 2,000 generated sequences for a fixed number of epochs, and
scored on 200 fresh sequences. accuracy = correct argmax predictions / scored positions.
The MAD score is the unweighted mean accuracy over the six tasks; `mad_error` = 1 - score is
what a search minimises.

Compression decodes every input token from the hidden state at the COMPRESS position only,
through a small MLP that also sees the token's position (as in MAD), so an architecture is
scored on what it can pack into one state.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.genome import Genome
from core.scaling import scale_genome
from workers.model.compiler import compile_genome

from .tasks import IGNORE, TASKS, VOCAB, Task

N_TRAIN, N_TEST, BATCH = 2000, 200, 32


@dataclass
class MadResult:
    score: float
    accuracies: dict[str, float]
    wall_s: float
    seed: int
    failures: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class CompressionHead(nn.Module):
    def __init__(self, width: int, length: int):
        super().__init__()
        self.positions = nn.Embedding(length, width)
        self.mlp = nn.Sequential(
            nn.Linear(2 * width, 2 * width), nn.GELU(), nn.Linear(2 * width, VOCAB)
        )

    def forward(self, compressed: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, L, V)
        pos = self.positions.weight[None].expand(compressed.shape[0], -1, -1)
        return self.mlp(torch.cat([compressed[:, None].expand_as(pos), pos], dim=-1))


def _logits(model, head, x: torch.Tensor) -> torch.Tensor:
    if head is None:
        return model(x)
    return head(model.hidden_states(x)[:, -1])


def run_task(genome: Genome, task: Task, seed: int, lr: float = 3e-3) -> float:
    rng = np.random.default_rng([seed, list(TASKS).index(task.name)])
    x_train, y_train = task.generate(rng, N_TRAIN)
    x_test, y_test = task.generate(rng, N_TEST)
    torch.manual_seed(seed)
    model = compile_genome(genome, seed=seed)
    head = CompressionHead(genome.width, y_train.shape[1]) if task.compression else None
    params = list(model.parameters()) + (list(head.parameters()) if head else [])
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = task.epochs * (N_TRAIN // BATCH)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.1
    )
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    model.train()
    for epoch in range(task.epochs):
        order = torch.from_numpy(rng.permutation(N_TRAIN))
        for start in range(0, N_TRAIN - BATCH + 1, BATCH):
            idx = order[start : start + BATCH]
            logits = _logits(model, head, xt[idx])
            loss = F.cross_entropy(
                logits.reshape(-1, VOCAB), yt[idx].reshape(-1), ignore_index=IGNORE
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
    model.eval()
    with torch.no_grad():
        predictions = _logits(model, head, torch.from_numpy(x_test)).argmax(-1).numpy()
    scored = y_test != IGNORE
    return float((predictions[scored] == y_test[scored]).mean())


def evaluate_mad(
    genome: Genome | dict[str, Any],
    seed: int = 0,
    eval_width: int | None = None,
    tasks: list[str] | None = None,
    threads: int = 1,
    progress: Callable[[str, float], None] | None = None,
) -> MadResult:
    """Score a genome on the MAD tasks; a task that fails scores 0 with its reason kept."""
    torch.set_num_threads(threads)
    started = time.perf_counter()
    task_genome = scale_genome(Genome.coerce(genome), eval_width)
    task_genome.vocab_size = VOCAB  # the synthetic tasks' own token set
    accuracies: dict[str, float] = {}
    failures: dict[str, str] = {}
    for name in tasks or list(TASKS):
        try:
            accuracies[name] = run_task(task_genome, TASKS[name], seed)
        except (RuntimeError, ValueError) as exc:
            accuracies[name], failures[name] = 0.0, f"{type(exc).__name__}: {exc}"
        if progress is not None:
            progress(name, accuracies[name])
    score = float(np.mean(list(accuracies.values())))
    return MadResult(score, accuracies, time.perf_counter() - started, seed, failures)
