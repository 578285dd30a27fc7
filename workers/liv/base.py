"""The dual-mode interface every LIV operator implements, and the pieces they share.

Parallel mode `forward(x)` maps (B, L, D) -> (B, L, D) for training; `prefill(x)` does the
same and also returns the decode state after the sequence; `step(x_t, state, position)`
advances one token with an explicit state; `chunk(x, state, position)` advances a chunk of
tokens (B, T, D) starting at absolute index `position` from an explicit state, so a long
prompt can be prefilled a chunk at a time, as phone runtimes do (llama.cpp's micro-batches)
to keep prefill's activations to a chunk's. States are tuples of tensors so the ONNX decode
graph can take and return them as named inputs/outputs; `state_layout` says their shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

State = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class StateTensor:
    """Shape of one state tensor with batch 1: ints, and "past" for a growing time axis."""

    name: str
    shape: tuple[int | str, ...]
    past_cap: int | None = None


class LIV(nn.Module):
    """Base class: subclasses set `featurizer` (shareable) and implement the four methods."""

    featurizer: nn.Module

    def __init__(self, width: int, genes: dict[str, int], featurizer: nn.Module | None = None):
        super().__init__()
        self.width = width
        self.genes = dict(genes)
        self.featurizer = featurizer if featurizer is not None else self.make_featurizer()

    def make_featurizer(self) -> nn.Module:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, L, D)
        return self.prefill(x)[0]

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> State:
        raise NotImplementedError

    def step(
        self, x_t: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def chunk(
        self, x: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        """(B, T, D) tokens at positions position..position+T-1 after `state` -> outputs and
        the state after them; exact with respect to `prefill` of the whole sequence."""
        raise NotImplementedError

    def state_layout(self) -> list[StateTensor]:
        return []


class RMSNorm(nn.Module):
    """RMSNorm with a learned gain; computed in fp32 for stable low-precision training."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


class CausalDepthwiseConv(nn.Module):
    """Causal depthwise conv over time, bias-free, with an exact streaming step.

    Its state is the last `length - 1` inputs, channels first: (B, C, length - 1).
    """

    def __init__(self, channels: int, length: int):
        super().__init__()
        self.channels, self.length = channels, length
        self.weight = nn.Parameter(torch.empty(channels, 1, length))
        nn.init.normal_(self.weight, std=length**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L) -> (B, C, L)
        return F.conv1d(F.pad(x, (self.length - 1, 0)), self.weight, groups=self.channels)

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(forward(x), the state after consuming x: its last length-1 steps, zero-padded)."""
        return self._conv_and_state(F.pad(x, (self.length - 1, 0)), x.shape[-1])

    def chunk(self, x: torch.Tensor, buf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, T) after the state `buf` -> (the conv over them, the state after them)."""
        return self._conv_and_state(torch.cat([buf, x], dim=-1), x.shape[-1])

    def _conv_and_state(
        self, window: torch.Tensor, steps: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The conv over `window` (length - 1 held steps, then `steps` new ones) and the state
        after it (its last length - 1 steps).

        The state is split off the conv's own input and concatenated back. As a slice beside
        the conv it would be a branch only the graph's state output needs, and ONNX Runtime
        may run such a branch last, after the logits (it did in prefill, and in the int8
        chunk graph, whose fusion re-creates the logits' producer), keeping this input alive
        through the peak. Split off and concatenated back, it is computed on the conv's way
        (one more copy of the input, freed at once)."""
        head, tail = torch.split(window, [steps, self.length - 1], dim=-1)
        return F.conv1d(torch.cat([head, tail], dim=-1), self.weight, groups=self.channels), tail

    def step(self, x_t: torch.Tensor, buf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        window = torch.cat([buf, x_t], dim=-1)  # (B, C, length)
        y = (window * self.weight[:, 0, :]).sum(-1, keepdim=True)  # (B, C, 1)
        return y, window[:, :, 1:]

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> torch.Tensor:
        return torch.zeros(batch, self.channels, self.length - 1, device=device, dtype=dtype)


class Residual(nn.Module):
    """Pre-norm residual around one LIV: x + op(norm(x)). Weight sharing reuses this whole."""

    def __init__(self, op: LIV):
        super().__init__()
        self.norm = RMSNorm(op.width)
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.op(self.norm(x))

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, State]:
        y, state = self.op.prefill(self.norm(x))
        return x + y, state

    def step(
        self, x_t: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        y, state = self.op.step(self.norm(x_t), state, position)
        return x_t + y, state

    def chunk(
        self, x: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        y, state = self.op.chunk(self.norm(x), state, position)
        return x + y, state


class KVProjections(nn.Module):
    """Key and value projections: the featurizer attention-like operators can share."""

    def __init__(self, width: int, key_width: int, value_width: int):
        super().__init__()
        self.k_proj = linear(width, key_width)
        self.v_proj = linear(width, value_width)


def linear(d_in: int, d_out: int, bias: bool = False) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=bias)
    nn.init.normal_(layer.weight, std=d_in**-0.5)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer
