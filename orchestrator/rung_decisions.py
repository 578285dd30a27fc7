"""When a generation's multi-fidelity rung is decided, and who moves up.

A rung's decision waits until no candidate of the generation is still queued or training on
that rung or a lower one, so every candidate that can reach the rung is compared (the
decision is synchronous, hence the same after a resume). Candidates are compared on the
objectives every one of them already has (quality at this rung and the exact static costs;
hardware is measured after training) by `orchestrator.search.fidelity.promotions`.
"""

from __future__ import annotations

from typing import Iterable

from core.metrics import Constraint

from .candidate_state import CandidateProgress, Stage
from .search.fidelity import Rungs, promotions


def due_rung(progress: Iterable[CandidateProgress]) -> int | None:
    """The lowest rung whose decision can be taken now, or None."""
    progress = list(progress)
    waiting = [p.rung for p in progress if p.stage is Stage.RUNG_DONE]
    if not waiting:
        return None
    rung = min(waiting)
    busy = any(p.stage in (Stage.QUEUED, Stage.TRAINING) and p.rung <= rung for p in progress)
    return None if busy else rung


def decide(
    progress: Iterable[CandidateProgress],
    rung: int,
    rungs: Rungs,
    objectives: list[str],
    constraints: list[Constraint],
) -> tuple[list[CandidateProgress], list[CandidateProgress]]:
    """(promoted, released) among the candidates waiting at `rung`."""
    waiting = [p for p in progress if p.stage is Stage.RUNG_DONE and p.rung == rung]
    results = {p.genome_hash: p.metrics for p in waiting}

    def known(metric: str) -> bool:
        return all(m.get(metric) is not None for m in results.values())

    chosen = set(
        promotions(
            results,
            [m for m in objectives if known(m)],
            [c for c in constraints if known(c.metric)],
            rungs.keep(len(waiting)),
        )
    )
    return (
        [p for p in waiting if p.genome_hash in chosen],
        [p for p in waiting if p.genome_hash not in chosen],
    )
