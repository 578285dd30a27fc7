"""Every registered operator: dual-mode equivalence and exact static costs.

These tests loop over the catalog, so an operator is tested the moment it is registered.
"""

from __future__ import annotations

import pytest
import torch

from core import catalog, costs
from workers.model.compiler import compile_genome, state_bytes

from .helpers import operator_genome

OPERATORS = sorted(catalog.REGISTRY)
# Parallel forward vs step-by-step decode: the same function in float32, summed in another
# order (chunked scans, one-row matmuls). Worst measured over the registry: 1.8e-5 with
# AVX-512 kernels and 3.1e-5 with PyTorch's generic ones (gla, repeat 2, prefill 1), on logits
# of scale ~4; tests/workers/test_generic_kernels.py reruns this test on generic kernels.
TOL = 1e-4


def run_stepwise(model, ids, prefix: int = 0):
    """Prefill `prefix` tokens (or start empty), then decode the rest one token at a time."""
    with torch.no_grad():
        if prefix:
            logits, states = model.prefill(ids[:, :prefix])
            outs = [logits]
        else:
            states, outs = model.init_states(ids.shape[0]), []
        for t in range(prefix, ids.shape[1]):
            logits, states = model.step(ids[:, t : t + 1], torch.tensor([t]), states)
            outs.append(logits)
    return torch.cat(outs, dim=1), states


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize("repeat", [1, 2])
def test_step_by_step_decoding_reproduces_parallel_forward(op, repeat):
    genome = operator_genome(op, repeat=repeat).to_json()
    model = compile_genome(genome, seed=1).eval()
    ids = torch.randint(
        0, genome["global"]["vocab_size"], (2, 19), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        parallel = model(ids)
    stepwise, _ = run_stepwise(model, ids)
    assert (parallel - stepwise).abs().max().item() <= TOL
    for prefix in (1, 7, 18):
        mixed, _ = run_stepwise(model, ids, prefix=prefix)
        assert (parallel - mixed).abs().max().item() <= TOL, f"prefill {prefix} + decode"


def run_chunked(model, ids, sizes: list[int]):
    """Prefill `ids` a chunk at a time (chunk lengths `sizes`, the last one takes what is
    left) from the initial states, as a phone runtime prefills a long prompt."""
    with torch.no_grad():
        states, outs, start = model.init_states(ids.shape[0]), [], 0
        for size in [*sizes, ids.shape[1]]:
            end = min(start + size, ids.shape[1])
            if end > start:
                logits, states = model.chunk(ids[:, start:end], torch.tensor([start]), states)
                outs.append(logits)
            start = end
    return torch.cat(outs, dim=1), states


# Chunked prefill vs parallel: the same sums split at chunk boundaries, as TOL's stepwise
# decoding (one token is the smallest chunk); a chunk that lost its carried state is off by
# O(1). The sizes put boundaries before, at and after a short conv's length (windows:
# test_sliding_window_cache_is_capped_and_exact).
CHUNKINGS = ([1, 1, 1], [5, 3], [2, 9], [19])


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize("repeat", [1, 2])
def test_chunked_prefill_reproduces_parallel_forward_and_states(op, repeat):
    genome = operator_genome(op, repeat=repeat).to_json()
    model = compile_genome(genome, seed=4).eval()
    ids = torch.randint(
        0, genome["global"]["vocab_size"], (2, 19), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        parallel, prefilled = model.prefill(ids)
    for sizes in CHUNKINGS:
        chunked, states = run_chunked(model, ids, sizes)
        assert (parallel - chunked).abs().max().item() <= TOL, f"chunks {sizes}"
        assert len(states) == len(prefilled)
        for a, b in zip(prefilled, states):
            assert a.shape == b.shape
            assert (a - b).abs().max().item() <= TOL, f"chunks {sizes}"


@pytest.mark.parametrize("op", OPERATORS)
def test_last_only_chunk_returns_the_last_row(op):
    genome = operator_genome(op).to_json()
    model = compile_genome(genome, seed=5).eval()
    ids = torch.randint(0, genome["global"]["vocab_size"], (1, 9))
    with torch.no_grad():
        _, states = model.chunk(ids[:, :4], torch.tensor([0]), model.init_states(1))
        full, _ = model.chunk(ids[:, 4:], torch.tensor([4]), states)
        last, _ = model.chunk(ids[:, 4:], torch.tensor([4]), states, last_only=True)
    assert last.shape == (1, 1, genome["global"]["vocab_size"])
    # the same rows through the same kernels save the LM head's row count: equal up to the
    # head's summation order, far inside TOL
    assert (full[:, -1:] - last).abs().max().item() <= TOL


@pytest.mark.parametrize("op", OPERATORS)
def test_prefill_state_equals_state_after_decoding(op):
    genome = operator_genome(op).to_json()
    model = compile_genome(genome, seed=2).eval()
    ids = torch.randint(0, genome["global"]["vocab_size"], (1, 13))
    with torch.no_grad():
        _, prefilled = model.prefill(ids)
    _, decoded = run_stepwise(model, ids)
    assert len(prefilled) == len(decoded) == len(model.state_layout())
    for a, b in zip(prefilled, decoded):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= TOL


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize("sharing", [False, True])
def test_params_equal_unique_parameters_of_built_module(op, sharing):
    genome = operator_genome(op, sharing=sharing).to_json()
    model = compile_genome(genome)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert costs.params(genome) == sum(unique.values()) == model.num_params()


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize("context", [1, 4, 23])
def test_cache_bytes_equal_real_decode_state(op, context):
    genome = operator_genome(op, repeat=2).to_json()
    model = compile_genome(genome).eval()
    ids = torch.randint(0, genome["global"]["vocab_size"], (1, context))
    with torch.no_grad():
        _, states = (
            model.prefill(ids)
            if context > 1
            else model.step(ids, torch.tensor([0]), model.init_states(1))
        )
    for dtype, size in costs.DTYPE_BYTES.items():
        assert costs.cache_bytes(genome, context, dtype) == state_bytes(states, size)
    assert costs.cache_bytes(genome, context, "float32") == state_bytes(states)


@pytest.mark.parametrize("window", [3, 8])
def test_sliding_window_cache_is_capped_and_exact(window):
    genome = operator_genome("attention", window=window).to_json()
    model = compile_genome(genome, seed=3).eval()
    ids = torch.randint(0, genome["global"]["vocab_size"], (1, 17))
    with torch.no_grad():
        parallel = model(ids)
    stepwise, states = run_stepwise(model, ids, prefix=5)
    assert (parallel - stepwise).abs().max().item() <= TOL
    assert states[0].shape[2] == window
    for sizes in ([2, 3, 5], [window + 1, 4]):  # chunks shorter and longer than the window
        chunked, chunk_states = run_chunked(model, ids, sizes)
        assert (parallel - chunked).abs().max().item() <= TOL, f"chunks {sizes}"
        assert chunk_states[0].shape[2] == window
    assert costs.cache_bytes(genome, 17, "float32") == state_bytes(states)


def test_windowed_attention_ignores_tokens_outside_the_window():
    genome = operator_genome("attention", sharing=False, window=4).to_json()
    model = compile_genome(genome, seed=0).eval()
    ids = torch.randint(0, genome["global"]["vocab_size"], (1, 12))
    changed = ids.clone()
    changed[0, 0] = (ids[0, 0] + 1) % genome["global"]["vocab_size"]
    with torch.no_grad():
        a, b = model(ids), model(changed)
    # One attention layer: position 11 sees 8..11 only, so token 0 cannot reach it.
    # position 11 is computed from identical inputs by the same kernels (same shapes): equal
    # up to nothing but the default allclose (rtol 1e-5) on any CPU
    assert torch.allclose(a[0, 11], b[0, 11])
    assert not torch.allclose(a[0, 2], b[0, 2])


@pytest.mark.parametrize("op", OPERATORS)
def test_operator_is_causal(op):
    genome = operator_genome(op).to_json()
    model = compile_genome(genome, seed=0).eval()
    ids = torch.randint(0, genome["global"]["vocab_size"], (1, 10))
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % genome["global"]["vocab_size"]
    with torch.no_grad():
        a, b = model(ids), model(changed)
    # positions before the change see identical inputs; a chunked scan may mix the changed
    # token in as an exact zero contribution only, so rounding at most (~1e-7)
    assert torch.allclose(a[0, :6], b[0, :6], atol=1e-6)
    assert not torch.allclose(a[0, 6:], b[0, 6:])
