"""Job, candidate and task states: every state has its legal moves, and the store refuses a
move its table does not allow."""

from __future__ import annotations

import pytest

from core.states import (
    CANDIDATE_MOVES,
    JOB_MOVES,
    TASK_MOVES,
    CandidateStatus,
    IllegalMove,
    JobStatus,
    TaskState,
    check_move,
)


@pytest.mark.parametrize(
    "kind, moves",
    [(JobStatus, JOB_MOVES), (TaskState, TASK_MOVES), (CandidateStatus, CANDIDATE_MOVES)],
)
def test_every_state_has_its_moves_and_strings_are_its_values(kind, moves):
    assert set(moves) == set(kind)
    for state, targets in moves.items():
        assert state == state.value and kind(state.value) is state
        for target in targets:
            assert check_move(state.value, target) is target
        for target in set(kind) - targets:
            with pytest.raises(IllegalMove, match=f"{state.value} -> {target.value}"):
                check_move(state.value, target)


def test_the_store_refuses_to_end_a_job_twice(sessions):
    from store import jobs

    job = jobs.create_job(sessions, "j", {})
    assert jobs.claim_job(sessions, "me").id == job.id
    jobs.finish_job(sessions, job.id, JobStatus.COMPLETED)
    with pytest.raises(IllegalMove, match="completed -> failed"):
        jobs.finish_job(sessions, job.id, "failed")
    assert jobs.get_job(sessions, job.id).status == "completed"
    assert jobs.resume_job(sessions, job.id).status == "completed"  # only failed/cancelled resume
