"""Causal self-attention: MHA / GQA / MQA with RoPE, optional sliding window and QK-norm.

RoPE follows the genome's global setting (core.genome.Rope): base, and Llama-3's frequency
scaling as Hugging Face transformers computes it (`rope_type: llama3`).

The decode state is the roped K and V of the tokens held: (B, kv_heads, past, head_dim)
each, capped at `window` tokens when the layer is windowed. The featurizer (shareable with
an earlier attention slot) is the K/V projection pair.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.genome import Rope

from .base import LIV, KVProjections, RMSNorm, State, StateTensor, linear


def inverse_frequencies(head_dim: int, rope: Rope = Rope()) -> torch.Tensor:
    """(head_dim/2,) float32: base^(-2i/head_dim), rescaled per Llama 3 when asked."""
    inv_freq = 1.0 / (
        float(rope.base) ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim)
    )
    if rope.scaling == "llama3":
        low_wavelen = rope.original_context / rope.low_freq_factor
        high_wavelen = rope.original_context / rope.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / rope.factor, inv_freq)
        smooth = (rope.original_context / wavelen - rope.low_freq_factor) / (
            rope.high_freq_factor - rope.low_freq_factor
        )
        smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        inv_freq = torch.where(medium, smoothed, scaled)
    return inv_freq


def rope_tables(
    positions: torch.Tensor, inv_freq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, head_dim/2) for integer positions (T,)."""
    angles = (
        positions.to(torch.float32)[:, None] * inv_freq.to(positions.device, torch.float32)[None, :]
    )
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate halves (Llama/NeoX layout); x is (B, H, T, head_dim)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return out.to(x.dtype)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask (True = attend) as an additive float one (0 or -inf). torch.onnx
    writes a boolean mask as Where, then after the softmax IsNaN and Where over the whole
    (heads, T, S) scores (for rows that attend to nothing, which causal rows never are):
    two more passes over the largest tensor of plain attention."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
        ~mask, float("-inf")
    )


