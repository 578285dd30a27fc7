"""A job spec refused by a check across fields names the field at fault (core.strict.BlamedField),
not the whole body, so a client (or the CLI) can point at the line to change."""

from __future__ import annotations

import pytest

ADMIN = {"Authorization": "Bearer admin-secret"}
HOST = {"devices": ["host"]}


@pytest.mark.parametrize(
    "spec, field, says",
    [
        ({"objectives": ["perplexity", "decode_ms@128[host]"]}, "objectives.1", "not in profiling"),
        (
            {"objectives": ["params", "decode_ms@999[host]"], "profiling": HOST},
            "objectives.1",
            "999 is not in profiling.decode_contexts",
        ),
        (
            {
                "objectives": ["perplexity"],
                "constraints": [{"metric": "decode_ms@128[phone]", "value": 1}],
                "profiling": HOST,
            },
            "constraints.0.metric",
            "'phone' is not in profiling.devices",
        ),
        (
            {"objectives": ["perplexity"], "evolution": {"population": 4, "elitism": 4}},
            "evolution.elitism",
            "must be below population",
        ),
        (
            {
                "objectives": ["perplexity"],
                "search_space": {"vocab_size": 300},
                "training": {"tokenizer": {"kind": "byte"}},
            },
            "search_space.vocab_size",
            "must equal the vocabulary",
        ),
    ],
)
def test_a_check_across_fields_names_the_field_at_fault(client, spec, field, says):
    response = client.post("/api/v1/jobs", json={"name": "j", **spec}, headers=ADMIN)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"{field}: "), detail
    assert says in detail
    assert response.json()["errors"][0]["field"] == field
