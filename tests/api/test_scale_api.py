"""`POST /jobs/{id}/scale` and scale blocks in submitted specs: a request that cannot make a
scale-up is a 4xx naming the field (never a 500), and a hand-written scale block's genomes
and ids are checked when it is submitted, not first by the orchestrator, and its members
against what its source job gives."""

from __future__ import annotations

import pytest

from core import preset
from core.strict import ID_MAX
from store import jobs as job_store
from store import results as result_store

ADMIN = {"Authorization": "Bearer admin-secret"}
SPEC = {"name": "source", "objectives": ["perplexity", "params"]}


def completed_job(
    client, front_size: int, presets: int = 0, perplexity_offset: float = 0.0
) -> tuple[int, list[int]]:
    """A completed job of three evaluated candidates whose last generation's front holds
    the first `front_size`; the last `presets` are presets."""
    sessions = client.app.state.sessions
    job_id = client.post("/api/v1/jobs", json=SPEC, headers=ADMIN).json()["id"]
    genomes = [preset("transformer++", width=64, layers=n + 1, vocab=257) for n in range(3)]
    rows = result_store.add_candidates(
        sessions,
        job_id,
        0,
        [
            {
                "genome": g.to_json(),
                "genome_hash": g.hash(),
                "origin": "preset:transformer++" if i >= len(genomes) - presets else "random",
            }
            for i, g in enumerate(genomes)
        ],
    )
    for i, row in enumerate(rows):
        metrics = {"perplexity": 9.0 - i + perplexity_offset, "params": 1000 + i}
        result_store.set_candidate_result(sessions, row.id, "done", metrics)
    ids = [r.id for r in rows]
    result_store.write_generation(sessions, job_id, 0, ids, ids[:front_size], 0.5, len(ids))
    assert job_store.claim_job(sessions, "test").id == job_id
    job_store.finish_job(sessions, job_id, "completed")
    return job_id, ids


def test_a_scale_up_of_one_member_is_422_naming_top(client):
    job_id, _ = completed_job(client, front_size=2)
    response = client.post(
        f"/api/v1/jobs/{job_id}/scale", json={"top": 1, "include_presets": False}, headers=ADMIN
    )
    assert response.status_code == 422, response.text
    assert "top" in response.json()["detail"] and "at least 2 members" in response.text
    made = client.post(
        f"/api/v1/jobs/{job_id}/scale", json={"top": 2, "include_presets": False}, headers=ADMIN
    )
    assert made.status_code == 201, made.text
    spec = client.get(f"/api/v1/jobs/{made.json()['id']}").json()["spec"]
    assert len(spec["scale"]["members"]) == spec["evolution"]["population"] == 2


def test_a_resize_that_fails_names_the_field_asked_for(client):
    job_id, _ = completed_job(client, front_size=2)
    both = client.post(
        f"/api/v1/jobs/{job_id}/scale",
        json={"top": 2, "include_presets": False, "width": 60, "depth": 4},
        headers=ADMIN,
    )
    wide = client.post(
        f"/api/v1/jobs/{job_id}/scale",
        json={"top": 2, "include_presets": False, "width": 60},
        headers=ADMIN,
    )
    assert wide.status_code == 422, wide.text
    assert wide.json()["detail"].startswith("width:") and "cannot be resized" in wide.text
    assert both.status_code == 422, both.text  # both asked: the body is named
    assert both.json()["detail"].startswith("body:") and "cannot be resized" in both.text


