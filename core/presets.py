"""Known designs as genomes: the baselines every search starts from and is compared with.

Each preset takes size overrides (`width`, `layers`, `heads`, `kv_heads`, `ffn`, `vocab`,
`tie`, `repeat`); a *layer* is one sequence mixer followed by one channel mixer, so a preset
with `layers=16` has 32 backbone slots. Defaults are tiny (what a 2-core search trains in a
minute); the published sizes are reached with overrides, e.g.
`transformer++ width=2048 layers=16 heads=32 kv_heads=8 ffn=8192 vocab=128256` is
Llama-3.2-1B and `lfm2 width=1024 heads=16 kv_heads=8 ffn=4608 vocab=65536` is LFM2-350M.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .genome import LFM2_ROPE, LLAMA3_ROPE, Genome, Rope, Slot


@dataclass(frozen=True)
class Size:
    width: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 384
    vocab: int = 4096
    tie: bool = True
    repeat: int = 1


SLOTS_PER_LAYER = 2  # a preset's layer: its sequence mixer and a SwiGLU (`_layers`)


def _layers(
    mixers: list[str], size: Size, rope: Rope = Rope(), **operators: dict[str, int]
) -> Genome:
    backbone = []
    for mixer in mixers:
        backbone += [Slot(mixer), Slot("swiglu")]
    ops = {"swiglu": {"ffn": size.ffn}, **operators}
    return Genome(
        width=size.width,
        vocab_size=size.vocab,
        backbone=backbone,
        tie_embeddings=size.tie,
        block_repeat=size.repeat,
        operators=ops,
        rope=rope,
    )


def _attention(size: Size, qk_norm: int = 0, window: int = 0) -> dict[str, int]:
    return {"heads": size.heads, "kv_heads": size.kv_heads, "window": window, "qk_norm": qk_norm}


def transformer_pp(size: Size) -> Genome:
    """Llama-style Transformer++: GQA with RoPE and SwiGLU in every layer, no QK-norm; RoPE
    as Llama 3.2 (base 500,000, llama3 scaling factor 32, low 1, high 4, original 8,192)."""
    return _layers(["attention"] * size.layers, size, rope=LLAMA3_ROPE, attention=_attention(size))


LFM2_ATTENTION = (2, 5, 8, 10, 12, 14)  # 0-based layers with GQA in the 16-layer LFM2


def lfm2_attention_layers(layers: int) -> list[int]:
    """Which of `layers` layers are attention: LFM2's own six at 16 layers; at other depths
    round(6/16 x layers) of them (at least one), spread evenly over the depth."""
    if layers == 16:
        return list(LFM2_ATTENTION)
    count = max(1, round(layers * len(LFM2_ATTENTION) / 16))
    return [int((k + 0.5) * layers / count) for k in range(count)]


def lfm2(size: Size) -> Genome:
    """LFM2: GQA (with QK-norm) at layers 2,5,8,10,12,14 of 16, Hyena-Y kernel 3 elsewhere;
    RoPE base 1,000,000.

    At other depths the same share of attention layers, about 6/16, spread over the depth.
    """
    attention = set(lfm2_attention_layers(size.layers))
    mixers = ["attention" if i in attention else "hyena_y" for i in range(size.layers)]
    return _layers(
        mixers,
        size,
        rope=LFM2_ROPE,
        attention=_attention(size, qk_norm=1),
        hyena_y={"filter_length": 3},
    )


def hyena_edge(size: Size) -> Genome:
    """Hyena-Edge-like: a GQA Transformer++ with two of every three attention layers
    replaced by Hyena-Y (short inner filter)."""
    mixers = ["attention" if i % 3 == 2 else "hyena_y" for i in range(size.layers)]
    return _layers(mixers, size, attention=_attention(size), hyena_y={"filter_length": 3})


def striped_hyena(size: Size) -> Genome:
    """StripedHyena-like: Hyena with a modal (unbounded) implicit filter alternating with GQA."""
    mixers = ["hyena_modal" if i % 2 == 0 else "attention" for i in range(size.layers)]
    return _layers(
        mixers, size, attention=_attention(size), hyena_modal={"modes": 8, "short_length": 3}
    )


def mobilellm(size: Size) -> Genome:
    """MobileLLM: deep-and-thin GQA + SwiGLU, tied embeddings, optional block repeat."""
    return _layers(["attention"] * size.layers, size, attention=_attention(size))


@dataclass(frozen=True)
class Preset:
    name: str
    build: Callable[[Size], Genome]
    defaults: Size
    summary: str


def _summary(build: Callable[[Size], Genome]) -> str:
    return " ".join((build.__doc__ or "").split("\n\n")[0].split())


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("transformer++", transformer_pp, Size(), _summary(transformer_pp)),
        Preset("lfm2", lfm2, Size(layers=16), _summary(lfm2)),
        Preset("hyena-edge", hyena_edge, Size(layers=6), _summary(hyena_edge)),
        Preset("striped-hyena", striped_hyena, Size(), _summary(striped_hyena)),
        Preset(
            "mobilellm",
            mobilellm,
            Size(width=96, layers=8, heads=6, kv_heads=2, ffn=256),
            _summary(mobilellm),
        ),
    ]
}


def preset(name: str, **overrides: int | bool | None) -> Genome:
    """Build a preset genome; `overrides` are Size fields, None meaning "keep the default"."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    base = PRESETS[name]
    fields = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(fields) - set(Size.__dataclass_fields__)
    if unknown:
        raise KeyError(
            f"unknown size override {sorted(unknown)[0]!r}; allowed: "
            f"{', '.join(Size.__dataclass_fields__)}"
        )
    size = Size(**{**base.defaults.__dict__, **fields})
    genome = base.build(size)
    genome.validate()
    return genome
