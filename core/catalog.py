# size: every LIV operator registered in this one file, by design (an entry each, ~40 lines)
"""The catalog of LIV operators: every operator is registered here once, torch-free.

An entry says what the genome needs to know about an operator without building it: its
stable class id (the integer the genome stores), whether it mixes tokens or channels, its
operator genes with their allowed range and default, the validity rules that involve the
model width, where its torch implementation lives, and its exact static costs (parameters
split into featurizer and the rest, decode-cache elements, multiply-accumulates of one
decode step). It also carries which genes scale with the width, whether a default search
space includes the class, and its dashboard colour, so nothing about an operator lives
anywhere else. The genome code, the API (catalog endpoint) and the cost model read this
file; `workers` imports the implementation named by `impl`; every test that loops over
`REGISTRY` picks a new operator up the moment it is registered.

Widths are `D`; all projections are bias-free, as in Llama and LFM2.

`macs(genes, D, L)` is the number of multiply-accumulates in the matrix products and
convolutions of one decode step (the operator's `step`) with L tokens already held, batch 1:
what `torch.utils.flop_counter.FlopCounterMode` reports for that step divided by 2, with
every contraction counted as FlopCounterMode counts the equivalent matmul or convolution
(one MAC per product term summed). Two contractions of the real steps are not ops
FlopCounterMode registers on CPU and are still counted: the CPU attention kernel
(`aten._scaled_dot_product_flash_attention_for_cpu`, counted like the registered SDPA ops)
and the multiply-then-sum of a depthwise conv step or a modal readout (counted like the
equivalent `conv1d`). Elementwise products (gates, decays, skip terms, RoPE), norms,
activations, softmax and bias additions count 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

Kind = Literal["sequence", "channel"]


@dataclass(frozen=True)
class GeneSpec:
    """One integer operator gene: inclusive range, default, and what it means."""

    name: str
    low: int
    high: int
    default: int
    doc: str
    search_choices: tuple[int, ...] = ()  # default choices a search space samples from
    scales_with_width: bool = False  # resized with the model width (core.scaling)

    def check(self, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer in [{self.low}, {self.high}], got {value!r}"
        if not self.low <= value <= self.high:
            return f"must be in [{self.low}, {self.high}], got {value}"
        return None


@dataclass(frozen=True)
class CacheShape:
    """Decode state of one execution of an operator, in elements for batch 1.

    `per_token` elements grow with every token held (attention K/V), capped at `window`
    tokens when the operator has one; `fixed` elements do not grow (conv/recurrent state).
    """

    per_token: int = 0
    fixed: int = 0
    window: int = 0  # 0: no cap

    def elements(self, context: int) -> int:
        held = min(context, self.window) if self.window else context
        return self.per_token * held + self.fixed


@dataclass(frozen=True)
class ParamCount:
    featurizer: int  # weights a slot can borrow from an earlier slot of the same class
    other: int

    @property
    def total(self) -> int:
        return self.featurizer + self.other


@dataclass(frozen=True)
class OperatorSpec:
    name: str
    class_id: int
    kind: Kind
    summary: str
    impl: str  # "module:ClassName" of the torch implementation
    genes: tuple[GeneSpec, ...]
    params: Callable[[dict[str, int], int], ParamCount]
    cache: Callable[[dict[str, int], int], CacheShape]
    # (genes, width, context L) -> multiply-accumulates of one decode step of one execution
    # with L tokens already held, batch 1 (see `macs` in the module docstring). Required: an
    # operator without a formula would silently count 0.
    macs: Callable[[dict[str, int], int, int], int]
    # Extra validity rules involving the width; returns [(gene, message)].
    check: Callable[[dict[str, int], int], list[tuple[str, str]]] = field(
        default=lambda genes, width: []
    )
    featurizer: str = ""  # which weights "featurizer sharing" borrows
    colour: str = "#7f7f7f"  # how the dashboard draws this class (layer diagrams)
    default_search: bool = True  # in a job's search space when the spec names no classes
    uses_rope: bool = False  # reads the genome's global RoPE setting (core.genome.Rope)

    def defaults(self) -> dict[str, int]:
        return {g.name: g.default for g in self.genes}

    def gene(self, name: str) -> GeneSpec:
        for g in self.genes:
            if g.name == name:
                return g
        raise KeyError(name)


REGISTRY: dict[str, OperatorSpec] = {}


def register(spec: OperatorSpec) -> OperatorSpec:
    """Add an operator; names and class ids are unique and class ids are append-only."""
    if spec.name in REGISTRY:
        raise ValueError(f"operator {spec.name!r} registered twice")
    if any(s.class_id == spec.class_id for s in REGISTRY.values()):
        raise ValueError(f"class id {spec.class_id} of {spec.name!r} already taken")
    REGISTRY[spec.name] = spec
    return spec


def by_class_id(class_id: int) -> OperatorSpec:
    for spec in REGISTRY.values():
        if spec.class_id == class_id:
            return spec
    raise KeyError(class_id)


def ordered() -> list[OperatorSpec]:
    """Operators in class-id order: the order of their genes in the integer genome."""
    return sorted(REGISTRY.values(), key=lambda s: s.class_id)


def default_search_classes() -> list[str]:
    """The classes a job's search space explores when its spec names none."""
    return [spec.name for spec in ordered() if spec.default_search]


