"""Gated linear attention: a linear recurrence with a matrix-valued state per head.

S_t = a_t * S_{t-1} + k_t^T v_t,   o_t = q_t S_t / sqrt(key_dim),
with a per-head data-dependent decay a_t = sigmoid(w x_t + b)^(1/16) (GLA's normaliser keeps
decays near 1, i.e. long memory). Parallel form: o = ((q k^T) * M) v with
M[i, j] = exp(c_i - c_j) for j <= i, c the cumulative log-decay — exact, O(L^2) like
attention during training, O(1) per token when decoding. The output is RMS-normalised per
head and gated by silu(g(x)) as in GLA / RetNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import LIV, KVProjections, RMSNorm, State, StateTensor, linear

DECAY_NORMALISER = 16.0


class GatedLinearAttention(LIV):
    def __init__(self, width: int, genes: dict[str, int], featurizer: nn.Module | None = None):
        self.heads, self.key_dim = genes["heads"], genes["key_dim"]
        self.value_dim = width // genes["heads"]
        super().__init__(width, genes, featurizer)
        self.q_proj = linear(width, self.heads * self.key_dim)
        self.decay_proj = linear(width, self.heads, bias=True)
        nn.init.constant_(self.decay_proj.bias, 4.0)  # sigmoid(4)^(1/16): slow decay at init
        self.gate_proj = linear(width, width)
        self.head_norm = RMSNorm(width)
        self.out_proj = linear(width, width)

    def make_featurizer(self) -> nn.Module:
        return KVProjections(self.width, self.heads * self.key_dim, self.width)

    def _project(self, x: torch.Tensor):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.key_dim).transpose(1, 2)
        k = self.featurizer.k_proj(x).view(b, t, self.heads, self.key_dim).transpose(1, 2)
        v = self.featurizer.v_proj(x).view(b, t, self.heads, self.value_dim).transpose(1, 2)
        log_a = F.logsigmoid(self.decay_proj(x).float()).transpose(1, 2) / DECAY_NORMALISER
        return q.float() * self.key_dim**-0.5, k.float(), v.float(), log_a  # (B, H, T, .)

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, _, t, _ = o.shape  # (B, H, T, dv)
        o = o.transpose(1, 2).reshape(b, t, self.heads, self.value_dim)
        # RMS per head, then one learned gain over the full width.
        o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + self.head_norm.eps)
        o = o.reshape(b, t, self.width) * self.head_norm.weight.float()
        return self.out_proj(o.to(x.dtype) * F.silu(self.gate_proj(x)))

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, State]:
        q, k, v, log_a = self._project(x)
        c = torch.cumsum(log_a, dim=-1)  # (B, H, T)
        t = x.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        diff = (c[..., :, None] - c[..., None, :]).masked_fill(~causal, float("-inf"))
        scores = (q @ k.transpose(-1, -2)) * torch.exp(diff)  # (B, H, T, T)
        o = scores @ v
        # State after T tokens: sum_j exp(c_last - c_j) k_j^T v_j.
        w = torch.exp(c[..., -1:] - c)  # (B, H, T)
        state = (k * w[..., None]).transpose(-1, -2) @ v  # (B, H, dk, dv)
        return self._output(o, x), (state,)

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> State:
        return (
            torch.zeros(
                batch, self.heads, self.key_dim, self.value_dim, device=device, dtype=torch.float32
            ),
        )

    def step(
        self, x_t: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        q, k, v, log_a = self._project(x_t)  # (B, H, 1, .)
        s = torch.exp(log_a)[..., None] * state[0] + k.transpose(-1, -2) @ v  # (B,H,dk,dv)
        return self._output(q @ s, x_t), (s,)

    def chunk(
        self, x: torch.Tensor, state: State, position: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        """Chunkwise form: within the chunk as prefill, plus the carried state decayed to
        each position, S_i = exp(c_i) S_prev + sum_(j<=i) exp(c_i - c_j) k_j^T v_j."""
        q, k, v, log_a = self._project(x)
        c = torch.cumsum(log_a, dim=-1)  # (B, H, T), within the chunk
        t = x.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        diff = (c[..., :, None] - c[..., None, :]).masked_fill(~causal, float("-inf"))
        scores = (q @ k.transpose(-1, -2)) * torch.exp(diff)  # (B, H, T, T)
        o = scores @ v + (q * torch.exp(c)[..., None]) @ state[0]
        w = torch.exp(c[..., -1:] - c)  # (B, H, T)
        carried = torch.exp(c[..., -1:])[..., None] * state[0]  # (B, H, 1, 1) * (B, H, dk, dv)
        return self._output(o, x), (carried + (k * w[..., None]).transpose(-1, -2) @ v,)

    def state_layout(self) -> list[StateTensor]:
        return [StateTensor("state", (1, self.heads, self.key_dim, self.value_dim))]
