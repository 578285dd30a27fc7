"""The compiler: genome JSON -> `TailorLM`, a causal LM whose sharing genes share tensors.

Each backbone slot becomes a pre-norm residual around its LIV operator. A slot with
`share_weights = j` reuses slot j's residual module object (so its parameters are the same
tensors); a slot with `share_featurizer = j` builds its own operator around slot j's
featurizer module. Block-wise repeat executes the same modules again (MobileLLM-LS), each
execution with its own decode state.

Four modes, all exact with respect to each other (tests check it for every operator):
- `forward(ids)`: parallel, for training;
- `prefill(ids)`: parallel, also returning every decode state;
- `step(ids_t, position, states)`: one token with explicit states, for decoding;
- `chunk(ids, position, states)`: a chunk of tokens with explicit states, for prefilling a
  long prompt a chunk at a time (what phone runtimes do to bound prefill's activations).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core import arch, catalog
from core.arch import ArchPlan
from core.genome import Genome
from workers.liv import load_operator
from workers.liv.base import LIV, Residual, RMSNorm, State, StateTensor


class TailorLM(nn.Module):
    def __init__(self, genome: Genome | dict[str, Any]):
        super().__init__()
        self.genome = Genome.coerce(genome)
        plan = self.plan = arch.plan(self.genome)
        self.embed = nn.Embedding(plan.vocab_size, plan.width)
        nn.init.normal_(self.embed.weight, std=plan.width**-0.5)
        modules: list[Residual] = []
        self.slot_module: list[int] = []  # slot index -> index into self.blocks
        for slot in plan.slots:
            if slot.share_weights is not None:
                self.slot_module.append(self.slot_module[slot.share_weights])
                continue
            featurizer = None
            if slot.share_featurizer is not None:
                featurizer = modules[self.slot_module[slot.share_featurizer]].op.featurizer
            extra = {"rope": plan.rope} if catalog.REGISTRY[slot.op].uses_rope else {}
            op: LIV = load_operator(slot.op)(plan.width, slot.genes, featurizer, **extra)
            self.slot_module.append(len(modules))
            modules.append(Residual(op))
        self.blocks = nn.ModuleList(modules)
        self.norm = RMSNorm(plan.width)
        self.lm_head = (
            None if plan.tie_embeddings else nn.Linear(plan.width, plan.vocab_size, bias=False)
        )
        if self.lm_head is not None:
            nn.init.normal_(self.lm_head.weight, std=plan.width**-0.5)

    # ----------------------------------------------------------------- structure

    def executions(self) -> list[Residual]:
        return [self.blocks[self.slot_module[i]] for i in self.plan.executions]

    def num_params(self) -> int:
        """Unique parameters: shared tensors are counted once."""
        return sum(p.numel() for p in self.parameters())

    def state_layout(self) -> list[StateTensor]:
        """Every decode-state tensor, in the flat order `prefill`/`step` use, named
        `e{execution}_s{slot}_{op}_{name}`."""
        layout = []
        for e, (slot_index, block) in enumerate(zip(self.plan.executions, self.executions())):
            op = self.plan.slots[slot_index].op
            for t in block.op.state_layout():
                layout.append(StateTensor(f"e{e}_s{slot_index}_{op}_{t.name}", t.shape, t.past_cap))
        return layout

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm(h)
        weight = self.embed.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(h, weight)

    # ----------------------------------------------------------------- the modes

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, D)
        """The final normalised hidden states (what the LM head reads)."""
        h = self.embed(input_ids)
        for block in self.executions():
            h = block(h)
        return self.norm(h)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, V)
        weight = self.embed.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(self.hidden_states(input_ids), weight)

    def prefill(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = self.embed(input_ids)
        states: list[torch.Tensor] = []
        for block in self.executions():
            h, state = block.prefill(h)
            states.extend(state)
        return self._logits(h), states

    def init_states(self, batch: int = 1, device=None) -> list[torch.Tensor]:
        states: list[torch.Tensor] = []
        for block in self.executions():
            states.extend(block.op.init_state(batch, device=device))
        return states

    def step(
        self, input_ids: torch.Tensor, position: torch.Tensor, states: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """input_ids (B, 1), position (1,) int64 = index of this token; states flat list."""
        h, new_states = self._advance(input_ids, position, states, "step")
        return self._logits(h), new_states

    def chunk(
        self,
        input_ids: torch.Tensor,
        position: torch.Tensor,
        states: list[torch.Tensor],
        last_only: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """input_ids (B, T) at positions position..position+T-1 ((1,) int64) after `states`
        (flat; `init_states()` before the first chunk) -> logits (B, T, V), or the last
        position's (B, 1, V) with `last_only`, and the states after the chunk."""
        h, new_states = self._advance(input_ids, position, states, "chunk")
        return self._logits(h[:, -1:] if last_only else h), new_states

    def _advance(
        self, input_ids: torch.Tensor, position: torch.Tensor, states: list[torch.Tensor], mode: str
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Every execution's `mode` ("step" or "chunk") over its slice of the flat states:
        the last hidden states and the new flat states."""
        h = self.embed(input_ids)
        new_states: list[torch.Tensor] = []
        pos = 0
        for block in self.executions():
            n = len(block.op.state_layout())
            h, state = getattr(block, mode)(h, tuple(states[pos : pos + n]), position)
            new_states.extend(state)
            pos += n
        return h, new_states


def compile_genome(genome: Genome | dict[str, Any], seed: int | None = None) -> TailorLM:
    """Build the module; `seed` makes the initial weights reproducible."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return TailorLM(genome)
    return TailorLM(genome)


def state_bytes(states: list[torch.Tensor], dtype_bytes: int | None = None) -> int:
    """Bytes held by a list of state tensors (at their own dtype unless one is given)."""
    return sum(t.numel() * (dtype_bytes or t.element_size()) for t in states)


__all__ = ["TailorLM", "compile_genome", "state_bytes", "ArchPlan", "State"]
