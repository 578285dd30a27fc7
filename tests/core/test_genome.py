"""The genome: exact round trips, validation messages, and evolution that stays valid."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core import (
    PRESETS,
    Genome,
    GenomeError,
    SearchSpace,
    Slot,
    catalog,
    crossover,
    mutate,
    preset,
    repair,
    sample,
)

FULL_SPACE = SearchSpace(
    classes=sorted(catalog.REGISTRY),
    widths=[32, 48, 64, 96],
    depth_min=2,
    depth_max=12,
    block_repeat=[1, 2, 3],
    share_probability=0.3,
)
SPACES = [
    SearchSpace(),
    FULL_SPACE,
    SearchSpace(classes=["attention", "swiglu"], widths=[64], sharing=False),
]


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip_exactly(name):
    genome = preset(name)
    assert Genome.from_ints(genome.to_ints()) == genome
    assert Genome.from_json(genome.to_json()) == genome
    assert Genome.from_json(genome.to_json()).hash() == genome.hash()


@settings(max_examples=3000, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    space_index=st.integers(0, len(SPACES) - 1),
    rate=st.floats(0.0, 1.0),
)
def test_sampling_mutation_and_crossover_always_yield_valid_genomes(seed, space_index, rate):
    space = SPACES[space_index]
    rng = random.Random(seed)
    a, b = sample(space, rng), sample(space, rng)
    children = [*crossover(a, b, space, rng), mutate(a, space, rng, rate)]
    for genome in [a, b, *children]:
        genome.validate()
        assert space.contains(genome) == []
        assert Genome.from_ints(genome.to_ints()) == genome
        assert Genome.from_json(genome.to_json()) == genome


@settings(max_examples=1000, deadline=None)
@given(ints=st.lists(st.integers(-3, 300), min_size=0, max_size=60), seed=st.integers(0, 99))
def test_arbitrary_integer_vectors_are_rejected_cleanly_or_repaired(ints, seed):
    base = sample(FULL_SPACE, random.Random(seed)).to_ints()
    mixed = base[: len(ints)] and [x if i % 3 else ints[i % len(ints)] for i, x in enumerate(base)]
    try:
        genome = Genome.from_ints(mixed or ints)
    except GenomeError as exc:
        assert exc.gene and exc.message
        return
    assert FULL_SPACE.contains(repair(genome, FULL_SPACE)) == []


def test_crossover_mixes_backbones_of_both_parents():
    space = SearchSpace(
        classes=["attention", "hyena_y", "swiglu"],
        widths=[64],
        depth_min=8,
        depth_max=8,
        sharing=False,
    )
    a = Genome(width=64, vocab_size=space.vocab_size, backbone=[Slot("attention")] * 8)
    b = Genome(width=64, vocab_size=space.vocab_size, backbone=[Slot("hyena_y")] * 8)
    rng = random.Random(0)
    mixed = 0
    for _ in range(50):
        child, _ = crossover(a, b, space, rng)
        ops = {s.op for s in child.backbone}
        mixed += ops == {"attention", "hyena_y"}
    assert mixed > 25


def test_hash_ignores_unused_operator_genes_but_not_used_ones():
    genome = preset("transformer++")
    other = genome.copy()
    other.operators["hyena_y"]["filter_length"] = 64  # no hyena_y slot: same architecture
    assert other.hash() == genome.hash()
    other.operators["attention"]["kv_heads"] = 1
    assert other.hash() != genome.hash()


@pytest.mark.parametrize(
    "mutation,gene,fragment",
    [
        (lambda d: d["backbone"][1].update(op="attn"), "backbone[1].op", "allowed: attention"),
        (
            lambda d: d["operators"]["attention"].update(kv_heads=3),
            "operators.attention.kv_heads",
            "must divide heads",
        ),
        (
            lambda d: d["operators"]["attention"].update(heads=3),
            "operators.attention.heads",
            "must divide width",
        ),
        (lambda d: d["global"].update(width=4), "global.width", "[8, 16384]"),
        (lambda d: d["global"].update(depth=3), "global.depth", "number of backbone slots"),
        (
            lambda d: d["global"].update(tie_embeddings="yes"),
            "global.tie_embeddings",
            "true or false",
        ),
        (
            lambda d: d["backbone"][2].update(share_weights=1),
            "backbone[2].share_weights",
            "one of [0]",
        ),
        (
            lambda d: d["backbone"][2].update(share_weights=5),
            "backbone[2].share_weights",
            "earlier slot",
        ),
        (
            lambda d: d["backbone"][2].update(share_weights=True),
            "backbone[2].share_weights",
            "got True",
        ),
        (
            lambda d: d["backbone"][2].update(share_weights="0"),
            "backbone[2].share_weights",
            "got '0'",
        ),
        (
            lambda d: d["backbone"][2].update(share_weights=0, share_featurizer=0),
            "backbone[2].share_featurizer",
            "must be null",
        ),
        (
            lambda d: d["operators"]["hyena_y"].update(filter_length=200),
            "operators.hyena_y.filter_length",
            "[3, 128]",
        ),
        (lambda d: d["global"].update(colour=1), "global.colour", "unknown field"),
        (lambda d: d["operators"].update(lstm={}), "operators.lstm", "unknown operator class"),
        # a class that is not a string: named, not a TypeError from looking it up
        (lambda d: d["backbone"][1].update(op=["x"]), "backbone[1].op", "unknown operator class"),
        (lambda d: d["backbone"][0].update(op={"a": 1}), "backbone[0].op", "allowed: attention"),
    ],
)
def test_validation_names_the_bad_gene(mutation, gene, fragment):
    data = preset("transformer++").to_json()
    mutation(data)
    with pytest.raises(GenomeError) as info:
        Genome.from_json(data)
    assert info.value.gene == gene
    assert fragment in str(info.value)


def test_sharing_targets_are_canonicalised_by_repair():
    genome = Genome(
        width=64,
        vocab_size=4096,
        backbone=[Slot("attention"), Slot("swiglu"), Slot("attention"), Slot("attention")],
    )
    genome.backbone[2].share_weights = 0
    genome.backbone[3].share_weights = 2  # points at a slot that itself shares: not canonical
    with pytest.raises(GenomeError):
        genome.validate()
    fixed = repair(genome, SearchSpace(widths=[64], depth_min=1, depth_max=8))
    assert fixed.backbone[3].share_weights == 0


@pytest.mark.parametrize(
    "spec,field",
    [
        ({"classes": ["attention", "transformer"]}, "classes"),
        ({"widths": [63]}, "widths"),
        ({"depth_min": 9, "depth_max": 3}, "depth_min"),
        ({"operator_genes": {"attention": {"heads": [0]}}}, "operator_genes.attention.heads"),
        ({"operator_genes": {"attention": {"colour": [1]}}}, "operator_genes.attention.colour"),
        ({"depth": 3}, "depth"),
    ],
)
def test_search_space_errors_name_the_field(spec, field):
    with pytest.raises(ValidationError) as info:
        SearchSpace.model_validate(spec)
    assert field in str(info.value)


@pytest.mark.parametrize("layers", range(4, 33))
def test_lfm2_keeps_its_attention_share_at_every_depth(layers):
    genome = preset("lfm2", layers=layers)
    mixers = [s.op for s in genome.backbone if s.op != "swiglu"]
    share = mixers.count("attention") / layers
    assert abs(share - 6 / 16) <= 1 / (2 * layers) + 1e-9, (layers, mixers)
    positions = [i for i, op in enumerate(mixers) if op == "attention"]
    gaps = [b - a for a, b in zip(positions, positions[1:])]
    assert not gaps or max(gaps) - min(gaps) <= 1  # spread evenly, not bunched
    if layers == 16:
        assert positions == [2, 5, 8, 10, 12, 14]  # LFM2's own layout
