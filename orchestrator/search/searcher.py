"""The searcher contract: what the driver and the benchmarks need from any search.

`ask(generation)` returns the candidates a generation evaluates, deterministically from what
was told before it (so a driver restored from the database after a crash asks again and
gets the same proposals); `tell(hash, metrics, fidelity)` records one candidate's metrics
(None when it failed) and the training budget its quality was read at, so a multi-fidelity
scheduler (orchestrator/search/fidelity.py) can tell a low-rung result and overwrite it when
the candidate is promoted; `complete(generation, offspring)` closes the generation (survival
and its summary). `SearchLoop` implements it for every algorithm of the registry
(orchestrator/search/algorithms/), so a new algorithm is one file, not a new loop.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .evolution import Child


@runtime_checkable
class Searcher(Protocol):
    def ask(self, generation: int) -> list[Child]: ...

    def tell(
        self, genome_hash: str, metrics: dict[str, Any] | None, fidelity: int | None = None
    ) -> None: ...

    def complete(self, generation: int, offspring: list[str]) -> Any: ...
