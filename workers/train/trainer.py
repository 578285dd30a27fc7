"""The trainer: a fixed token budget, then validation perplexity.

AdamW with decoupled weight decay on matrices only (norm gains, conv filters, modal poles
and biases are not decayed), linear warm-up then cosine decay, gradient clipping, and a seed
that fixes initial weights and the batch order, so two runs on the same machine with the
same thread count give the same perplexity bit for bit. bf16 autocast on CUDA.

perplexity = exp(mean token cross-entropy over the held-out split), scored on
non-overlapping windows of `seq_len` tokens (the first `eval_tokens` of the split).
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from core import costs
from core.genome import Genome, GenomeError
from core.scaling import ScalingError, scale_genome
from core.training import TrainConfig
from workers.data.corpus import load_corpus
from workers.data.tokenizer import build_tokenizer
from workers.model.compiler import TailorLM, compile_genome

ProgressFn = Callable[[int, int, float], None]  # (step, total_steps, loss)


@dataclass
class QualityResult:
    status: str  # "ok" or "failed"
    reason: str | None = None
    perplexity: float | None = None
    val_loss: float | None = None
    unigram_perplexity: float | None = None
    loss_curve: list[tuple[int, float]] = field(default_factory=list)  # (tokens seen, loss)
    tokens_trained: int = 0
    tokens_per_s: float | None = None
    wall_s: float = 0.0
    peak_memory_bytes: int | None = None
    params_trained: int | None = None
    device: str = "cpu"
    threads: int = 1
    split: dict[str, Any] = field(default_factory=dict)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    weights_path: str | None = None
    genome_hash: str | None = None
    config_key: str | None = None
    eval_genome: dict[str, Any] | None = None
    mad: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


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
def evaluate_loss(model: TailorLM, tokens: np.ndarray, seq_len: int, batch_size: int,
                  device: torch.device, autocast: bool) -> float:
    """Mean next-token cross-entropy over non-overlapping windows of `tokens`."""
    model.eval()
    n_windows = (len(tokens) - 1) // seq_len
    if n_windows < 1:
        raise ValueError(f"held-out split has {len(tokens)} tokens, fewer than seq_len+1")
    total_loss, total_count = 0.0, 0
    for start in range(0, n_windows, batch_size):
        idx = np.arange(start, min(n_windows, start + batch_size)) * seq_len
        window = np.stack([tokens[i:i + seq_len + 1] for i in idx])
        batch = torch.from_numpy(window).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                               batch[:, 1:].reshape(-1), reduction="sum")
        total_loss += loss.item()
        total_count += batch[:, 1:].numel()
    model.train()
    return total_loss / total_count


def _unigram_perplexity(train: np.ndarray, val: np.ndarray, vocab: int) -> float:
    """A no-context baseline: add-one unigram model of the training split on held-out text."""
    counts = np.bincount(train, minlength=vocab).astype(np.float64) + 1.0
    return float(np.exp(-np.log(counts[val] / counts.sum()).mean()))


def prepare_tokens(config: TrainConfig):
    """(split, tokenizer, training tokens, the held-out tokens perplexity is scored on):
    the same for every run of one config, so a quantized graph is scored on exactly the
    tokens the trained model was."""
    split = load_corpus(config.data, config.text_field).split(config.val_fraction)
    tokenizer = build_tokenizer(split, config.tokenizer.kind, config.tokenizer.vocab_size)
    train_tokens = tokenizer.encode_documents(split.train)
    val_tokens = tokenizer.encode_documents(split.val)
    if config.eval_tokens is not None:
        val_tokens = val_tokens[: config.eval_tokens + 1]
    return split, tokenizer, train_tokens, val_tokens


def evaluate_quality(genome: Genome | dict[str, Any], config: TrainConfig | dict[str, Any],
                     out_dir: str | Path | None = None,
                     progress: ProgressFn | None = None) -> QualityResult:
    """Train `genome` for the config's token budget; never raises for a bad candidate."""
    config = config if isinstance(config, TrainConfig) else TrainConfig.model_validate(config)
    started = time.perf_counter()
    result = QualityResult(status="failed", threads=config.threads,
                           config_key=config.cache_key())
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


