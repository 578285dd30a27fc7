"""Where one candidate's evaluation stands: a named stage and the only legal moves.

    QUEUED ──► TRAINING ──► QUANTIZED_QUALITY ──► EXPORTING ──► PROFILING ──► DONE
       │           │                │                   │             │
       └───────────┴────────────────┴───────────────────┴─────────────┴──────► FAILED

With multi-fidelity training (`training.fidelities`), TRAINING ends in RUNG_DONE at every
rung below the top one; the generation's rung decision (orchestrator/rung_decisions.py)
sends a promoted candidate back to TRAINING on the next rung's budget and lets the others go
on from RUNG_DONE with their best rung's result, as if TRAINING had just ended.

With `profiling.ahead_of_training`, a candidate is exported (untrained weights) and profiled
first and goes from PROFILING to TRAINING; after training it is DONE (or FAILED without
training, when a measured metric already breaks a constraint).

Stages run in this order, one piece of work at a time per candidate. A stage is skipped
when there is nothing to do: a quality result already in the evaluation cache skips
TRAINING; a job without `perplexity[:PREC]` skips QUANTIZED_QUALITY (so does one whose
quantized scores are cached); a job without hardware metrics or `model_bytes` ends after
the quality stages; exports already stored skip EXPORTING; a job with `model_bytes` but no
hardware metrics ends after EXPORTING. Any stage may fail, and a failed candidate keeps its
reason and the metrics it had (static costs at least) and gets the worst fitness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from core.manifest import GRAPH_REVISION
from core.stage_results import QualityResult
from orchestrator.search.loop import Individual

from .compute_ledger import ComputeLedger


class Stage(str, Enum):
    QUEUED = "queued"
    TRAINING = "training"
    RUNG_DONE = "rung_done"  # a lower rung trained; waiting for the generation's decision
    QUANTIZED_QUALITY = "quantized_quality"
    EXPORTING = "exporting"
    PROFILING = "profiling"
    DONE = "done"
    FAILED = "failed"


# Once quality is known (or skipped), a candidate goes on to any later stage or fails.
AFTER_QUALITY = frozenset(
    {Stage.QUANTIZED_QUALITY, Stage.EXPORTING, Stage.PROFILING, Stage.DONE, Stage.FAILED}
)
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.QUEUED: AFTER_QUALITY | {Stage.TRAINING, Stage.RUNG_DONE},
    Stage.TRAINING: AFTER_QUALITY | {Stage.RUNG_DONE},
    # promoted (TRAINING), or promoted with the next rung's result in the cache (RUNG_DONE)
    Stage.RUNG_DONE: AFTER_QUALITY | {Stage.TRAINING, Stage.RUNG_DONE},
    Stage.QUANTIZED_QUALITY: AFTER_QUALITY - {Stage.QUANTIZED_QUALITY},
    Stage.EXPORTING: frozenset({Stage.PROFILING, Stage.DONE, Stage.FAILED}),
    # measured ahead of training (profiling.ahead_of_training): training follows
    Stage.PROFILING: frozenset(
        {Stage.TRAINING, Stage.RUNG_DONE, Stage.QUANTIZED_QUALITY, Stage.DONE, Stage.FAILED}
    ),
    Stage.DONE: frozenset(),
    Stage.FAILED: frozenset(),
}


class IllegalTransition(RuntimeError):
    pass


@dataclass
class CandidateProgress:
    row_id: int  # the candidate's database row
    candidate: Individual
    stage: Stage = Stage.QUEUED
    metrics: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None
    compute: ComputeLedger = field(default_factory=ComputeLedger)
    rung: int = 0  # the multi-fidelity rung training is on (or last finished)
    rungs: list[dict[str, Any]] = field(default_factory=list)  # one entry per rung trained
    held: tuple[QualityResult, bytes | None] | None = None  # best rung's result at RUNG_DONE
    profiled: bool = False  # measured already (ahead of training)
    graph_revision: int | None = GRAPH_REVISION  # of the graphs its measurements came from

    @property
    def genome_hash(self) -> str:
        return self.candidate.hash

    @property
    def finished(self) -> bool:
        return self.stage in (Stage.DONE, Stage.FAILED)

    def advance(self, stage: Stage) -> None:
        if stage not in TRANSITIONS[self.stage]:
            raise IllegalTransition(
                f"candidate {self.genome_hash}: {self.stage.value} -> "
                f"{stage.value} is not a legal move"
            )
        self.stage = stage

    def fail(self, reason: str) -> None:
        self.advance(Stage.FAILED)
        self.failure = reason