# --------------------------------------------------------------------------- helpers


def _divides(gene: str, value: int, total: int, what: str) -> list[tuple[str, str]]:
    if value <= 0 or total % value:
        return [(gene, f"must divide {what} ({total}), got {value}")]
    return []


SHORT_LENGTH = GeneSpec("short_length", 2, 8, 3, "featurizer short depthwise conv length", (3,))
FILTER_LENGTH = GeneSpec(
    "filter_length", 3, 128, 3, "inner depthwise conv filter length", (3, 7, 16, 32, 64, 128)
)


# --------------------------------------------------------------------------- attention


def _attention_params(g: dict[str, int], d: int) -> ParamCount:
    head_dim = d // g["heads"]
    kv = g["kv_heads"] * head_dim
    qk_norm = 2 * head_dim if g["qk_norm"] else 0
    return ParamCount(featurizer=2 * d * kv, other=2 * d * d + qk_norm)


def _attention_cache(g: dict[str, int], d: int) -> CacheShape:
    head_dim = d // g["heads"]
    return CacheShape(per_token=2 * g["kv_heads"] * head_dim, window=g["window"])


def _attention_macs(g: dict[str, int], d: int, context: int) -> int:
    head_dim = d // g["heads"]
    kv = g["kv_heads"] * head_dim
    # The step appends the current token before attending, then keeps the last `window`.
    held = min(context + 1, g["window"]) if g["window"] else context + 1
    # q, o: d x d; k, v: d x kv. KV heads are expanded to all query heads, so scores and the
    # weighted sum each cost heads * held * head_dim = held * d whatever kv_heads is.
    return 2 * d * d + 2 * d * kv + 2 * held * d


