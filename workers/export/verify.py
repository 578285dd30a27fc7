"""Exported graphs against torch: onnxruntime runs the prefill graph on a prompt, then decode
steps fed with the graphs' own cache outputs (the way a phone runs them), and the worst
difference from the torch model's logits and states says whether the export is right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.precision import Variant
from workers.model.compiler import TailorLM


def verify_lengths(model: TailorLM) -> tuple[int, ...]:
    """Prompt lengths that put every window (and the decode steps after it) on both sides."""
    window = max([t.past_cap or 0 for t in model.state_layout()] + [0])
    return (11, max(23, window + 7))


def worst_difference(model: TailorLM, out: Path, variant: str = "") -> float:
    """`verify_export` at every prompt length `verify_lengths` names, the worst of them."""
    return max(verify_export(model, out, prompt=n, variant=variant) for n in verify_lengths(model))


def verify_export(
    model: TailorLM,
    out_dir: str | Path,
    prompt: int = 11,
    decode_steps: int = 5,
    seed: int = 0,
    variant: str = "",
) -> float:
    """Max abs difference between onnxruntime and torch: prefill of a prompt, then decode
    steps fed with the graphs' own cache outputs (the way a phone runs them). `variant`:
    the float32 variant's tag whose graphs to run ("" for prefill.onnx and decode.onnx,
    "float32-fused" for the fused ones)."""
    import onnxruntime as ort

    out = Path(out_dir)
    prefill_file, decode_file, _ = Variant.from_tag(variant).files
    options = ort.SessionOptions()
    options.log_severity_level = 3
    prefill = ort.InferenceSession(
        str(out / prefill_file), options, providers=["CPUExecutionProvider"]
    )
    decode = ort.InferenceSession(
        str(out / decode_file), options, providers=["CPUExecutionProvider"]
    )
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.plan.vocab_size, (1, prompt + decode_steps), generator=gen)
    worst = 0.0
    with torch.no_grad():
        logits, states = model.prefill(ids[:, :prompt])
        ort_out = prefill.run(None, {"input_ids": ids[:, :prompt].numpy()})
        worst = max(
            worst,
            *(
                float(np.abs(a - b.numpy()).max()) if a.size else 0.0
                for a, b in zip(ort_out, [logits, *states])
            ),
        )
        ort_states = ort_out[1:]
        names = [i.name for i in decode.get_inputs()]
        for t in range(prompt, prompt + decode_steps):
            position = torch.tensor([t], dtype=torch.int64)
            logits, states = model.step(ids[:, t : t + 1], position, states)
            feed = {"input_ids": ids[:, t : t + 1].numpy(), "position": position.numpy()}
            feed.update(zip(names[2:], ort_states))
            ort_out = decode.run(None, feed)
            ort_states = ort_out[1:]
            worst = max(
                worst,
                *(
                    float(np.abs(a - b.numpy()).max()) if a.size else 0.0
                    for a, b in zip(ort_out, [logits, *states])
                ),
            )
    return worst
