"""The genome encoding the surrogates learn from: fixed length, deterministic, and every
catalog class has its own columns (a newly registered operator is encoded at once)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from core import Genome, SearchSpace, Slot, catalog, costs, preset, sample
from core.encoding import SEGMENTS, GenomeEncoding

ENCODING = GenomeEncoding(contexts=(128, 1024))
SPACE = SearchSpace(
    classes=[s.name for s in catalog.ordered()],
    widths=[32, 64],
    depth_min=2,
    depth_max=12,
    vocab_size=257,
)


def test_same_length_for_every_genome_and_the_same_vector_every_time():
    rng = random.Random(0)
    genomes = [sample(SPACE, rng) for _ in range(40)] + [preset("lfm2"), preset("mobilellm")]
    vectors = ENCODING.encode_all(genomes)
    assert vectors.shape == (len(genomes), len(ENCODING.names))
    assert np.isfinite(vectors).all()
    again = ENCODING.encode_all([Genome.from_json(g.to_json()) for g in genomes])
    assert np.array_equal(vectors, again)
    assert len({v.tobytes() for v in vectors}) == len({g.hash() for g in genomes})


@pytest.mark.parametrize("op", [s.name for s in catalog.ordered()])
def test_every_catalog_class_has_layout_and_gene_columns(op):
    spec = catalog.REGISTRY[op]
    mixer = Slot(op) if spec.kind == "sequence" else Slot("attention")
    backbone = [mixer, Slot(op if spec.kind == "channel" else "swiglu")] * SEGMENTS
    genome = Genome(
        width=64,
        vocab_size=257,
        backbone=backbone,
        operators={"attention": {"heads": 4, "kv_heads": 2}},
    )
    row = dict(zip(ENCODING.names, ENCODING.encode(genome)))
    assert [row[f"segment{s}.{op}"] for s in range(SEGMENTS)] == [0.5] * SEGMENTS
    for gene in spec.genes:
        assert row[f"{op}.{gene.name}"] == pytest.approx(
            np.log2(1 + genome.operators[op][gene.name])
        )
    absent = [s.name for s in catalog.ordered() if s.name not in genome.used_classes()]
    assert all(
        row[f"{name}.{g.name}"] == 0 for name in absent for g in catalog.REGISTRY[name].genes
    )


def test_static_cost_columns_are_the_exact_costs():
    genome = preset("hyena-edge", width=64, layers=3, heads=2, kv_heads=1, ffn=128, vocab=257)
    row = dict(zip(ENCODING.names, ENCODING.encode(genome)))
    assert row["log10_params"] == pytest.approx(np.log10(costs.params(genome)))
    assert row["log10_cache_bytes@1024"] == pytest.approx(np.log10(costs.cache_bytes(genome, 1024)))
    assert row["log10_flops@128"] == pytest.approx(np.log10(costs.macs_per_token(genome, 128)))
    assert row["executed_depth"] == genome.depth * genome.block_repeat
