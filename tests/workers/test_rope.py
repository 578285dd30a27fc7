"""RoPE as the genome says: base^(-2i/d) frequencies, and Llama 3's scaling (high
frequencies kept, low ones divided by the factor, the band between interpolated
smoothly), flowing through the compiled model and its export."""

from __future__ import annotations

import math

import torch

from core import preset
from core.genome import LLAMA3_ROPE, Rope
from workers.liv.attention import inverse_frequencies
from workers.model.compiler import compile_genome


def test_plain_frequencies_follow_the_base():
    for base in (10_000, 500_000, 1_000_000):
        inv = inverse_frequencies(64, Rope(base=base)).double()
        expected = torch.tensor([base ** (-2 * i / 64) for i in range(32)], dtype=torch.float64)
        # computed in float32 (one pow per entry, <= 1 ulp = 6e-8 relative on any libm or
        # vector path); 1e-6 is 16 ulps
        assert torch.allclose(inv, expected, rtol=1e-6)


def test_llama3_scaling_keeps_high_divides_low_and_interpolates_between():
    rope, head_dim = LLAMA3_ROPE, 64
    plain = inverse_frequencies(head_dim, Rope(base=rope.base)).double()
    scaled = inverse_frequencies(head_dim, rope).double()
    wavelen = 2 * math.pi / plain
    high = wavelen < rope.original_context / rope.high_freq_factor
    low = wavelen > rope.original_context / rope.low_freq_factor
    assert high.any() and low.any() and (~high & ~low).any()  # all three bands occur
    # float32 tables (a few ulps of 6e-8 each); 1e-6 leaves 16 ulps
    assert torch.allclose(scaled[high], plain[high], rtol=1e-6)
    assert torch.allclose(scaled[low], plain[low] / rope.factor, rtol=1e-6)
    between = ~high & ~low
    ratio = scaled[between] / plain[between]
    assert bool(((ratio < 1) & (ratio > 1 / rope.factor)).all())
    assert bool((ratio[1:] <= ratio[:-1]).all())  # longer wavelengths are scaled down more


def test_the_compiled_model_and_its_decode_step_use_the_genome_rope():
    """Same weights, different RoPE: different functions; prefill and step agree for each."""
    genome = preset("transformer++", width=64, layers=2, heads=2, kv_heads=1, ffn=128, vocab=97)
    other = genome.copy()
    other.rope = Rope()
    a, b = compile_genome(genome, seed=0).eval(), compile_genome(other, seed=0).eval()
    b.load_state_dict(a.state_dict())  # the RoPE tables are not weights
    ids = torch.randint(0, 97, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        la, _ = a.prefill(ids)
        lb, _ = b.prefill(ids)
        # another RoPE changes the logits by O(1), far beyond float32 rounding (~1e-6 here)
        assert not torch.allclose(la, lb, atol=1e-4)
        _, state = a.prefill(ids[:, :39])
        step, _ = a.step(ids[:, 39:], torch.tensor([39]), state)
    # the same float32 arithmetic in another order (one-row vs 40-row matmuls): rounding of
    # ~1e-7 relative on logits of scale ~4, a few 1e-7 absolute on every kernel; 1e-5 is >10x
    assert torch.allclose(step[:, -1], la[:, -1], atol=1e-5)