def test_a_body_that_is_not_json_names_the_body_not_an_offset(client):
    job_id, _ = completed_job(client, front_size=2)
    response = client.post(
        f"/api/v1/jobs/{job_id}/scale",
        content=b"top=1",
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body: JSON decode error"), response.text


def test_a_job_with_nothing_evaluated_on_its_front_is_409(client):
    job_id, _ = completed_job(client, front_size=0)
    response = client.post(
        f"/api/v1/jobs/{job_id}/scale", json={"include_presets": False}, headers=ADMIN
    )
    assert response.status_code == 409, response.text
    assert "no successfully evaluated front member" in response.text


def scale_up_spec(client, front_size: int, **job) -> tuple[int, dict]:
    """A completed job and the spec of its scale-up job, as `POST /jobs/{id}/scale` wrote it
    (what a client resubmits)."""
    source, _ = completed_job(client, front_size, **job)
    made = client.post(
        f"/api/v1/jobs/{source}/scale",
        json={"top": front_size, "include_presets": bool(job.get("presets"))},
        headers=ADMIN,
    )
    assert made.status_code == 201, made.text
    return source, client.get(f"/api/v1/jobs/{made.json()['id']}").json()["spec"]


def resubmit(client, spec: dict):
    spec = {**spec, "evolution": {**spec["evolution"], "population": 2}}
    return client.post("/api/v1/jobs", json=spec, headers=ADMIN)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda m: m[0]["genome"]["backbone"][0].update(op=["x"]), "scale.members.0.genome"),
        (lambda m: m[1]["genome"]["global"].update(width=7), "scale.members.1.genome"),
        (lambda m: m[0].update(source_candidate=2**70), "scale.members.0.source_candidate"),
        (lambda m: m[0].update(source_candidate=0), "scale.members.0.source_candidate"),
        (lambda m: m.pop(), "scale.members"),
        # well-formed, but not what the source job gives: claims nobody measured
        (lambda m: m[0].update(search_perplexity=1.5), "scale.members.0"),
        (lambda m: m[1].update(search_front=False), "scale.members.1"),
        (lambda m: m[0].update(origin="preset:lfm2"), "scale.members.0"),
        (lambda m: m[0].update(genome=m[1]["genome"]), "scale.members.0"),
        (lambda m: m[1].update(source_candidate=999_999), "scale.members.1"),
        (lambda m: m.__setitem__(1, m[0]), "scale.members.1"),
    ],
)
def test_a_hand_written_scale_block_is_checked_on_submission(client, mutate, field):
    _, spec = scale_up_spec(client, front_size=2)
    made = resubmit(client, spec)
    assert made.status_code == 201, made.text  # a resubmitted scale-up job is welcome
    mutate(spec["scale"]["members"])
    response = resubmit(client, spec)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"{field}:"), response.text


def test_a_hand_written_scale_block_may_keep_some_of_its_members(client):
    _, spec = scale_up_spec(client, front_size=3)
    assert len(spec["scale"]["members"]) == 3
    del spec["scale"]["members"][1]
    assert resubmit(client, spec).status_code == 201


def test_a_resubmitted_scale_block_with_a_preset_and_shortened_floats_is_welcome(client):
    """A preset member (origin `preset:...`, off the front) round-trips, and a client that
    prints floats with 15 significant digits (not Python's shortest repr) is not refused."""
    _, spec = scale_up_spec(client, front_size=2, presets=1, perplexity_offset=1 / 3)
    members = spec["scale"]["members"]
    assert [m["origin"] for m in members] == ["front", "front", "preset:transformer++"]
    assert members[2]["search_front"] is False
    for m in members:
        short = float(f"{m['search_perplexity']:.15g}")
        assert short != m["search_perplexity"]  # the test would prove nothing otherwise
        m["search_perplexity"] = short
    spec["evolution"]["population"] = len(members)
    made = client.post("/api/v1/jobs", json=spec, headers=ADMIN)
    assert made.status_code == 201, made.text


@pytest.mark.parametrize(
    "front_size, request_change, field, words",
    [
        (2, {}, "scale.source_job", "only a completed job can be scaled up"),  # a queued job
        (0, {}, "scale.source_job", "no successfully evaluated front member"),
        (2, {"top": 1}, "scale.request.top", "at least 2 members"),
    ],
)
def test_a_scale_block_its_source_job_cannot_give_is_422(
    client, front_size, request_change, field, words
):
    empty = None if front_size else completed_job(client, front_size=0)[0]  # claims its own
    _, spec = scale_up_spec(client, front_size=2)
    if request_change:
        source = spec["scale"]["source_job"]
    else:
        source = empty or client.post("/api/v1/jobs", json=SPEC, headers=ADMIN).json()["id"]
    spec["scale"]["source_job"] = source
    spec["scale"]["request"].update(request_change)
    response = resubmit(client, spec)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"{field}:"), response.text
    assert words in response.text


def test_scaling_up_a_job_that_is_not_completed_is_409(client):
    queued = client.post("/api/v1/jobs", json=SPEC, headers=ADMIN).json()["id"]
    response = client.post(f"/api/v1/jobs/{queued}/scale", json={}, headers=ADMIN)
    assert response.status_code == 409, response.text
    assert f"job {queued} is queued: only a completed job can be scaled up" in response.text
    assert client.post("/api/v1/jobs/999999/scale", json={}, headers=ADMIN).status_code == 404


@pytest.mark.parametrize("source_job", [ID_MAX + 1, 999_999])
def test_a_scale_block_naming_no_job_is_422(client, source_job):
    _, spec = scale_up_spec(client, front_size=2)
    spec["scale"]["source_job"] = source_job
    response = resubmit(client, spec)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("scale.source_job:"), response.text
