"""Attention through onnxruntime's fused `GroupQueryAttention` contrib operator (export only).

The plain export writes each attention layer as MatMul -> Softmax -> MatMul, so onnxruntime
materialises the (heads, L, L) score matrix of every layer at prefill. onnxruntime-genai's
model builder writes attention as one `com.microsoft::GroupQueryAttention` node instead (a
flash-style kernel on the CPU EP); `export_onnx(..., attention="fused")` does the same for
every attention layer the operator expresses exactly, through `fused_attention(model)`.

What stays outside the operator, as plain ops: the q/k/v projections, QK-norm and RoPE
(`do_rotary=0`; Tailor ropes Q and K itself, with Llama-3 scaling when asked, in the
graph exactly as the plain export does) and the output projection. The operator gets Q
(1, S, heads*head_dim) and the new K, V (1, S, kv_heads*head_dim), all roped, plus the cache
as `past_key`/`past_value` in the layout the manifest promises, (1, kv_heads, past,
head_dim); its `present_key`/`present_value` are past + new in the same layout.
`seqlens_k` = total - 1 and `total_sequence_length` = past + S are computed in the graph
from the tensor shapes (batch 1, no padding). Prefill passes an empty (past = 0) cache.
The operator's default scale, 1/sqrt(head_dim), is the one Tailor's attention uses.

Sliding windows: Tailor's layer attends to the last `window` tokens, itself included
(i - j < window), and keeps only those in its cache. The operator's `local_window_size`
masks the same way in onnxruntime 1.32's CPU kernel when set to `window` itself (probed,
not assumed: see `_window_offset`); the cache is then cut to its last `window` tokens
after the operator, as the plain graph does.

What the operator cannot express falls back to plain ops for that layer (and the layer is
not listed in the manifest's `fused_attention_layers`): a head size that is not a multiple
of 8 (the CPU kernel refuses it), and anything a small onnxruntime probe of the layer's
exact configuration (heads, kv_heads, head size, window) does not reproduce within
`PROBE_TOLERANCE` of torch. The probe runs a prompt, decode steps and chunks after a cache
(the chunk graph's case), so an onnxruntime whose operator refused chunks after a cache
would put the layer on plain ops in every graph, not only the chunk graph. `plan(model)`
says which layers go which way and why.

In eager torch the hooked layers compute what the plain ones do (the autograd Function's
forward is the same attention); only the traced graph differs.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from workers.liv.attention import Attention, apply_rope, rope_tables

DOMAIN = "com.microsoft"
CUSTOM_OPSETS = {DOMAIN: 1}
OP_TYPE = "GroupQueryAttention"
PROBE_TOLERANCE = 1e-5  # float32 rounding is ~1e-7 on the probe's unit-scale inputs


def _reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int, window: int
) -> torch.Tensor:
    """Causal (optionally windowed) attention of q (B, H, S, hd) at positions past..past+S-1
    over k, v (B, G, past+S, hd): Tailor's semantics, as Attention.prefill/step compute them."""
    heads, kv_heads = q.shape[1], k.shape[1]
    if heads != kv_heads:
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
    s, total = q.shape[2], k.shape[2]
    if s == 1 and not window:  # Attention.step: everything held
        return F.scaled_dot_product_attention(q, k, v)
    if past == 0 and not window:  # Attention.prefill, global
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    i = torch.arange(past, total, device=q.device)[:, None]
    j = torch.arange(total, device=q.device)[None, :]
    mask = j <= i
    if window:
        mask = mask & (i - j < window)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class GroupQueryAttentionOp(torch.autograd.Function):
    """query (1, S, H*hd), key/value (1, S, G*hd) roped, past_key/past_value (1, G, P, hd) ->
    output (1, S, H*hd), present_key/present_value (1, G, P+S, hd). Exported as one
    com.microsoft GroupQueryAttention node."""

    @staticmethod
    def forward(
        ctx,
        query,
        key,
        value,
        past_key,
        past_value,
        num_heads: int,
        kv_num_heads: int,
        hd: int,
        window: int,
    ):
        b, s, _ = query.shape
        q = query.view(b, s, num_heads, hd).transpose(1, 2)
        k = torch.cat([past_key, key.view(b, s, kv_num_heads, hd).transpose(1, 2)], dim=2)
        v = torch.cat([past_value, value.view(b, s, kv_num_heads, hd).transpose(1, 2)], dim=2)
        y = _reference(q, k, v, past_key.shape[2], window)
        return y.transpose(1, 2).reshape(b, s, num_heads * hd), k, v

    @staticmethod
    def symbolic(
        g,
        query,
        key,
        value,
        past_key,
        past_value,
        num_heads: int,
        kv_num_heads: int,
        hd: int,
        window: int,
    ):
        def gather(shape, axis: int):
            return g.op("Gather", shape, g.op("Constant", value_t=torch.tensor(axis)), axis_i=0)

        new = gather(g.op("Shape", key), 1)
        past = gather(g.op("Shape", past_key), 2)
        total = g.op("Cast", g.op("Add", past, new), to_i=6)  # int32 scalar
        seqlens_k = g.op(
            "Reshape",
            g.op("Sub", total, g.op("Constant", value_t=torch.tensor(1, dtype=torch.int32))),
            g.op("Constant", value_t=torch.tensor([1])),
        )
        attrs = dict(
            num_heads_i=num_heads,
            kv_num_heads_i=kv_num_heads,
            do_rotary_i=0,
            rotary_interleaved_i=0,
        )
        if window:
            attrs["local_window_size_i"] = _window_attribute(window)
        output, present_key, present_value = g.op(
            f"{DOMAIN}::{OP_TYPE}",
            query,
            key,
            value,
            past_key,
            past_value,
            seqlens_k,
            total,
            outputs=3,
            **attrs,
        )
        output.setType(query.type().with_sizes([1, None, num_heads * hd]))
        for present in (present_key, present_value):
            present.setType(past_key.type().with_sizes([1, kv_num_heads, None, hd]))
        return output, present_key, present_value


