"""Training throughput of the compiled `transformer++` against a hand-written reference.

The reference is a plain nanoGPT-style Llama block written directly against torch (GQA with
`scaled_dot_product_attention`, RoPE, SwiGLU, RMSNorm, tied embeddings) with exactly the
same parameter count. Both train on the same batches, interleaved round by round in one
process, so machine noise hits both alike. Target: compiled / reference tokens/s >= 0.9.

    python -m bench.train_throughput [--width 256 --layers 4 --rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core import preset
from workers.model.compiler import compile_genome
from workers.train.trainer import param_groups

RESULTS = Path(__file__).parent / "results"


class RefBlock(nn.Module):
    def __init__(self, d: int, heads: int, kv_heads: int, ffn: int):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, d // heads
        self.attn_norm, self.ffn_norm = nn.RMSNorm(d, eps=1e-5), nn.RMSNorm(d, eps=1e-5)
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.wv = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.w1 = nn.Linear(d, ffn, bias=False)
        self.w3 = nn.Linear(d, ffn, bias=False)
        self.w2 = nn.Linear(ffn, d, bias=False)

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.wk(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        v = self.wv(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.wo(y.transpose(1, 2).reshape(b, t, d))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class RefTransformer(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, kv_heads: int, ffn: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(RefBlock(d, heads, kv_heads, ffn) for _ in range(layers))
        self.norm = nn.RMSNorm(d, eps=1e-5)
        self.hd = d // heads

    def forward(self, ids):
        t = ids.shape[1]
        inv = 1.0 / (10000.0 ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        ang = torch.arange(t, dtype=torch.float32)[:, None] * inv[None]
        cos, sin = ang.cos(), ang.sin()
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, cos, sin)
        return F.linear(self.norm(x), self.embed.weight)


def time_steps(model, optimizer, batches) -> float:
    start = time.perf_counter()
    for batch in batches:
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--ffn", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="steps per round per model")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    genome = preset("transformer++", width=args.width, layers=args.layers, heads=args.heads,
                    kv_heads=args.kv_heads, ffn=args.ffn, vocab=args.vocab).to_json()
    ours = compile_genome(genome, seed=0)
    ref = RefTransformer(args.vocab, args.width, args.layers, args.heads, args.kv_heads, args.ffn)
    n_ours, n_ref = ours.num_params(), sum(p.numel() for p in ref.parameters())
    assert n_ours == n_ref, f"parameter counts differ: {n_ours} vs {n_ref}"
    models = {
        "tailor": (ours, torch.optim.AdamW(param_groups(ours, 0.1), lr=1e-3)),
        "reference": (ref, torch.optim.AdamW(ref.parameters(), lr=1e-3, weight_decay=0.1)),
    }
    batches = [torch.randint(0, args.vocab, (args.batch, args.seq_len + 1))
               for _ in range(args.steps)]
    tokens = args.steps * args.batch * args.seq_len
    for model, opt in models.values():  # warm-up: allocator, kernels
        time_steps(model, opt, batches[:2])
    rates: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for round_index in range(args.rounds):
        # Alternate who goes first so a slow drift of the machine favours neither.
        for name in names if round_index % 2 == 0 else names[::-1]:
            model, opt = models[name]
            rates[name].append(tokens / time_steps(model, opt, batches))
    median = {name: statistics.median(r) for name, r in rates.items()}
    # Paired per-round ratios cancel noise common to both runs of a round.
    ratio = statistics.median(a / b for a, b in zip(rates["tailor"], rates["reference"]))
    result = {"benchmark": "train_throughput", "params": n_ours, "args": vars(args),
              "tokens_per_s": median, "samples": rates, "ratio": ratio, "target": 0.9,
              "meets_target": ratio >= 0.9}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_throughput.json").write_text(json.dumps(result, indent=2))
    print(f"params {n_ours:,} (both)  threads {args.threads}")
    print(f"tailor    {median['tailor']:10.0f} tokens/s")
    print(f"reference {median['reference']:10.0f} tokens/s")
    print(f"ratio tailor/reference = {ratio:.3f} (median of paired rounds; target >= 0.9)")
    return result


if __name__ == "__main__":
    main()
