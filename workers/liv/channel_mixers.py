"""Channel mixers: SwiGLU and a plain GELU MLP. Stateless, so decoding is the same map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import LIV, State, linear


class ChannelMixer(LIV):
    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, State]:
        return self.mix(x), ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x)

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> State:
        return ()

    def step(
        self, x_t: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        return self.mix(x_t), ()

    def chunk(
        self, x: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        return self.mix(x), ()

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class GateUp(nn.Module):
    def __init__(self, width: int, ffn: int):
        super().__init__()
        self.w1 = linear(width, ffn)  # gate
        self.w3 = linear(width, ffn)  # up


class SwiGLU(ChannelMixer):
    def __init__(self, width: int, genes: dict[str, int], featurizer: nn.Module | None = None):
        super().__init__(width, genes, featurizer)
        self.w2 = linear(genes["ffn"], width)

    def make_featurizer(self) -> nn.Module:
        return GateUp(self.width, self.genes["ffn"])

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.featurizer.w1(x)) * self.featurizer.w3(x))


class Up(nn.Module):
    def __init__(self, width: int, ffn: int):
        super().__init__()
        self.up = linear(width, ffn)


class MLP(ChannelMixer):
    def __init__(self, width: int, genes: dict[str, int], featurizer: nn.Module | None = None):
        super().__init__(width, genes, featurizer)
        self.down = linear(genes["ffn"], width)

    def make_featurizer(self) -> nn.Module:
        return Up(self.width, self.genes["ffn"])

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.featurizer.up(x)))
