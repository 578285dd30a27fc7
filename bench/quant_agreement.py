"""How far int8 and int4 graphs stray, per preset: from the float graphs, decode from prefill,
perplexity through decode from perplexity through prefill, greedy text from float's.

`python -m bench.quant_agreement [--tokens 150000] [--width 64] [--prompts 10]`

Fixed before reading: the presets at the quantize test's size with random weights
(width 32, the case that failed CI: lfm2's int8 decode-vs-prefill 2.2 against a bound of
1.88), and the same presets trained on the bundled corpus (byte tokenizer, width 64, 150k
tokens, seed 0). Per preset and precision: the logits' scale, max |variant - float|,
decode-after-prefill vs prefill and its bound (core.precision.agreement_bound); on the
trained models also perplexity token by token through the decode graph against one prefill
over the same 256 held-out tokens (target: within 1 % for int8, equal for int4), and greedy
continuations of 32 tokens from `--prompts` held-out prompts against float's: tokens agreed
before the first difference, and float's own top-1 margin where they first differ.
Writes bench/results/quant_agreement.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from core import PRESETS, preset
from core.precision import Variant
from core.training import TrainConfig
from workers.export.decode_checks import (
    decode_perplexity,
    first_divergence,
    greedy_continuation,
    load_pair,
    window_perplexity,
)
from workers.export.variants import export_variants
from workers.model.compiler import compile_genome
from workers.train.trainer import evaluate_quality, prepare_tokens

OUT = Path(__file__).parent / "results" / "quant_agreement.json"
VARIANTS = (Variant("int8"), Variant("int4"))
CONTINUATION = 32
PERPLEXITY_WINDOW = 256


def _check_row(manifest) -> dict:
    check = manifest.check
    return {
        "logits_scale": check.logits_scale,
        "vs_float_max": check.vs_float_max_abs_diff,
        "vs_float_mean": check.vs_float_mean_abs_diff,
        "decode_vs_prefill": check.decode_vs_prefill_max_diff,
        "allowed": check.allowed,
        "top1_agreement": check.vs_float_top1_agreement,
    }


def random_weights(name: str, folder: Path) -> dict:
    size = dict(width=32, heads=2, kv_heads=1, ffn=64, vocab=97)  # tests/workers/test_quantize
    if name != "lfm2":
        size["layers"] = 3
    exported = export_variants(preset(name, **size).to_json(), folder, list(VARIANTS))
    return {v.precision: _check_row(exported[v.tag].manifest) for v in VARIANTS}


def trained(name: str, folder: Path, config: TrainConfig, val: np.ndarray, prompts: int) -> dict:
    width = config.eval_width or 64
    size = dict(width=width, heads=2, kv_heads=1, ffn=2 * width, vocab=320)
    if name != "lfm2":
        size["layers"] = 3
    genome = preset(name, **size).to_json()
    result = evaluate_quality(genome, config, out_dir=folder)
    if result.status != "ok":
        raise RuntimeError(f"{name}: training failed: {result.reason}")
    model = compile_genome(genome, seed=config.seed)
    model.load_state_dict(torch.load(result.weights_path, weights_only=True))
    exported = export_variants(genome, folder, list(VARIANTS), model=model.eval())
    window = val[: PERPLEXITY_WINDOW + 1]
    float_pair = load_pair(folder, Variant())
    starts = np.linspace(0, len(val) - 64, prompts).astype(int)
    references = [greedy_continuation(float_pair, val[s : s + 32], CONTINUATION) for s in starts]
    row = {
        "perplexity": result.perplexity,
        "float_window_perplexity": window_perplexity(float_pair, window),
    }
    for variant in VARIANTS:
        pair = load_pair(folder, variant)
        agreed, margins = [], []
        for s, reference in zip(starts, references):
            other = greedy_continuation(pair, val[s : s + 32], CONTINUATION)
            first = first_divergence(reference, other)
            agreed.append(CONTINUATION if first is None else first)
            if first is not None:
                margins.append(reference.margins[first])
        row[variant.precision] = {
            **_check_row(exported[variant.tag].manifest),
            "decode_perplexity": decode_perplexity(pair, window),
            "window_perplexity": window_perplexity(pair, window),
            "greedy_agreed": agreed,
            "margin_at_divergence": margins,
        }
    return row


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quant_agreement")
    parser.add_argument("--tokens", type=int, default=150_000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=10)
    args = parser.parse_args(argv)
    config = TrainConfig.model_validate(
        {
            "tokens": args.tokens,
            "seq_len": 64,
            "batch_size": 8,
            "eval_tokens": 8192,
            "tokenizer": {"kind": "byte"},
            "eval_width": args.width,
        }
    )
    _, _, _, val = prepare_tokens(config)
    results = {
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "config": vars(args),
        "presets": {},
    }
    started = time.perf_counter()
    for name in PRESETS:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            results["presets"][name] = {
                "random": random_weights(name, Path(a)),
                "trained": trained(name, Path(b), config, val, args.prompts),
            }
        _print(name, results["presets"][name])
    results["wall_s"] = time.perf_counter() - started
    OUT.write_text(json.dumps(results, indent=2))
    print(f"wrote {OUT}")
    return 0


def _print(name: str, row: dict) -> None:
    for kind in ("random", "trained"):
        for precision in ("int8", "int4"):
            r = row[kind][precision] if kind == "random" else row[kind][precision]
            line = (
                f"{name:14s} {kind:7s} {precision}: scale {r['logits_scale']:6.2f}  "
                f"|q-float| {r['vs_float_max']:.3f}  decode-vs-prefill "
                f"{r['decode_vs_prefill']:.2e} (allowed {r['allowed']:.2e})"
            )
            if kind == "trained":
                ratio = r["decode_perplexity"] / r["window_perplexity"] - 1
                line += (
                    f"  ppl decode/prefill {ratio:+.3%}  greedy agreed median "
                    f"{statistics.median(r['greedy_agreed'])}/{CONTINUATION}"
                )
            print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
