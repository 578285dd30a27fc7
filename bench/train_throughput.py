"""Training throughput of the compiled `transformer++` against a hand-written reference.

The reference is a plain nanoGPT-style Llama block written directly against torch (GQA with
`scaled_dot_product_attention`, RoPE, SwiGLU, RMSNorm, tied embeddings) with exactly the
same parameter count. Both train on the same batches, interleaved round by round in one
process, so machine noise hits both alike. Target: compiled / reference tokens/s >= 0.9.
The `hyena-edge` preset at the same width and depth is timed beside them (no reference).

On a GPU (`--device cuda`) the steps are those of the trainer: bf16 autocast, fused AdamW,
optionally `torch.compile` (`--compile`); each model also reports its model FLOPs
utilisation, MFU = 6 * params * tokens/s / the GPU's peak (workers.train.trainer's table,
or `--peak-flops`).

    python -m bench.train_throughput [--width 256 --layers 4 --rounds 5]
    python -m bench.train_throughput --device cuda --width 320 --layers 8 --batch 32 [--compile]
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
from workers.train.trainer import mfu, param_groups, peak_flops

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


def time_steps(model, optimizer, batches, device: torch.device = torch.device("cpu")) -> float:
    autocast = device.type == "cuda"
    if autocast:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(batch[:, :-1])
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    if autocast:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags, checked before any model is built so a bad --device fails at once."""
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
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model")
    parser.add_argument(
        "--peak-flops",
        type=float,
        default=None,
        help="the device's peak FLOP/s for MFU (default: known GPUs' table)",
    )
    parser.add_argument("--no-hyena", action="store_true", help="skip the hyena-edge model")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    return args


def build_models(args: argparse.Namespace, device: torch.device) -> tuple[dict, dict]:
    """Each model with its optimizer, and its parameter count; the reference must match ours
    exactly or the comparison means nothing."""
    shape = dict(
        width=args.width,
        layers=args.layers,
        heads=args.heads,
        kv_heads=args.kv_heads,
        ffn=args.ffn,
        vocab=args.vocab,
    )
    genome = preset("transformer++", **shape).to_json()
    ours = compile_genome(genome, seed=0)
    ref = RefTransformer(args.vocab, args.width, args.layers, args.heads, args.kv_heads, args.ffn)
    n_ours, n_ref = ours.num_params(), sum(p.numel() for p in ref.parameters())
    assert n_ours == n_ref, f"parameter counts differ: {n_ours} vs {n_ref}"
    modules = {"tailor": ours, "reference": ref}
    if not args.no_hyena:
        modules["hyena-edge"] = compile_genome(preset("hyena-edge", **shape).to_json(), seed=0)
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}
    fused = {"fused": True} if device.type == "cuda" else {}
    models = {}
    for name, module in modules.items():
        module = module.to(device)
        groups = (
            param_groups(module, 0.1)
            if name != "reference"
            else [{"params": list(module.parameters()), "weight_decay": 0.1}]
        )
        optimizer = torch.optim.AdamW(groups, lr=1e-3, **fused)
        models[name] = (torch.compile(module) if args.compile else module, optimizer)
    return models, params


def tokens_per_s_by_round(
    models: dict, args: argparse.Namespace, device: torch.device
) -> dict[str, list[float]]:
    """Every model's tokens/s in each round, on the same batches, after a shared warm-up."""
    batches = [
        torch.randint(0, args.vocab, (args.batch, args.seq_len + 1)).to(device)
        for _ in range(args.steps)
    ]
    tokens = args.steps * args.batch * args.seq_len
    for model, opt in models.values():  # warm-up: allocator, kernels, compilation
        time_steps(model, opt, batches[:2], device)
    rates: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for round_index in range(args.rounds):
        # Alternate who goes first so a slow drift of the machine favours neither.
        for name in names if round_index % 2 == 0 else names[::-1]:
            model, opt = models[name]
            rates[name].append(tokens / time_steps(model, opt, batches, device))
    return rates


def summarise(
    rates: dict[str, list[float]],
    params: dict[str, int],
    args: argparse.Namespace,
    device: torch.device,
) -> dict:
    """The result: medians, MFU and the paired ratio against the 0.9 target."""
    median = {name: statistics.median(r) for name, r in rates.items()}
    peak = peak_flops(device, args.peak_flops)
    utilisation = {name: mfu(params[name], median[name], peak) for name in rates}
    # Paired per-round ratios cancel noise common to both runs of a round.
    ratio = statistics.median(a / b for a, b in zip(rates["tailor"], rates["reference"]))
    # "params" is the count tailor and the reference share (build_models checks they match).
    return {
        "benchmark": "train_throughput",
        "params": params["reference"],
        "params_by_model": params,
        "args": vars(args),
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
        "peak_flops": peak,
        "tokens_per_s": median,
        "mfu": utilisation,
        "samples": rates,
        "ratio": ratio,
        "target": 0.9,
        "meets_target": ratio >= 0.9,
    }


def print_summary(result: dict, args: argparse.Namespace) -> None:
    """One line per model and the ratio, as the README's table reads them."""
    median, utilisation = result["tokens_per_s"], result["mfu"]
    params = result["params_by_model"]
    print(
        f"params {result['params']:,} (tailor and reference)  device {result['device']}  "
        f"threads {args.threads}  compile {args.compile}"
    )
    for name in median:
        share = f"  MFU {utilisation[name]:.1%}" if utilisation[name] is not None else ""
        print(f"{name:<11}{median[name]:12.0f} tokens/s  ({params[name]:,} params){share}")
    print(
        f"ratio tailor/reference = {result['ratio']:.3f} (median of paired rounds; target >= 0.9)"
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    models, params = build_models(args, device)
    rates = tokens_per_s_by_round(models, args, device)
    result = summarise(rates, params, args, device)
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    (RESULTS / f"train_throughput{suffix}.json").write_text(json.dumps(result, indent=2))
    print_summary(result, args)
    return result


if __name__ == "__main__":
    main()