def _train(genome: Genome | dict[str, Any], config: TrainConfig, result: QualityResult,
           out_dir: str | Path | None, progress: ProgressFn | None, started: float) -> None:
    genome = Genome.coerce(genome)  # rejects a malformed genome before any work
    result.genome_hash = genome.hash()
    torch.set_num_threads(config.threads)
    device = _device(config)
    result.device = device.type
    autocast = device.type == "cuda"

    split, tokenizer, train_tokens, val_tokens = prepare_tokens(config)
    result.split = {**split.describe(), "train_tokens": int(len(train_tokens)),
                    "val_tokens_scored": int(len(val_tokens) - 1)}
    result.tokenizer = {k: v for k, v in tokenizer.identity.items() if k != "path"}
    result.unigram_perplexity = _unigram_perplexity(train_tokens, val_tokens, tokenizer.vocab_size)

    # The model trained is the genome's, vocabulary included (the job spec makes the search
    # space's vocabulary and the tokenizer's one setting), so `params` and perplexity describe
    # the same model. A BPE trained on a small corpus may end with fewer tokens than asked
    # for: its ids then fit, and the unused embedding rows stay in the count.
    if tokenizer.vocab_size > genome.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the genome's "
                         f"vocab_size is {genome.vocab_size}")
    eval_genome = scale_genome(genome, config.eval_width, config.eval_depth)
    result.eval_genome = eval_genome.to_json()

    torch.manual_seed(config.seed)
    model = compile_genome(eval_genome, seed=config.seed).to(device)
    result.params_trained = costs.params(eval_genome)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr,
                                  betas=(0.9, 0.95), eps=1e-8)
    tokens_per_step = config.batch_size * config.seq_len
    total_steps = max(1, math.ceil(config.tokens / tokens_per_step))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                  lambda s: lr_at(s, total_steps, config))
    rng = np.random.default_rng(config.seed)
    if len(train_tokens) <= config.seq_len + 1:
        raise ValueError(f"training split has {len(train_tokens)} tokens, fewer than seq_len")
    offsets = np.arange(config.seq_len + 1)

    first_loss = None
    train_started = time.perf_counter()
    model.train()
    for step in range(total_steps):
        starts = rng.integers(0, len(train_tokens) - config.seq_len - 1, config.batch_size)
        batch = torch.from_numpy(train_tokens[starts[:, None] + offsets]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                               batch[:, 1:].reshape(-1))
        value = loss.item()
        if not math.isfinite(value):
            raise Diverged(f"diverged: non-finite loss {value} at step {step}")
        first_loss = first_loss if first_loss is not None else value
        if step > total_steps // 10 and value > config.divergence_factor * first_loss:
            raise Diverged(f"diverged: loss {value:.3f} at step {step} exceeds "
                           f"{config.divergence_factor} x the first loss {first_loss:.3f}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        if step % config.log_every == 0 or step == total_steps - 1:
            result.loss_curve.append(((step + 1) * tokens_per_step, round(value, 5)))
        if progress is not None:
            progress(step + 1, total_steps, value)
        if time.perf_counter() - started > config.timeout_s:
            raise TimeoutError(f"timeout: {config.timeout_s}s budget spent at step {step}")
    train_s = time.perf_counter() - train_started
    result.tokens_trained = total_steps * tokens_per_step
    result.tokens_per_s = result.tokens_trained / train_s

    val_loss = evaluate_loss(model, val_tokens, config.seq_len, config.batch_size, device,
                             autocast)
    if not math.isfinite(val_loss):
        raise Diverged(f"diverged: validation loss {val_loss}")
    result.val_loss = val_loss
    result.perplexity = math.exp(val_loss)
    result.peak_memory_bytes = (torch.cuda.max_memory_allocated() if device.type == "cuda"
                                else _peak_rss_bytes())
    if out_dir is not None:
        path = Path(out_dir) / f"{result.genome_hash}-{result.config_key}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
        result.weights_path = str(path)
    if config.mad:
        from workers.mad.runner import evaluate_mad

        result.mad = evaluate_mad(genome, seed=config.seed, eval_width=config.eval_width,
                                  threads=config.threads).to_json()
    result.status = "ok"
