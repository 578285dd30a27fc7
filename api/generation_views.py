"""The body of `generations?since=N`, assembled from cached per-generation fragments.

A written generation never changes, nor do the candidates born in it (they were all
evaluated before it was written). So each generation's JSON and the JSON of each candidate
born in it are serialised once per server process; a poll after a new generation only
serialises that generation, the candidates still being evaluated (born after the newest
generation) and any older survivor not cached yet. The bytes are those
`GenerationsResponse.model_dump_json()` would give: the same fields, candidates by id.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from api.schemas.public import CandidateSummary, GenerationPublic
from store import SessionFactory
from store import results as store
from store.models import Candidate


def summary(c: Candidate) -> CandidateSummary:
    return CandidateSummary(
        id=c.id,
        genome_hash=c.genome_hash,
        generation=c.generation,
        origin=c.origin,
        status=c.status,
        metrics=c.metrics or {},
        failure=c.failure,
        predictions=c.predictions or {},
        compute=c.compute,
        rungs=c.rungs,
    )


def _candidate_json(c: Candidate) -> bytes:
    return summary(c).model_dump_json().encode()


@dataclass
class _JobFragments:
    generations: dict[int, bytes] = field(default_factory=dict)  # index -> GenerationPublic
    born_in: dict[int, list[int]] = field(default_factory=dict)  # index -> candidate ids
    candidates: dict[int, bytes] = field(default_factory=dict)  # id -> CandidateSummary
    # Held while written generations are serialised: concurrent first loads of a job (every
    # dashboard opened at once, each with another version) serialise them once, not each.
    filling: threading.Lock = field(default_factory=threading.Lock)


class GenerationViews:
    def __init__(self, max_jobs: int = 32):
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[int, _JobFragments] = OrderedDict()
        self._lock = threading.Lock()

    def _fragments(self, job_id: int) -> _JobFragments:
        with self._lock:
            fragments = self._jobs.setdefault(job_id, _JobFragments())
            self._jobs.move_to_end(job_id)
            while len(self._jobs) > self.max_jobs:
                self._jobs.popitem(last=False)
            return fragments

    @staticmethod
    def _fill(sessions: SessionFactory, job_id: int, fragments: _JobFragments, rows) -> None:
        """Serialise the generations in `rows` not cached yet, and the candidates born in
        them (immutable once their generation is written)."""
        missing = [g.index for g in rows if g.index not in fragments.generations]
        if not missing:
            return
        born = store.candidates_born(sessions, job_id, generations=missing)
        by_generation: dict[int, list[int]] = {i: [] for i in missing}
        for c in born:
            fragments.candidates[c.id] = _candidate_json(c)
            by_generation.setdefault(c.generation, []).append(c.id)
        for g in rows:
            if g.index in by_generation:
                fragments.born_in[g.index] = by_generation[g.index]
                fragments.generations[g.index] = (
                    GenerationPublic(
                        index=g.index,
                        population=g.population,
                        pareto=g.pareto,
                        hypervolume=g.hypervolume,
                        evaluations=g.evaluations,
                        stats=g.stats,
                        created_at=g.created_at,
                    )
                    .model_dump_json()
                    .encode()
                )

    def body(
        self,
        sessions: SessionFactory,
        job_id: int,
        since: int,
        status: str,
        born: int | None = None,
    ) -> bytes:
        """The response bytes. `born` is the poll version's count of candidates born after
        the newest generation: 0 skips reading them (a candidate born after that version
        was read changes the next version, so a poller gets it with its next poll)."""
        fragments = self._fragments(job_id)
        rows = store.generations_since(sessions, job_id, since)
        if any(g.index not in fragments.generations for g in rows):
            with fragments.filling:  # another request may have filled them meanwhile
                self._fill(sessions, job_id, fragments, rows)
        chosen: dict[int, bytes] = {}
        if rows:
            newest = rows[-1].index
            mentioned = {i for g in rows for i in g.population + g.pareto}
            for g in rows:
                for i in fragments.born_in.get(g.index, []):
                    chosen[i] = fragments.candidates[i]
            # Survivors born before `since` (cached once their generation was read) ...
            older = [i for i in mentioned - chosen.keys() if i not in fragments.candidates]
            if older:
                for c in store.candidates_for(sessions, job_id, set(older)):
                    if c.status != "pending":
                        fragments.candidates[c.id] = _candidate_json(c)
                    chosen[c.id] = _candidate_json(c)
            for i in mentioned - chosen.keys():
                if i in fragments.candidates:
                    chosen[i] = fragments.candidates[i]
            # ... and the candidates still being evaluated: always read afresh.
            if born != 0:
                for c in store.candidates_born(sessions, job_id, after=newest):
                    chosen[c.id] = _candidate_json(c)
        generations = b",".join(fragments.generations[g.index] for g in rows)
        candidates = b",".join(chosen[i] for i in sorted(chosen))
        return b'{"job_id":%d,"status":%s,"generations":[%s],"candidates":[%s]}' % (
            job_id,
            json.dumps(status).encode(),
            generations,
            candidates,
        )