class Attention(LIV):
    # Export only: workers.export.fused_attention sets this on an instance while it traces
    # the ONNX graphs (prefill/step then delegate to it); None everywhere else.
    export_hook = None

    def __init__(
        self,
        width: int,
        genes: dict[str, int],
        featurizer: nn.Module | None = None,
        rope: Rope = Rope(),
    ):
        self.heads, self.kv_heads = genes["heads"], genes["kv_heads"]
        self.head_dim = width // self.heads
        super().__init__(width, genes, featurizer)
        self.rope = rope
        self.register_buffer("inv_freq", inverse_frequencies(self.head_dim, rope), persistent=False)
        self.window = genes["window"]
        self.q_proj = linear(width, width)
        self.o_proj = linear(width, width)
        self.qk_norm = bool(genes["qk_norm"])
        if self.qk_norm:
            self.q_norm = RMSNorm(self.head_dim)
            self.k_norm = RMSNorm(self.head_dim)

    def make_featurizer(self) -> nn.Module:
        kv_width = self.kv_heads * self.head_dim
        return KVProjections(self.width, kv_width, kv_width)

    def _project(self, x: torch.Tensor, positions: torch.Tensor):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.featurizer.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.featurizer.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        cos, sin = rope_tables(positions, self.inv_freq)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v  # (B, H|G, T, hd)

    def _expand_kv(self, kv: torch.Tensor) -> torch.Tensor:
        """(B, G, T, hd) -> (B, H, T, hd): each KV head serves heads/kv_heads query heads."""
        if self.kv_heads == self.heads:
            return kv
        b, g, t, hd = kv.shape
        rep = self.heads // self.kv_heads
        return kv[:, :, None].expand(b, g, rep, t, hd).reshape(b, g * rep, t, hd)

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """q (B, H, T, hd) attends to k, v (B, G, S, hd) under a (T, S) `mask`, boolean
        (True = attend) or additive (`additive_mask`), or None: causal, T == S.

        Eager, K and V are expanded to every query head for torch's fused four-axis kernel.
        Exported with fewer KV heads than query heads, the KV heads stay grouped: a group's
        query heads become a fifth axis that keys and values broadcast over (MatMul
        broadcasts; written out, as both exporters translate scaled_dot_product_attention
        on four axes only). The same arithmetic without the expansion, which the exporter
        wrote as an Expand plus a shape computation over the key length: a GQA layer's
        prefill ran 56 more nodes than a multi-head layer's, now 16 (bench/README, Latency
        model: int8 prefill 3-5 % faster on a width-512 GQA model; graph revision 7; the
        decode step's grouping, `_attend_one`, is revision 6's). Multi-head attention keeps
        torch's four-axis form, so its graphs are revision 6's."""
        if self.kv_heads == self.heads or not torch.onnx.is_in_onnx_export():
            ke, ve = self._expand_kv(k), self._expand_kv(v)
            if mask is None:
                return F.scaled_dot_product_attention(q, ke, ve, is_causal=True)
            return F.scaled_dot_product_attention(q, ke, ve, attn_mask=mask)
        if mask is None:
            positions = torch.arange(q.shape[2], device=q.device)
            mask = positions[None, :] <= positions[:, None]
        bias = additive_mask(mask, q.dtype) if mask.dtype == torch.bool else mask
        grouped = q.unflatten(1, (self.kv_heads, self.heads // self.kv_heads))
        scores = grouped @ k[:, :, None].transpose(-1, -2) * self.head_dim**-0.5 + bias
        return (scores.softmax(dim=-1) @ v[:, :, None]).flatten(1, 2)

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        b, _, t, _ = y.shape
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.width))

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, State]:
        if self.export_hook is not None:
            return self.export_hook.prefill(self, x)
        t = x.shape[1]
        positions = torch.arange(t, device=x.device)
        q, k, v = self._project(x, positions)
        if self.window:
            i = positions[:, None]
            j = positions[None, :]
            mask = (j <= i) & (i - j < self.window)  # (T, T), True = attend
            y = self._attend(q, k, v, mask)
            k, v = k[:, :, -self.window :], v[:, :, -self.window :]
        else:
            y = self._attend(q, k, v, None)
        return self._merge(y), (k, v)

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> State:
        empty = torch.zeros(batch, self.kv_heads, 0, self.head_dim, device=device, dtype=dtype)
        return empty, empty.clone()

    def step(
        self, x_t: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        if self.export_hook is not None:
            return self.export_hook.step(self, x_t, state, position)
        q, k_new, v_new = self._project(x_t, position.reshape(1))
        k = torch.cat([state[0], k_new], dim=2)
        v = torch.cat([state[1], v_new], dim=2)
        if self.window:
            k, v = k[:, :, -self.window :], v[:, :, -self.window :]
        return self._merge(self._attend_one(q, k, v)), (k, v)

    def _attend_one(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One query position against the cache held, the KV heads not expanded: a group's
        `heads/kv_heads` query heads become that many query rows of one KV head, which
        attend to every key held (no mask: the step's token is the newest). The same
        arithmetic as expanding K and V to every query head, without the expansion: in the
        exported decode graph that expansion was an Expand plus a shape computation per
        layer over the dynamic cache length (about 60 more nodes per GQA layer), and a
        width-512 GQA Transformer's int8 decode step took 1.4x the time it takes grouped
        (float32 1.1x; bench/README, the latency model's seventh run)."""
        rows = self.heads // self.kv_heads
        grouped = q.reshape(-1, self.kv_heads, rows, self.head_dim)  # q is (B, H, 1, hd)
        y = F.scaled_dot_product_attention(grouped, k, v)  # (B, G, rows, hd)
        return y.reshape(-1, self.heads, 1, self.head_dim)

    def chunk(
        self, x: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        """Tokens at position..position+T-1 attend to the cache held (the last `past` tokens
        before them) and causally to each other."""
        if self.export_hook is not None:
            return self.export_hook.chunk(self, x, state, position)
        t = x.shape[1]
        positions = position.reshape(1) + torch.arange(t, device=x.device)
        q, k_new, v_new = self._project(x, positions)
        k = torch.cat([state[0], k_new], dim=2)
        v = torch.cat([state[1], v_new], dim=2)
        keys = positions[0] - state[0].shape[2] + torch.arange(k.shape[2], device=x.device)
        i, j = positions[:, None], keys[None, :]
        mask = j <= i  # (T, past + T), True = attend
        if self.window:
            mask = mask & (i - j < self.window)
        y = self._attend(q, k, v, additive_mask(mask, q.dtype))
        if self.window:
            k, v = k[:, :, -self.window :], v[:, :, -self.window :]
        return self._merge(y), (k, v)

    def state_layout(self) -> list[StateTensor]:
        cap = self.window or None
        shape = (1, self.kv_heads, "past", self.head_dim)
        return [StateTensor("k", shape, cap), StateTensor("v", shape, cap)]