def _window_attribute(window: int) -> int:
    """`local_window_size` that makes the operator attend to the last `window` tokens."""
    offset = _window_offset()
    if offset is None:
        raise RuntimeError(
            "this onnxruntime's GroupQueryAttention has no local_window_size "
            "matching Tailor's window"
        )
    return window + offset


@functools.lru_cache(maxsize=None)
def _window_offset() -> int | None:
    """onnxruntime has changed what local_window_size counts (with or without the query's
    own token); probe which setting reproduces Tailor's window (None: neither)."""
    for offset in (0, -1):
        if _probe(4, 2, 16, 5, offset) is None:
            return offset
    return None


def _session(heads: int, kv_heads: int, head_dim: int, local_window: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def info(name, dtype, shape):
        return helper.make_tensor_value_info(name, dtype, shape)

    node = helper.make_node(
        OP_TYPE,
        ["q", "k", "v", "past_k", "past_v", "seqlens_k", "total"],
        ["out", "present_k", "present_v"],
        domain=DOMAIN,
        num_heads=heads,
        kv_num_heads=kv_heads,
        do_rotary=0,
        local_window_size=local_window,
    )
    graph = helper.make_graph(
        [node],
        "probe",
        [
            info("q", TensorProto.FLOAT, [1, "s", heads * head_dim]),
            info("k", TensorProto.FLOAT, [1, "s", kv_heads * head_dim]),
            info("v", TensorProto.FLOAT, [1, "s", kv_heads * head_dim]),
            info("past_k", TensorProto.FLOAT, [1, kv_heads, "p", head_dim]),
            info("past_v", TensorProto.FLOAT, [1, kv_heads, "p", head_dim]),
            info("seqlens_k", TensorProto.INT32, [1]),
            info("total", TensorProto.INT32, []),
        ],
        [info(n, TensorProto.FLOAT, None) for n in ("out", "present_k", "present_v")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)]
    )
    options = ort.SessionOptions()
    options.log_severity_level = 4
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


@functools.lru_cache(maxsize=None)
def _probe(heads: int, kv_heads: int, head_dim: int, window: int, offset: int = 0) -> str | None:
    """Run the operator on random inputs at prompt lengths on both sides of the window and
    decode steps after them (cache cut to the window, as Tailor keeps it); None when it
    matches Tailor's attention within PROBE_TOLERANCE, else why not."""
    try:
        session = _session(heads, kv_heads, head_dim, window + offset if window else -1)
    except Exception as exc:  # noqa: BLE001 - an onnxruntime without the operator
        return f"onnxruntime cannot load {OP_TYPE}: {exc}"
    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    def flat(x):
        return x.transpose(1, 2).reshape(1, x.shape[2], -1).numpy()

    worst = 0.0
    for prompt in (3, window + 4) if window else (3, 13):
        cache_k = cache_v = torch.zeros(1, kv_heads, 0, head_dim)  # as Tailor keeps it
        # a prompt, decode steps, chunks after a cache (one longer than the window)
        for s in (prompt, 1, 3, *((window + 2,) if window else ()), 1):
            q, k, v = (randn(1, n, s, head_dim) for n in (heads, kv_heads, kv_heads))
            keys, values = torch.cat([cache_k, k], 2), torch.cat([cache_v, v], 2)
            expected = _reference(q, keys, values, cache_k.shape[2], window)
            total = keys.shape[2]
            try:
                out, present_k, present_v = session.run(
                    None,
                    {
                        "q": flat(q),
                        "k": flat(k),
                        "v": flat(v),
                        "past_k": cache_k.numpy(),
                        "past_v": cache_v.numpy(),
                        "seqlens_k": np.array([total - 1], np.int32),
                        "total": np.array(total, np.int32),
                    },
                )
            except Exception as exc:  # noqa: BLE001
                return f"onnxruntime refuses it: {str(exc).split('Status Message:')[-1].strip()}"
            worst = max(
                worst,
                float(np.abs(out - flat(expected)).max()),
                float(np.abs(present_k - keys.numpy()).max()),
                float(np.abs(present_v - values.numpy()).max()),
            )
            cache_k, cache_v = (
                (keys[:, :, -window:], values[:, :, -window:]) if window else (keys, values)
            )
    if not worst <= PROBE_TOLERANCE:
        return f"the operator differs from Tailor's attention by {worst:.1e}"
    return None


