"""Small genomes for model-side tests: one operator in every sharing situation."""

from __future__ import annotations

from core import Genome, Slot, catalog

SMALL_WIDTH = 32
SMALL_VOCAB = 61

# Small but non-trivial gene values per class (windows shorter than the test sequences).
SMALL_GENES = {
    "attention": {"heads": 4, "kv_heads": 2, "window": 0, "qk_norm": 1},
    "hyena": {"filter_length": 7, "short_length": 3},
    "hyena_x": {"short_length": 4},
    "hyena_y": {"filter_length": 5},
    "hyena_modal": {"modes": 4, "short_length": 3},
    "gla": {"heads": 2, "key_dim": 8},
    "swiglu": {"ffn": 48},
    "mlp": {"ffn": 40},
}


def operator_genome(op: str, sharing: bool = True, repeat: int = 1, **genes: int) -> Genome:
    """[op, swiglu, op sharing the featurizer of slot 0, op sharing all weights of slot 0]."""
    operators = {name: dict(g) for name, g in SMALL_GENES.items()}
    operators[op] = {**operators.get(op, catalog.REGISTRY[op].defaults()), **genes}
    channel = "mlp" if op == "swiglu" else "swiglu"
    backbone = [Slot(op), Slot(channel)]
    if sharing:
        backbone += [Slot(op, share_featurizer=0), Slot(op, share_weights=0)]
    genome = Genome(
        width=SMALL_WIDTH,
        vocab_size=SMALL_VOCAB,
        backbone=backbone,
        block_repeat=repeat,
        operators=operators,
    )
    genome.validate()
    return genome
