"""Hyena with an unbounded implicit filter in modal form (the StripedHyena long conv).

The inner filter of channel d is h_d[t] = sum_n R[d, n] * lambda[d, n]^t with real poles
lambda in (0, 1), plus a skip term. In parallel mode the filter is materialised up to L and
applied as a causal depthwise convolution; in decode mode the same filter is a diagonal
linear recurrence s_t = lambda * s_{t-1} + u_t, y_t = sum_n R s_t[n] + skip * u_t, so decode
is exact with `modes` numbers of state per channel whatever the context. Filter parameters
are kept in fp32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import LIV, State, StateTensor, linear
from .gated_conv import ProjectionFeaturizer


class HyenaModal(LIV):
    def __init__(self, width: int, genes: dict[str, int], featurizer: nn.Module | None = None):
        super().__init__(width, genes, featurizer)
        modes = genes["modes"]
        self.modes = modes
        # Time constants spread log-uniformly from ~1 to ~1000 tokens across the modes.
        rates = torch.logspace(0, -3, modes).repeat(width, 1)  # (D, N)
        self.log_rate = nn.Parameter(rates.log())
        self.residues = nn.Parameter(torch.randn(width, modes) / math.sqrt(modes))
        self.skip = nn.Parameter(torch.ones(width))
        self.out_proj = linear(width, width)

    def make_featurizer(self) -> nn.Module:
        return ProjectionFeaturizer(self.width, self.genes["short_length"])

    def _log_poles(self) -> torch.Tensor:
        return -self.log_rate.float().exp()  # log lambda, (D, N), < 0

    def _in_proj(self, x: torch.Tensor):
        z = self.featurizer.in_proj(x).transpose(1, 2)  # (B, 3D, T)
        return z

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, State]:
        z = self._in_proj(x)
        z, short_state = self.featurizer.short_conv.prefill(z)
        q, k, v = z.chunk(3, dim=1)
        u = (k * v).float()  # (B, D, L)
        length = u.shape[-1]
        t = torch.arange(length, device=x.device, dtype=torch.float32)
        log_poles = self._log_poles()
        decay = torch.exp(log_poles[:, :, None] * t)  # (D, N, L): lambda^t
        h = (self.residues.float()[:, :, None] * decay).sum(1)  # (D, L)
        conv = F.conv1d(F.pad(u, (length - 1, 0)), h.flip(-1)[:, None, :], groups=self.width)
        y = conv + self.skip.float()[:, None] * u
        # State after L tokens: s[n] = sum_j lambda^(L-1-j) u_j.
        modal_state = torch.einsum("bdl,dnl->bdn", u, decay.flip(-1))
        out = self.out_proj((q * y.to(q.dtype)).transpose(1, 2))
        return out, (short_state, modal_state)

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> State:
        return (
            self.featurizer.short_conv.init_state(batch, device, dtype),
            torch.zeros(batch, self.width, self.modes, device=device, dtype=torch.float32),
        )

    def step(
        self, x_t: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        z, short_state = self.featurizer.short_conv.step(self._in_proj(x_t), state[0])
        q, k, v = z.chunk(3, dim=1)  # (B, D, 1)
        u = (k * v).float()
        s = torch.exp(self._log_poles()) * state[1] + u  # (B, D, N)
        y = (s * self.residues.float()).sum(-1, keepdim=True) + self.skip.float()[:, None] * u
        out = self.out_proj((q * y.to(q.dtype)).transpose(1, 2))
        return out, (short_state, s)

    def chunk(
        self, x: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        """The filter within the chunk as a convolution (as prefill), plus the carried state
        decayed to each position: s_t = lambda^(t+1) s_prev + sum_(j<=t) lambda^(t-j) u_j."""
        z, short_state = self.featurizer.short_conv.chunk(self._in_proj(x), state[0])
        q, k, v = z.chunk(3, dim=1)
        u = (k * v).float()  # (B, D, T)
        length = u.shape[-1]
        t = torch.arange(length, device=x.device, dtype=torch.float32)
        log_poles = self._log_poles()
        decay = torch.exp(log_poles[:, :, None] * t)  # (D, N, T): lambda^t
        h = (self.residues.float()[:, :, None] * decay).sum(1)  # (D, T)
        conv = F.conv1d(F.pad(u, (length - 1, 0)), h.flip(-1)[:, None, :], groups=self.width)
        carried = state[1] * self.residues.float()  # (B, D, N)
        carry = torch.einsum("bdn,dnt->bdt", carried, decay * torch.exp(log_poles)[:, :, None])
        y = conv + carry + self.skip.float()[:, None] * u
        modal_state = torch.exp(log_poles * length) * state[1] + torch.einsum(
            "bdl,dnl->bdn", u, decay.flip(-1)
        )
        out = self.out_proj((q * y.to(q.dtype)).transpose(1, 2))
        return out, (short_state, modal_state)

    def state_layout(self) -> list[StateTensor]:
        sc = self.featurizer.short_conv
        return [
            StateTensor("short_conv", (1, sc.channels, sc.length - 1)),
            StateTensor("modal", (1, self.width, self.modes)),
        ]
