"""Gated convolutions of the Hyena family: Hyena, Hyena-X and Hyena-Y.

All three project the input to three streams with one `in_proj` and gate them elementwise:
- Hyena:   short depthwise convs on q, k, v, then out_proj(q * conv(k * v));
- Hyena-X: short depthwise convs on q, k, v, no inner conv: out_proj(q * k * v);
- Hyena-Y: no featurizer convs, inner conv only: out_proj(C * conv(B * x)) with
  B, C, x = in_proj(x).chunk(3) — at filter length 3 exactly LFM2's conv block.
The inner conv is an explicit causal depthwise filter (length 3..128); its decode state is
the last `filter_length - 1` inputs, so decoding is exact and the cache does not grow.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import LIV, CausalDepthwiseConv, State, StateTensor, linear


class ProjectionFeaturizer(nn.Module):
    """in_proj to three streams, optionally followed by a short depthwise conv on them."""

    def __init__(self, width: int, short_length: int | None):
        super().__init__()
        self.in_proj = linear(width, 3 * width)
        self.short_conv = CausalDepthwiseConv(3 * width, short_length) if short_length else None


class GatedConv(LIV):
    """Shared machinery; subclasses pick which convolutions exist."""

    short_length_gene: str | None = None
    inner_conv: bool = True
    stream_order = (0, 1, 2)  # which in_proj chunk is q, k, v

    def __init__(self, width: int, genes: dict[str, int], featurizer: nn.Module | None = None):
        super().__init__(width, genes, featurizer)
        self.inner = CausalDepthwiseConv(width, genes["filter_length"]) if self.inner_conv else None
        self.out_proj = linear(width, width)

    def make_featurizer(self) -> nn.Module:
        short = self.genes[self.short_length_gene] if self.short_length_gene else None
        return ProjectionFeaturizer(self.width, short)

    def _streams(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        chunks = z.chunk(3, dim=1)
        return tuple(chunks[i] for i in self.stream_order)  # type: ignore[return-value]

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, State]:
        z = self.featurizer.in_proj(x).transpose(1, 2)  # (B, 3D, L)
        state: list[torch.Tensor] = []
        if self.featurizer.short_conv is not None:
            z, tail = self.featurizer.short_conv.prefill(z)
            state.append(tail)
        q, k, v = self._streams(z)  # each (B, D, L)
        u = k * v
        if self.inner is not None:
            u, tail = self.inner.prefill(u)
            state.append(tail)
        y = q * u
        return self.out_proj(y.transpose(1, 2)), tuple(state)

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> State:
        state = []
        if self.featurizer.short_conv is not None:
            state.append(self.featurizer.short_conv.init_state(batch, device, dtype))
        if self.inner is not None:
            state.append(self.inner.init_state(batch, device, dtype))
        return tuple(state)

    def chunk(
        self, x: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        return self._advance(x, state, "chunk")

    def step(
        self, x_t: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        return self._advance(x_t, state, "step")

    def _advance(self, x: torch.Tensor, state: State, mode: str) -> tuple[torch.Tensor, State]:
        """(B, T, D) after `state`: each conv's `mode` ("step": one token, the window summed;
        "chunk": any T, a conv over the held tail and the chunk)."""
        z = self.featurizer.in_proj(x).transpose(1, 2)  # (B, 3D, T)
        new_state: list[torch.Tensor] = []
        pos = 0
        if self.featurizer.short_conv is not None:
            z, buf = getattr(self.featurizer.short_conv, mode)(z, state[pos])
            new_state.append(buf)
            pos += 1
        q, k, v = self._streams(z)
        u = k * v
        if self.inner is not None:
            u, buf = getattr(self.inner, mode)(u, state[pos])
            new_state.append(buf)
        return self.out_proj((q * u).transpose(1, 2)), tuple(new_state)

    def state_layout(self) -> list[StateTensor]:
        layout = []
        if self.featurizer.short_conv is not None:
            sc = self.featurizer.short_conv
            layout.append(StateTensor("short_conv", (1, sc.channels, sc.length - 1)))
        if self.inner is not None:
            layout.append(StateTensor("inner_conv", (1, self.width, self.inner.length - 1)))
        return layout


class Hyena(GatedConv):
    short_length_gene = "short_length"
    inner_conv = True


class HyenaX(GatedConv):
    short_length_gene = "short_length"
    inner_conv = False


class HyenaY(GatedConv):
    """B, C, x = in_proj(x).chunk(3); out_proj(C * conv(B * x)) — the streams keep LFM2's
    order, so the gate q is C, and k * v is B * x."""

    short_length_gene = None
    inner_conv = True
    stream_order = (1, 0, 2)
