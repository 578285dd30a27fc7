"""The trainer: a fixed token budget, then validation perplexity.

AdamW with decoupled weight decay on matrices only (norm gains, conv filters, modal poles
and biases are not decayed), linear warm-up then cosine decay, gradient clipping, and a seed
that fixes initial weights and the batch order, so two runs on the same machine with the
same thread count give the same perplexity bit for bit.

Data comes from the token cache (workers.data.token_cache): the corpus is tokenized once
into memory-mapped shards, and a run on a prepared corpus opens them in milliseconds
(`data_load_s` in the result); windows are gathered from the maps batch by batch.

On CUDA: bf16 autocast, fused AdamW, optional `torch.compile` (`training.compile`), and
MFU (6 * params * tokens/s over the GPU's peak) in the result. Everywhere: gradient
accumulation (`training.micro_batch_size`) keeps the batch and its draw order, so it
changes memory, not results (to float rounding).

perplexity = exp(mean token cross-entropy over the held-out split), scored on
non-overlapping windows of `seq_len` tokens (the first `eval_tokens` of the split).
"""

from __future__ import annotations

import math
import os
import resource
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from core import costs
from core.genome import Genome, GenomeError
from core.scaling import ScalingError, scale_genome
from core.stage_results import QualityResult
from core.training import TrainConfig
from workers.data.token_cache import PreparedTokens, prepare_for
from workers.model.compiler import TailorLM, compile_genome

ProgressFn = Callable[[int, int, float], None]  # (step, total_steps, loss)


class Diverged(Exception):
    pass


def _device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def param_groups(model: TailorLM, weight_decay: float) -> list[dict[str, Any]]:
    """Decay 2-D weights (projections, embeddings); leave 1-D gains/biases and the 3-D conv
    filters alone, as nanoGPT and the Hyena codebases do."""
    decay, no_decay = [], []
    for param in model.parameters():  # unique parameters: shared tensors appear once
        (decay if param.dim() == 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Multiplier of config.lr: linear warm-up, then cosine down to min_lr_fraction."""
    warmup = int(config.warmup_fraction * total)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = config.min_lr_fraction
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


@torch.no_grad()
def evaluate_loss(
    model: TailorLM | Callable,
    tokens: np.ndarray,
    seq_len: int,
    batch_size: int,
    device: torch.device,
    autocast: bool,
) -> float:
    """Mean next-token cross-entropy over non-overlapping windows of `tokens`."""
    model.eval()
    n_windows = (len(tokens) - 1) // seq_len
    if n_windows < 1:
        raise ValueError(f"held-out split has {len(tokens)} tokens, fewer than seq_len+1")
    total_loss, total_count = 0.0, 0
    for start in range(0, n_windows, batch_size):
        idx = np.arange(start, min(n_windows, start + batch_size)) * seq_len
        window = np.stack([tokens[i : i + seq_len + 1] for i in idx]).astype(np.int64)
        batch = torch.from_numpy(window).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(batch[:, :-1])
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
        )
        total_loss += loss.item()
        total_count += batch[:, 1:].numel()
    model.train()
    return total_loss / total_count


def _unigram_perplexity(train_counts: np.ndarray, val: np.ndarray) -> float:
    """A no-context baseline: add-one unigram model of the training split on held-out text
    (the counts come with the token cache, so the training tokens are never read whole)."""
    counts = np.asarray(train_counts, dtype=np.float64) + 1.0
    return float(np.exp(-np.log(counts[val] / counts.sum()).mean()))


# Dense bf16 tensor-core peaks (FLOP/s) by device name, most specific names first; a GPU not
# listed takes `training.peak_flops` or $TAILOR_PEAK_FLOPS, else reports no MFU.
PEAK_BF16_FLOPS: list[tuple[str, float]] = [
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H800", 989e12),
    ("B200", 2250e12),
    ("B100", 1750e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("A6000", 155e12),
    ("RTX 6000 Ada", 364e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),
    ("T4", 65e12),
]


def peak_flops(device: torch.device | str, setting: float | None = None) -> float | None:
    """The device's peak FLOP/s: the setting, $TAILOR_PEAK_FLOPS, or the table; None on CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    if setting:
        return float(setting)
    if os.environ.get("TAILOR_PEAK_FLOPS"):
        return float(os.environ["TAILOR_PEAK_FLOPS"])
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS if key in name), None)


def mfu(params: int | None, tokens_per_s: float | None, peak: float | None) -> float | None:
    """Model FLOPs utilisation: 6 * params * tokens/s (forward and backward) over the peak."""
    if not params or not tokens_per_s or not peak:
        return None
    return 6.0 * params * tokens_per_s / peak


