"""A generation's compute and multi-fidelity rungs, for its stats (dashboard, API).

The driver keeps every candidate's ledger (orchestrator/compute_ledger.py) and rung list by
genome hash, from this run and from the database after a restore, and writes into each
generation's stats: what the generation's own candidates cost, what the job has cost so far,
how many candidates reached each rung, and the rank agreement (Kendall tau) between
consecutive rungs, over the generation and over the whole job so far.
"""

from __future__ import annotations

from typing import Any

from .compute_ledger import summed
from .search.fidelity import Rungs, rank_agreement


def compute_stats(
    ledgers: dict[str, dict[str, Any]], generation: list[str]
) -> dict[str, dict[str, float]]:
    return {
        "generation": summed([ledgers.get(h) for h in generation]),
        "job": summed(list(ledgers.values())),
    }


def _agreements(rungs: Rungs, entries: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for lower, upper in zip(rungs.budgets, rungs.budgets[1:]):
        at = [{e["tokens"]: e.get("perplexity") for e in rung_list} for rung_list in entries]
        pairs = {
            str(i): (r[lower], r[upper]) for i, r in enumerate(at) if lower in r and upper in r
        }
        out.append(
            {
                "tokens": [lower, upper],
                **rank_agreement(
                    {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}
                ),
            }
        )
    return out


def rung_stats(
    rungs: Rungs, by_hash: dict[str, list[dict[str, Any]]], generation: list[str]
) -> dict[str, Any] | None:
    """None for a job without fidelities."""
    if rungs.top == 0:
        return None
    mine = [by_hash[h] for h in generation if h in by_hash]
    return {
        "budgets": list(rungs.budgets),
        "reached": [sum(len(r) > i for r in mine) for i in range(len(rungs.budgets))],
        "agreement": _agreements(rungs, mine),
        "job_agreement": _agreements(rungs, list(by_hash.values())),
    }
