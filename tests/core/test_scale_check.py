"""The scale-up check's pieces: resizing, picking members, comparing the rankings."""

from __future__ import annotations

import pytest

from core import costs, preset
from core.presets import PRESETS
from core.scale_check import ScaleRequest, ScaleSpec, pick_members, scale_report
from core.scaling import resize_genome


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_grows_and_shrinks_to_a_valid_genome(name):
    genome = preset(name, vocab=257)
    grown = resize_genome(genome, width=genome.width * 2, depth=genome.depth * 2)
    assert (grown.width, grown.depth) == (genome.width * 2, genome.depth * 2)
    assert costs.params(grown.to_json()) > costs.params(genome.to_json())
    # the pattern repeats, sharing pointing into its own repeat
    d = genome.depth
    for i, slot in enumerate(grown.backbone):
        original = genome.backbone[i % d]
        assert slot.op == original.op
        for attr in ("share_featurizer", "share_weights"):
            if getattr(original, attr) is not None:
                assert getattr(slot, attr) == getattr(original, attr) + (i // d) * d
    small = resize_genome(genome, depth=2)
    assert small.depth == 2 and small.backbone == genome.backbone[:2]


def candidates():
    g = preset("transformer++", vocab=257, width=64, layers=2).to_json()
    h = preset("hyena-edge", vocab=257, width=64, layers=3).to_json()
    lfm = preset("lfm2", vocab=257, width=64, layers=3).to_json()
    return [
        {
            "id": 1,
            "genome": g,
            "origin": "random",
            "status": "done",
            "metrics": {"perplexity": 9.0},
        },
        {
            "id": 2,
            "genome": h,
            "origin": "mutation",
            "status": "done",
            "metrics": {"perplexity": 7.0},
        },
        {
            "id": 3,
            "genome": lfm,
            "origin": "preset:lfm2",
            "status": "done",
            "metrics": {"perplexity": 8.0},
        },
        {"id": 4, "genome": g, "origin": "random", "status": "failed", "metrics": {}},
    ]


def test_members_are_the_best_front_members_then_the_presets():
    members = pick_members(candidates(), {1, 2, 4}, ScaleRequest(top=1, width=128, depth=4))
    assert [(m.source_candidate, m.origin) for m in members] == [(2, "front"), (3, "preset:lfm2")]
    assert members[0].search_front and not members[1].search_front
    assert all(
        m.genome["global"]["width"] == 128 and len(m.genome["backbone"]) == 4 for m in members
    )
    assert [
        m.source_candidate
        for m in pick_members(candidates(), {1, 2}, ScaleRequest(top=2, include_presets=False))
    ] == [2, 1]


def test_a_target_the_genome_cannot_take_is_named():
    with pytest.raises(ValueError, match="candidate 2 .* cannot be resized to width 60"):
        pick_members(candidates(), {2}, ScaleRequest(top=1, width=60))
    with pytest.raises(ValueError, match="no successfully evaluated front member"):
        pick_members(candidates(), {4}, ScaleRequest(include_presets=False))


def test_the_report_ranks_both_scales_and_computes_tau():
    members = pick_members(candidates(), {1, 2}, ScaleRequest(top=2, width=128))
    spec = ScaleSpec(source_job=5, request=ScaleRequest(top=2, width=128), members=members)
    from core.genome import Genome

    hashes = [Genome.coerce(m.genome).hash() for m in members]  # search order: 2, 1, 3
    scaled = {
        h: {"id": 10 + i, "metrics": {"perplexity": p, "params": 1.0}}
        for i, (h, p) in enumerate(zip(hashes, [6.0, 4.0, 5.0]))
    }  # reversed ranking
    report = scale_report(spec, scaled, {hashes[2]})
    assert report["kendall_tau"] == pytest.approx(-1.0)
    assert [m["search_rank"] for m in report["members"]] == [1, 3, 2]
    assert [m["scaled_rank"] for m in report["members"]] == [3, 1, 2]
    assert report["kept_on_front"] == 0 and report["search_front_members"] == 2
    same = scale_report(
        spec,
        {h: {"id": 1, "metrics": {"perplexity": p}} for h, p in zip(hashes, [1.0, 3.0, 2.0])},
        set(),
    )
    assert same["kendall_tau"] == pytest.approx(1.0)