def unsupported_reason(op: Attention) -> str | None:
    """Why GroupQueryAttention cannot express this attention layer exactly (None: it can)."""
    if type(op) is not Attention:
        return f"{type(op).__name__} is not workers.liv.attention.Attention"
    if op.heads % op.kv_heads:
        return f"heads ({op.heads}) not a multiple of kv_heads ({op.kv_heads})"
    if op.head_dim % 8:
        return f"head size {op.head_dim} is not a multiple of 8 (onnxruntime's CPU kernel)"
    if op.window and _window_offset() is None:
        return "this onnxruntime's local_window_size does not match Tailor's window"
    # the operator's behaviour does not depend on the window's size beyond the mask, so a
    # large window is probed at a small one (a probe's prompt must pass the window)
    if not op.window:
        return _probe(op.heads, op.kv_heads, op.head_dim, 0)
    window = op.window if op.window <= 64 else 7
    return _probe(op.heads, op.kv_heads, op.head_dim, window, _window_offset())


@dataclass
class FusedPlan:
    """Which backbone slots' attention goes through the operator (their module does, so
    every execution of it, and every slot sharing its weights) and why the others do not."""

    fused: list[int] = field(default_factory=list)  # slot indices
    fallbacks: dict[int, str] = field(default_factory=dict)  # slot index -> reason

    def modules(self, model) -> list[Attention]:
        seen: dict[int, Attention] = {}
        for slot in self.fused:
            op = model.blocks[model.slot_module[slot]].op
            seen[id(op)] = op
        return list(seen.values())


def plan(model) -> FusedPlan:
    """Sort `model`'s (a TailorLM) attention slots into fused and fallback."""
    result = FusedPlan()
    for slot, module_index in enumerate(model.slot_module):
        op = model.blocks[module_index].op
        if not isinstance(op, Attention):
            continue
        reason = unsupported_reason(op)
        if reason is None:
            result.fused.append(slot)
        else:
            result.fallbacks[slot] = reason
    return result


class _Hook:
    """Attention.prefill/step/chunk for a fused layer: projections, QK-norm and RoPE as in
    Attention._project (the same elementwise math, in (B, T, H, hd) layout so no transposes
    are needed around the operator), attention by GroupQueryAttentionOp."""

    @staticmethod
    def _project(op: Attention, x: torch.Tensor, positions: torch.Tensor):
        b, t, _ = x.shape
        q = op.q_proj(x).view(b, t, op.heads, op.head_dim)
        k = op.featurizer.k_proj(x).view(b, t, op.kv_heads, op.head_dim)
        v = op.featurizer.v_proj(x)
        if op.qk_norm:
            q, k = op.q_norm(q), op.k_norm(k)
        cos, sin = rope_tables(positions, op.inv_freq)
        cos, sin = cos[:, None, :], sin[:, None, :]  # (T, 1, hd/2): broadcast over heads
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q.reshape(b, t, op.width), k.reshape(b, t, op.kv_heads * op.head_dim), v

    def _attend(self, op: Attention, q, k, v, past_k, past_v):
        y, k, v = GroupQueryAttentionOp.apply(
            q, k, v, past_k, past_v, op.heads, op.kv_heads, op.head_dim, op.window
        )
        if op.window:
            k, v = k[:, :, -op.window :], v[:, :, -op.window :]
        return op.o_proj(y), (k, v)

    def prefill(self, op: Attention, x: torch.Tensor):
        q, k, v = self._project(op, x, torch.arange(x.shape[1], device=x.device))
        empty = torch.zeros(x.shape[0], op.kv_heads, 0, op.head_dim, device=x.device, dtype=x.dtype)
        return self._attend(op, q, k, v, empty, empty)

    def step(self, op: Attention, x_t: torch.Tensor, state, position: torch.Tensor):
        q, k, v = self._project(op, x_t, position.reshape(1))
        return self._attend(op, q, k, v, state[0], state[1])

    def chunk(self, op: Attention, x: torch.Tensor, state, position: torch.Tensor):
        positions = position.reshape(1) + torch.arange(x.shape[1], device=x.device)
        q, k, v = self._project(op, x, positions)
        return self._attend(op, q, k, v, state[0], state[1])


@contextmanager
def fused_attention(model, layers: FusedPlan | None = None) -> Iterator[FusedPlan]:
    """Within the block, the planned attention modules of `model` trace as
    GroupQueryAttention (export with custom_opsets=CUSTOM_OPSETS); yields the plan."""
    layers = layers if layers is not None else plan(model)
    hooked = layers.modules(model)
    hook = _Hook()
    try:
        for op in hooked:
            op.export_hook = hook
        yield layers
    finally:
        for op in hooked:
            op.__dict__.pop("export_hook", None)
