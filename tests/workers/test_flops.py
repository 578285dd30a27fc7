"""`flops@L` is exact: `core.costs.macs_per_token` equals what torch counts for one decode step.

Each check builds the model, prefills L tokens, runs ONE `model.step` under
`torch.utils.flop_counter.FlopCounterMode` and compares its FLOPs / 2 with the static count.
Two contractions the real steps use are not ops FlopCounterMode registers on CPU, so the
check counts them the way FlopCounterMode counts their registered equivalents (and the
tests at the bottom show the two ways agree):
- `aten._scaled_dot_product_flash_attention_for_cpu` (what `F.scaled_dot_product_attention`
  dispatches to on CPU) gets the formula of the registered SDPA ops;
- a hand-written contraction, `aten.mul.Tensor` whose product goes straight into
  `aten.sum.dim_IntList` (the depthwise conv step, the modal filter's readout), counts one
  MAC per product term, as FlopCounterMode counts the equivalent `conv1d`.
The operator tests loop over the catalog, so a new operator is checked once registered.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from core import Genome, Slot, catalog, costs, preset
from workers.liv.base import CausalDepthwiseConv
from workers.model.compiler import compile_genome

from .helpers import SMALL_GENES, SMALL_VOCAB

aten = torch.ops.aten
OPERATORS = sorted(catalog.REGISTRY)
WIDTHS = (32, 64)
CONTEXTS = (0, 1, 9)  # 0: the first token, decoded from `init_states`

# The CPU attention kernel, counted like the registered SDPA kernels (the same formula;
# the registry holds it shape-wrapped, and FlopCounterMode wraps a custom formula again).
CPU_SDPA = {
    aten._scaled_dot_product_flash_attention_for_cpu: flop_registry[
        aten._scaled_dot_product_flash_attention
    ].__wrapped__
}

# Extra gene settings beyond the helpers' small genes and the catalog defaults.
EXTRA_GENES = {
    "attention": [
        {"heads": 4, "kv_heads": 1, "window": 0, "qk_norm": 0},  # MQA
        {"heads": 2, "kv_heads": 2, "window": 0, "qk_norm": 1},  # MHA
        {"heads": 4, "kv_heads": 2, "window": 4, "qk_norm": 0},
    ],  # windowed
    "hyena": [{"filter_length": 16, "short_length": 2}],
    "hyena_x": [{"short_length": 8}],
    "hyena_y": [{"filter_length": 3}],
    "hyena_modal": [{"modes": 16, "short_length": 5}],
    "gla": [{"heads": 4, "key_dim": 4}],
    "swiglu": [{"ffn": 24}],
    "mlp": [{"ffn": 72}],
}


def gene_settings(op: str) -> list[dict[str, int]]:
    """At least two settings per operator, whatever is registered."""
    settings = [
        catalog.REGISTRY[op].defaults(),
        {**catalog.REGISTRY[op].defaults(), **SMALL_GENES.get(op, {})},
    ]
    settings += EXTRA_GENES.get(op, [])
    unique = []
    for s in settings:
        if s not in unique:
            unique.append(s)
    return unique


CASES = [(op, i, genes) for op in OPERATORS for i, genes in enumerate(gene_settings(op))]


class HandWrittenContractions(TorchDispatchMode):
    """MACs of contractions written as multiply-then-sum: `aten.mul.Tensor` of two tensors
    whose product is the input of `aten.sum.dim_IntList` counts the product's elements."""

    def __init__(self):
        super().__init__()
        self.products: list[torch.Tensor] = []  # kept alive so identity checks are sound
        self.macs = 0
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is aten.mul.Tensor and all(
            isinstance(a, torch.Tensor) and a.dim() > 0 for a in args[:2]
        ):
            self.products.append(out)
        elif func is aten.sum.dim_IntList and any(args[0] is p for p in self.products):
            self.macs += args[0].numel()
            self.seen.append(str(func))
        return out


