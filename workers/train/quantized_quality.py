"""The quality cost of quantization: a trained model's validation perplexity through its
quantized ONNX prefill graph.

The model is the one the trainer scored (same weights, same held-out tokens from
`prepare_tokens`), exported to float32 ONNX, quantized with onnxruntime's tools
(workers.export.quantize) and run window by window in onnxruntime, so `perplexity[:int8]`
and `perplexity` differ only by what quantization does to the model. The float ONNX
graph's own perplexity is kept beside it as a check of the path (it equals the torch
perplexity to rounding).
"""

from __future__ import annotations

import io
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from core.genome import Genome
from core.precision import Variant
from core.stage_results import QuantizedQuality, QuantizedScore
from core.training import TrainConfig


def evaluate_quantized_quality(
    eval_genome: dict[str, Any],
    config: TrainConfig | dict[str, Any],
    weights: bytes,
    tags: list[str],
) -> QuantizedQuality:
    """A score per variant tag; never raises for a bad candidate (a failed result says why)."""
    started = time.perf_counter()
    config = config if isinstance(config, TrainConfig) else TrainConfig.model_validate(config)
    out = QuantizedQuality(status="failed")
    try:
        out.variants = _score(
            Genome.coerce(eval_genome), config, weights, [Variant.from_tag(t) for t in tags]
        )
        out.status = "ok"
    except Exception as exc:  # a worker boundary: a bad candidate is a failed record
        out.reason = f"{type(exc).__name__}: {str(exc)[:2000]}"
    out.wall_s = time.perf_counter() - started
    return out


def _score(
    genome: Genome, config: TrainConfig, weights: bytes, variants: list[Variant]
) -> dict[str, QuantizedScore]:
    from workers.export.onnx_export import export_onnx
    from workers.export.quantize import onnx_perplexity, quantize_export
    from workers.model.compiler import compile_genome
    from workers.train.trainer import prepare_tokens

    torch.set_num_threads(config.threads)
    _, tokenizer, _, val_tokens = prepare_tokens(config)
    model = compile_genome(genome, seed=config.seed)
    model.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
    model.eval()
    scored: dict[str, QuantizedScore] = {}
    with tempfile.TemporaryDirectory(prefix="tailor-qq-") as tmp:
        folder = Path(tmp)
        float_ppl: dict[str, float] = {}
        for variant in variants:
            base = variant.base
            if base.tag not in float_ppl:
                options = {"attention": base.attention} if base.attention != "plain" else {}
                export_onnx(genome, folder, model=model, verify=False, **options)
                float_ppl[base.tag] = onnx_perplexity(
                    folder / base.file("prefill"), val_tokens, config.seq_len
                )
            manifest = quantize_export(folder, variant) if variant.precision != "float32" else None
            ppl = (
                onnx_perplexity(folder / variant.file("prefill"), val_tokens, config.seq_len)
                if manifest is not None
                else float_ppl[base.tag]
            )
            if not math.isfinite(ppl):
                raise ValueError(f"{variant.tag or 'float32'} perplexity is {ppl}")
            scored[variant.tag] = QuantizedScore(
                precision=variant.precision,
                perplexity=ppl,
                val_loss=math.log(ppl),
                float_onnx_perplexity=float_ppl[base.tag],
                tokens_scored=int(len(val_tokens) - 1),
                check=manifest.check.model_dump() if manifest and manifest.check else None,
                model_bytes=manifest.model_bytes if manifest else None,
            )
    return scored
