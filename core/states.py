"""The states the database stores for a job, a candidate and a profiling task, each with its
legal moves in one place.

They are `str` enums, so a state is stored and sent as its value ("queued", "leased") and
compares equal to it. The store checks every move it makes against these tables
(`check_move`); a candidate's finer-grained progress inside one orchestrator is
`orchestrator.candidate_state.Stage`. Torch- and server-free: the API, the store and the
orchestrator share them.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


JOB_MOVES: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    # a claim by another orchestrator after a crash keeps it running
    JobStatus.RUNNING: frozenset(
        {JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),  # resumed
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),  # resumed
}
TERMINAL_JOB = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
LIVE_JOB = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})  # whose tasks may be leased


class CandidateStatus(str, Enum):
    PENDING = "pending"  # somewhere in orchestrator.candidate_state.Stage
    DONE = "done"
    FAILED = "failed"  # with its reason and the worst fitness


CANDIDATE_MOVES: dict[CandidateStatus, frozenset[CandidateStatus]] = {
    CandidateStatus.PENDING: frozenset({CandidateStatus.DONE, CandidateStatus.FAILED}),
    CandidateStatus.DONE: frozenset(),
    CandidateStatus.FAILED: frozenset(),
}
EVALUATED_CANDIDATE = frozenset({CandidateStatus.DONE, CandidateStatus.FAILED})


class TaskState(str, Enum):
    QUEUED = "queued"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TASK_MOVES: dict[TaskState, frozenset[TaskState]] = {
    # leased; or cancelled when its job ends or its candidate stops waiting
    TaskState.QUEUED: frozenset({TaskState.LEASED, TaskState.CANCELLED}),
    # reported; failed (final, or out of attempts); back to the queue (released, a retryable
    # or uncounted failure, a lease that expired with attempts left); cancelled
    TaskState.LEASED: frozenset(
        {TaskState.DONE, TaskState.FAILED, TaskState.QUEUED, TaskState.CANCELLED}
    ),
    TaskState.DONE: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELLED: frozenset({TaskState.QUEUED}),  # a resumed job enqueues it again
}
OPEN_TASK = frozenset({TaskState.QUEUED, TaskState.LEASED})

S = TypeVar("S", JobStatus, CandidateStatus, TaskState)
_MOVES = {JobStatus: JOB_MOVES, CandidateStatus: CANDIDATE_MOVES, TaskState: TASK_MOVES}


class IllegalMove(ValueError):
    """A state change its table does not allow: a bug, never a user error."""


def check_move(current: str, new: S) -> S:
    """`new`, if moving there from `current` is legal; IllegalMove otherwise."""
    kind = type(new)
    if new not in _MOVES[kind][kind(current)]:
        raise IllegalMove(f"{kind.__name__}: {current} -> {new.value} is not a legal move")
    return new