def measured_macs(model, context: int, seed: int = 0) -> tuple[int, dict[str, int]]:
    """FLOPs / 2 of one `model.step` with `context` tokens already held, batch 1."""
    vocab = model.plan.vocab_size
    ids = torch.randint(0, vocab, (1, context + 1), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        states = model.prefill(ids[:, :context])[1] if context else model.init_states(1)
        with (
            FlopCounterMode(display=False, custom_mapping=CPU_SDPA) as counter,
            HandWrittenContractions() as hand,
        ):
            model.step(ids[:, context:], torch.tensor([context]), states)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    by_op = {str(k): v // 2 for k, v in counter.get_flop_counts()["Global"].items()}
    by_op["hand-written contractions"] = hand.macs
    return flops // 2 + hand.macs, by_op


def operator_genome(
    op: str,
    genes: dict[str, int],
    width: int,
    repeat: int = 1,
    sharing: bool = True,
    tie: bool = True,
) -> Genome:
    """[op, channel mixer, op sharing slot 0's featurizer, op sharing all of slot 0]."""
    operators = {name: dict(g) for name, g in SMALL_GENES.items()}
    operators[op] = dict(genes)
    channel = "mlp" if op == "swiglu" else "swiglu"
    backbone = [Slot(op), Slot(channel)]
    if sharing:
        backbone += [Slot(op, share_featurizer=0), Slot(op, share_weights=0)]
    genome = Genome(
        width=width,
        vocab_size=SMALL_VOCAB,
        backbone=backbone,
        tie_embeddings=tie,
        block_repeat=repeat,
        operators=operators,
    )
    genome.validate()
    return genome


def check(genome: Genome, context: int) -> None:
    model = compile_genome(genome.to_json(), seed=0).eval()
    measured, by_op = measured_macs(model, context)
    expected = costs.macs_per_token(genome.to_json(), context)
    assert measured == expected, f"L={context}: measured {by_op}, static {expected}"


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize("op,setting,genes", CASES, ids=[f"{op}-{i}" for op, i, _ in CASES])
@pytest.mark.parametrize("width", WIDTHS)
def test_macs_match_flop_counter_for_every_operator(op, setting, genes, width):
    for context in CONTEXTS:
        check(operator_genome(op, genes, width), context)


@pytest.mark.parametrize("op", OPERATORS)
def test_block_repeat_and_untied_head_count_every_execution(op):
    genes = gene_settings(op)[-1]
    genome = operator_genome(op, genes, 32, repeat=3, tie=False)
    check(genome, 5)
    single = operator_genome(op, genes, 32, repeat=1, tie=False)
    head = 32 * SMALL_VOCAB
    assert costs.macs_per_token(genome.to_json(), 5) - head == 3 * (
        costs.macs_per_token(single.to_json(), 5) - head
    )


@pytest.mark.parametrize("op", OPERATORS)
def test_every_operator_counts_its_step(op):
    """No operator silently counts nothing: its step has at least its projections."""
    for genes in gene_settings(op):
        assert catalog.REGISTRY[op].macs(genes, 32, 7) >= 32 * 32 // 2


@pytest.mark.parametrize("context", [1, 3, 4, 5, 11])
def test_windowed_attention_beyond_the_window(context):
    genes = {"heads": 4, "kv_heads": 2, "window": 4, "qk_norm": 1}
    genome = operator_genome("attention", genes, 32)
    check(genome, context)
    spec = catalog.REGISTRY["attention"]
    if context + 1 >= 4:  # the window caps the positions attended to
        assert spec.macs(genes, 32, context) == spec.macs(genes, 32, 100)


# --------------------------------------------------------------------------- presets


PRESET_SIZES = {
    "transformer++": dict(width=32, layers=2, heads=4, kv_heads=2, ffn=48, vocab=61),
    "lfm2": dict(width=32, layers=4, heads=4, kv_heads=2, ffn=48, vocab=61),
    "hyena-edge": dict(width=32, layers=3, heads=4, kv_heads=2, ffn=48, vocab=61, tie=False),
    "striped-hyena": dict(width=32, layers=2, heads=4, kv_heads=1, ffn=48, vocab=61),
    "mobilellm": dict(width=32, layers=2, heads=4, kv_heads=2, ffn=48, vocab=61, repeat=2),
}


@pytest.mark.parametrize("name", sorted(PRESET_SIZES))
@pytest.mark.parametrize("context", [0, 6])
def test_presets(name, context):
    check(preset(name, **PRESET_SIZES[name]), context)


# --------------------------------------------------------------------------- the metric


# --------------------------------------------------------------------------- the two additions


def test_hand_written_conv_step_counts_like_conv1d():
    """The multiply-then-sum of a conv step counts what FlopCounterMode gives conv1d."""
    conv = CausalDepthwiseConv(12, 5)
    buf, x_t = torch.randn(1, 12, 4), torch.randn(1, 12, 1)
    with torch.no_grad():
        with FlopCounterMode(display=False) as plain, HandWrittenContractions() as hand:
            y, _ = conv.step(x_t, buf)
        assert plain.get_total_flops() == 0  # what FlopCounterMode alone misses
        with FlopCounterMode(display=False) as as_conv:
            y_conv = F.conv1d(torch.cat([buf, x_t], dim=-1), conv.weight, groups=12)
    # a 5-tap sum in two orders, float32: assert_close's float32 default (rtol 1.3e-6,
    # atol 1e-5) is ~10 ulps, met by any kernel
    torch.testing.assert_close(y, y_conv)
    assert hand.macs == as_conv.get_total_flops() // 2 == 12 * 5


def test_cpu_attention_kernel_counts_like_the_math_path():
    """The formula given to the CPU kernel equals FlopCounterMode's count of the math path
    (two bmm), which it registers."""
    genome = operator_genome(
        "attention", {"heads": 4, "kv_heads": 2, "window": 0, "qk_norm": 0}, 32, sharing=False
    )
    model = compile_genome(genome.to_json(), seed=0).eval()
    with sdpa_kernel(SDPBackend.MATH):
        ids = torch.randint(0, SMALL_VOCAB, (1, 8))
        with torch.no_grad():
            _, states = model.prefill(ids[:, :7])
            with FlopCounterMode(display=False) as plain:
                model.step(ids[:, 7:], torch.tensor([7]), states)
    assert plain.get_total_flops() // 2 == costs.macs_per_token(genome.to_json(), 7)
    assert measured_macs(model, 7)[0] == costs.macs_per_token(genome.to_json(), 7)