def prepare_corpus(config: TrainConfig, progress: bool | None = None) -> PreparedTokens:
    """The config's corpus, tokenized once into the token cache (built on first use)."""
    return prepare_for(config, progress)


def prepare_tokens(config: TrainConfig, prepared: PreparedTokens | None = None):
    """(split, tokenizer, training tokens, the held-out tokens perplexity is scored on):
    the same for every run of one config, so a quantized graph is scored on exactly the
    tokens the trained model was. The training tokens are memory-mapped from the token
    cache (a np.memmap, or a TokenStream over several shards); the held-out tokens are the
    first `eval_tokens + 1` of the validation split as an int64 array."""
    prepared = prepared or prepare_corpus(config)
    val = prepared.val
    if config.eval_tokens is not None:
        val = val[: config.eval_tokens + 1]
    return prepared.split, prepared.tokenizer, prepared.train, np.asarray(val, dtype=np.int64)


def evaluate_quality(
    genome: Genome | dict[str, Any],
    config: TrainConfig | dict[str, Any],
    out_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> QualityResult:
    """Train `genome` for the config's token budget; never raises for a bad candidate."""
    config = config if isinstance(config, TrainConfig) else TrainConfig.model_validate(config)
    started = time.perf_counter()
    result = QualityResult(status="failed", threads=config.threads, config_key=config.cache_key())
    try:
        _train(genome, config, result, out_dir, progress, started)
    except GenomeError as exc:
        result.status, result.reason = "failed", f"malformed genome: {exc}"
    except (Diverged, ScalingError, TimeoutError) as exc:
        result.status, result.reason = "failed", str(exc)
    except Exception as exc:  # a worker boundary: any bad candidate is a failed record
        result.status, result.reason = "failed", f"{type(exc).__name__}: {exc}"
    result.wall_s = time.perf_counter() - started
    if result.peak_memory_bytes is None:
        result.peak_memory_bytes = _peak_rss_bytes()
    return result


def _train(
    genome: Genome | dict[str, Any],
    config: TrainConfig,
    result: QualityResult,
    out_dir: str | Path | None,
    progress: ProgressFn | None,
    started: float,
) -> None:
    genome = Genome.coerce(genome)  # rejects a malformed genome before any work
    result.genome_hash = genome.hash()
    torch.set_num_threads(config.threads)
    device = _device(config)
    result.device = device.type
    train_tokens, val_tokens = _load_data(config, genome, result)
    eval_genome = scale_genome(genome, config.eval_width_for(genome.width), config.eval_depth)
    result.eval_genome = eval_genome.to_json()
    torch.manual_seed(config.seed)
    model = compile_genome(eval_genome, seed=config.seed).to(device)
    result.params_trained = costs.params(eval_genome)
    forward = torch.compile(model) if config.compile else model
    _optimise(model, forward, train_tokens, config, device, result, progress, started)
    _score(model, forward, genome, val_tokens, config, device, result, out_dir)
    result.status = "ok"


def _load_data(
    config: TrainConfig, genome: Genome, result: QualityResult
) -> tuple[np.ndarray, np.ndarray]:
    """(train tokens, held-out tokens) from the token cache, described in the result."""
    data_started = time.perf_counter()
    prepared = prepare_corpus(config)
    split, tokenizer, train_tokens, val_tokens = prepare_tokens(config, prepared)
    result.split = {
        **split.describe(),
        "train_tokens": int(len(train_tokens)),
        "val_tokens_scored": int(len(val_tokens) - 1),
    }
    result.tokenizer = {k: v for k, v in tokenizer.identity.items() if k != "path"}
    result.unigram_perplexity = _unigram_perplexity(prepared.train_counts, val_tokens)
    result.data_load_s = time.perf_counter() - data_started
    result.token_cache = prepared.report()
    # The model trained is the genome's, vocabulary included (the job spec makes the search
    # space's vocabulary and the tokenizer's one setting), so `params` and perplexity describe
    # the same model. A BPE trained on a small corpus may end with fewer tokens than asked
    # for: its ids then fit, and the unused embedding rows stay in the count.
    if tokenizer.vocab_size > genome.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the genome's "
            f"vocab_size is {genome.vocab_size}"
        )
    if len(train_tokens) <= config.seq_len + 1:
        raise ValueError(f"training split has {len(train_tokens)} tokens, fewer than seq_len")
    return train_tokens, val_tokens