def _attention_check(g: dict[str, int], d: int) -> list[tuple[str, str]]:
    problems = _divides("heads", g["heads"], d, "width")
    if problems:
        return problems
    problems = _divides("kv_heads", g["kv_heads"], g["heads"], "heads")
    if (d // g["heads"]) % 2:
        problems.append(("heads", f"width/heads must be even for RoPE, got {d // g['heads']}"))
    return problems


register(
    OperatorSpec(
        name="attention",
        colour="#d62728",
        class_id=0,
        kind="sequence",
        summary="causal self-attention, MHA/GQA/MQA, RoPE, optional sliding window and QK-norm",
        impl="workers.liv.attention:Attention",
        genes=(
            GeneSpec("heads", 1, 64, 4, "query heads", (2, 4, 8)),
            GeneSpec("kv_heads", 1, 64, 2, "key/value heads (GQA; 1 = MQA)", (1, 2, 4)),
            GeneSpec("window", 0, 1 << 20, 0, "sliding window in tokens, 0 = global", (0, 64)),
            GeneSpec("qk_norm", 0, 1, 0, "per-head RMSNorm on queries and keys", (0, 1)),
        ),
        params=_attention_params,
        cache=_attention_cache,
        macs=_attention_macs,
        check=_attention_check,
        featurizer="key and value projections",
        uses_rope=True,
    )
)


# --------------------------------------------------------------------------- gated convolutions


def _hyena_params(g: dict[str, int], d: int) -> ParamCount:
    return ParamCount(
        featurizer=3 * d * d + 3 * d * g["short_length"], other=d * g["filter_length"] + d * d
    )


def _hyena_macs(g: dict[str, int], d: int, context: int) -> int:
    # in_proj 3d x d, short conv 3d channels x short_length taps, inner conv d x
    # filter_length taps (the step reads its last filter_length inputs), out_proj d x d.
    return 3 * d * d + 3 * d * g["short_length"] + d * g["filter_length"] + d * d


def _hyena_cache(g: dict[str, int], d: int) -> CacheShape:
    return CacheShape(fixed=3 * d * (g["short_length"] - 1) + d * (g["filter_length"] - 1))


register(
    OperatorSpec(
        name="hyena",
        colour="#1f77b4",
        class_id=1,
        kind="sequence",
        summary="Hyena: short convs on q,k,v then out_proj(q * conv(k * v))",
        impl="workers.liv.gated_conv:Hyena",
        genes=(FILTER_LENGTH, SHORT_LENGTH),
        params=_hyena_params,
        cache=_hyena_cache,
        macs=_hyena_macs,
        featurizer="in_proj and its short convs",
    )
)


def _hyena_x_params(g: dict[str, int], d: int) -> ParamCount:
    return ParamCount(featurizer=3 * d * d + 3 * d * g["short_length"], other=d * d)


def _hyena_x_macs(g: dict[str, int], d: int, context: int) -> int:
    return 3 * d * d + 3 * d * g["short_length"] + d * d


def _hyena_x_cache(g: dict[str, int], d: int) -> CacheShape:
    return CacheShape(fixed=3 * d * (g["short_length"] - 1))


register(
    OperatorSpec(
        name="hyena_x",
        colour="#17becf",
        class_id=2,
        kind="sequence",
        summary="Hyena-X: short convs on q,k,v, no inner conv: out_proj(q * k * v)",
        impl="workers.liv.gated_conv:HyenaX",
        genes=(SHORT_LENGTH,),
        params=_hyena_x_params,
        cache=_hyena_x_cache,
        macs=_hyena_x_macs,
        featurizer="in_proj and its short convs",
    )
)


def _hyena_y_params(g: dict[str, int], d: int) -> ParamCount:
    return ParamCount(featurizer=3 * d * d, other=d * g["filter_length"] + d * d)


def _hyena_y_macs(g: dict[str, int], d: int, context: int) -> int:
    return 3 * d * d + d * g["filter_length"] + d * d


def _hyena_y_cache(g: dict[str, int], d: int) -> CacheShape:
    return CacheShape(fixed=d * (g["filter_length"] - 1))


register(
    OperatorSpec(
        name="hyena_y",
        colour="#2ca02c",
        class_id=3,
        kind="sequence",
        summary="Hyena-Y (LFM2's conv block at length 3): out_proj(C * conv(B * x))",
        impl="workers.liv.gated_conv:HyenaY",
        genes=(FILTER_LENGTH,),
        params=_hyena_y_params,
        cache=_hyena_y_cache,
        macs=_hyena_y_macs,
        featurizer="in_proj",
    )
)


def _modal_params(g: dict[str, int], d: int) -> ParamCount:
    return ParamCount(
        featurizer=3 * d * d + 3 * d * g["short_length"], other=2 * d * g["modes"] + d + d * d
    )


def _modal_macs(g: dict[str, int], d: int, context: int) -> int:
    # in_proj, short conv, the readout sum_n R[d, n] s[d, n] (d x modes), out_proj; the
    # state decay lambda * s + u and the skip term are elementwise.
    return 3 * d * d + 3 * d * g["short_length"] + d * g["modes"] + d * d


def _modal_cache(g: dict[str, int], d: int) -> CacheShape:
    return CacheShape(fixed=3 * d * (g["short_length"] - 1) + d * g["modes"])


register(
    OperatorSpec(
        name="hyena_modal",
        colour="#9467bd",
        default_search=False,
        class_id=4,
        kind="sequence",
        summary="Hyena with an unbounded implicit filter in modal form (StripedHyena): "
        "exact recurrent decode with `modes` states per channel",
        impl="workers.liv.modal_conv:HyenaModal",
        genes=(
            GeneSpec("modes", 2, 64, 8, "poles of the implicit filter per channel", (4, 8, 16)),
            SHORT_LENGTH,
        ),
        params=_modal_params,
        cache=_modal_cache,
        macs=_modal_macs,
        featurizer="in_proj and its short convs",
    )
)


# --------------------------------------------------------------------------- linear recurrence


def _gla_params(g: dict[str, int], d: int) -> ParamCount:
    qk = g["heads"] * g["key_dim"]
    # k and v projections are the featurizer; q, decay gate (+bias), output gate, norm, out.
    return ParamCount(
        featurizer=d * qk + d * d, other=d * qk + d * g["heads"] + g["heads"] + d * d + d + d * d
    )


def _gla_macs(g: dict[str, int], d: int, context: int) -> int:
    qk = g["heads"] * g["key_dim"]
    # q, k: d x qk; v, gate, out: d x d; decay gate d x heads (its bias is an addition);
    # the state update k^T v and the readout q S: heads x key_dim x (d / heads) each. The
    # decay of the state and the output norm are elementwise.
    return 2 * d * qk + 3 * d * d + d * g["heads"] + 2 * g["key_dim"] * d


def _gla_cache(g: dict[str, int], d: int) -> CacheShape:
    return CacheShape(fixed=g["key_dim"] * d)  # heads x key_dim x (d / heads)


register(
    OperatorSpec(
        name="gla",
        colour="#ff7f0e",
        class_id=5,
        kind="sequence",
        summary="gated linear attention: per-head data-dependent decay, matrix-valued state",
        impl="workers.liv.linear_recurrence:GatedLinearAttention",
        genes=(
            GeneSpec("heads", 1, 64, 4, "recurrence heads", (2, 4)),
            GeneSpec("key_dim", 4, 256, 16, "state rows per head (key dimension)", (8, 16, 32)),
        ),
        params=_gla_params,
        cache=_gla_cache,
        macs=_gla_macs,
        check=lambda g, d: _divides("heads", g["heads"], d, "width"),
        featurizer="key and value projections",
    )
)


# --------------------------------------------------------------------------- channel mixers


register(
    OperatorSpec(
        name="swiglu",
        colour="#7f7f7f",
        class_id=6,
        kind="channel",
        summary="SwiGLU: w2(silu(w1 x) * w3 x)",
        impl="workers.liv.channel_mixers:SwiGLU",
        genes=(
            GeneSpec(
                "ffn", 8, 1 << 16, 384, "inner width", (256, 384, 512), scales_with_width=True
            ),
        ),
        params=lambda g, d: ParamCount(featurizer=2 * d * g["ffn"], other=g["ffn"] * d),
        cache=lambda g, d: CacheShape(),
        macs=lambda g, d, context: 3 * d * g["ffn"],  # w1, w3: d x ffn; w2: ffn x d
        featurizer="gate and up projections",
    )
)

register(
    OperatorSpec(
        name="mlp",
        colour="#bcbd22",
        default_search=False,
        class_id=7,
        kind="channel",
        summary="plain MLP: down(gelu(up x))",
        impl="workers.liv.channel_mixers:MLP",
        genes=(
            GeneSpec("ffn", 8, 1 << 16, 512, "inner width", (256, 512), scales_with_width=True),
        ),
        params=lambda g, d: ParamCount(featurizer=d * g["ffn"], other=g["ffn"] * d),
        cache=lambda g, d: CacheShape(),
        macs=lambda g, d, context: 2 * d * g["ffn"],  # up: d x ffn; down: ffn x d
        featurizer="up projection",
    )
)
