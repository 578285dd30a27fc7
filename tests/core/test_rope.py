"""The RoPE global genome setting: JSON and integer twins, validation naming the gene, hashes
of genomes without it unchanged, presets with their published values."""

from __future__ import annotations

import pytest

from core import Genome, GenomeError, preset
from core.genome import LFM2_ROPE, LLAMA3_ROPE, Rope


def test_rope_round_trips_through_json_and_ints():
    genome = preset("transformer++")
    assert genome.rope == LLAMA3_ROPE
    assert Genome.from_json(genome.to_json()) == genome
    assert Genome.from_ints(genome.to_ints()) == genome
    assert genome.to_json()["global"]["rope"] == {
        "base": 500_000,
        "scaling": "llama3",
        "factor": 32,
        "low_freq_factor": 1,
        "high_freq_factor": 4,
        "original_context": 8192,
    }
    assert preset("lfm2").rope == LFM2_ROPE and LFM2_ROPE.base == 1_000_000


def test_genomes_without_the_setting_keep_their_hashes_and_old_integer_genomes_parse():
    """Hashes recorded before the RoPE genes existed (evaluation caches key on them)."""
    assert preset("hyena-edge").hash() == "0c62b2b384f8e3da"
    assert preset("mobilellm").hash() == "c55f0d7fa1385010"
    old = preset("hyena-edge").to_json()
    del old["global"]["rope"]
    assert Genome.from_json(old).rope == Rope()
    ints = preset("hyena-edge").to_ints()
    format1 = [1, *ints[1:6], *ints[12:]]
    assert Genome.from_ints(format1) == preset("hyena-edge")


def test_rope_counts_in_the_hash_only_where_attention_reads_it():
    genome = preset("transformer++")
    default = genome.copy()
    default.rope = Rope()
    assert genome.hash() != default.hash()
    conv_only = preset("striped-hyena", layers=2).copy()
    conv_only.backbone = [s for s in conv_only.backbone if s.op != "attention"]
    other = conv_only.copy()
    other.rope = LFM2_ROPE
    assert conv_only.hash() == other.hash()  # no attention slot: the same model


@pytest.mark.parametrize(
    "rope,gene",
    [
        ({"base": 1}, "global.rope.base"),
        ({"scaling": "yarn"}, "global.rope.scaling"),
        ({"scaling": "llama3", "factor": 0}, "global.rope.factor"),
        (
            {"scaling": "llama3", "low_freq_factor": 4, "high_freq_factor": 4},
            "global.rope.high_freq_factor",
        ),
        ({"base": 10_000, "theta": 3}, "global.rope.theta"),
        ({"base": 2.5}, "global.rope.base"),
    ],
)
def test_bad_rope_genes_are_named(rope, gene):
    data = preset("transformer++").to_json()
    data["global"]["rope"] = rope
    with pytest.raises(GenomeError) as error:
        Genome.from_json(data)
    assert error.value.gene == gene


def test_scaling_genes_are_normalised_without_scaling():
    assert Rope(base=10_000, factor=99) == Rope()