def _batch_loss(forward, batch: torch.Tensor, micro: int, device: torch.device) -> float:
    """Forward and backward over one batch in micro-batches; the batch's mean loss."""
    n_micro = batch.shape[0] // micro
    value = 0.0
    for part in batch.split(micro) if n_micro > 1 else (batch,):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = forward(part[:, :-1])
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), part[:, 1:].reshape(-1)
        )
        # Equal micro-batches: the batch's mean loss is the mean of theirs.
        (loss / n_micro if n_micro > 1 else loss).backward()
        value += loss.item() / n_micro if n_micro > 1 else loss.item()
    return value


def _optimise(
    model: TailorLM,
    forward,
    train_tokens: np.ndarray,
    config: TrainConfig,
    device: torch.device,
    result: QualityResult,
    progress: ProgressFn | None,
    started: float,
) -> None:
    """AdamW over the token budget; the loss curve and throughput go into the result."""
    optimizer = torch.optim.AdamW(
        param_groups(model, config.weight_decay),
        lr=config.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
        **({"fused": True} if device.type == "cuda" else {}),
    )
    tokens_per_step = config.batch_size * config.seq_len
    total_steps = max(1, math.ceil(config.tokens / tokens_per_step))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, total_steps, config)
    )
    rng = np.random.default_rng(config.seed)
    offsets = np.arange(config.seq_len + 1)
    first_loss = None
    train_started = time.perf_counter()
    model.train()
    for step in range(total_steps):
        # One draw of the whole batch's windows, whatever the micro-batching: the batch order
        # (and so the result) depends on the seed alone.
        starts = rng.integers(0, len(train_tokens) - config.seq_len - 1, config.batch_size)
        windows = np.asarray(train_tokens[starts[:, None] + offsets], dtype=np.int64)
        batch = torch.from_numpy(windows).to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        value = _batch_loss(forward, batch, config.micro_batch_size or config.batch_size, device)
        first_loss = _check_loss(value, first_loss, step, total_steps, config)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        if step % config.log_every == 0 or step == total_steps - 1:
            result.loss_curve.append(((step + 1) * tokens_per_step, round(value, 5)))
        if progress is not None:
            progress(step + 1, total_steps, value)
        if time.perf_counter() - started > config.timeout_s:
            raise TimeoutError(f"timeout: {config.timeout_s}s budget spent at step {step}")
    if device.type == "cuda":
        torch.cuda.synchronize()
    result.tokens_trained = total_steps * tokens_per_step
    result.tokens_per_s = result.tokens_trained / (time.perf_counter() - train_started)
    result.peak_flops = peak_flops(device, config.peak_flops)
    result.mfu = mfu(result.params_trained, result.tokens_per_s, result.peak_flops)


def _check_loss(
    value: float, first_loss: float | None, step: int, total_steps: int, config: TrainConfig
) -> float:
    """Diverged on a non-finite loss, or one far above the first; returns the first loss."""
    if not math.isfinite(value):
        raise Diverged(f"diverged: non-finite loss {value} at step {step}")
    first_loss = first_loss if first_loss is not None else value
    if step > total_steps // 10 and value > config.divergence_factor * first_loss:
        raise Diverged(
            f"diverged: loss {value:.3f} at step {step} exceeds "
            f"{config.divergence_factor} x the first loss {first_loss:.3f}"
        )
    return first_loss


def _score(
    model: TailorLM,
    forward,
    genome: Genome,
    val_tokens: np.ndarray,
    config: TrainConfig,
    device: torch.device,
    result: QualityResult,
    out_dir: str | Path | None,
) -> None:
    """Validation perplexity, peak memory, the weights (to `out_dir`) and MAD scores."""
    micro = config.micro_batch_size or config.batch_size
    val_loss = evaluate_loss(
        forward, val_tokens, config.seq_len, micro, device, device.type == "cuda"
    )
    if not math.isfinite(val_loss):
        raise Diverged(f"diverged: validation loss {val_loss}")
    result.val_loss = val_loss
    result.perplexity = math.exp(val_loss)
    result.peak_memory_bytes = (
        torch.cuda.max_memory_allocated() if device.type == "cuda" else _peak_rss_bytes()
    )
    if out_dir is not None:
        path = Path(out_dir) / f"{result.genome_hash}-{result.config_key}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
        result.weights_path = str(path)
    if config.mad:
        from workers.mad.runner import evaluate_mad

        result.mad = evaluate_mad(
            genome,
            seed=config.seed,
            eval_width=config.eval_width_for(genome.width),
            threads=config.threads,
        ).to_json()
