"""How a quantized variant is checked before it is kept: run as a phone runs it (prefill,
then decode steps fed with their own cache), decode after prefill must agree with prefill of
the whole sequence, and the last-token prefill graph and the chunk graph (the prompt a few
tokens at a time) with the full one's last row, within
`core.precision.agreement_bound`; its deviation from the float graphs on the same tokens is
recorded in the manifest (`VariantCheck`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.chunked_prefill import CHUNK_GRAPH, run_chunked
from core.manifest import GraphManifest, VariantCheck
from core.precision import AGREEMENT_TOLERANCE, INT8_DEVIATION_FACTOR, Variant, agreement_bound
from workers.export.decode_checks import GraphPair, decode_after_prefill, load_pair, session


class QuantizationError(ValueError):
    """A quantized variant that does not agree with itself (decode vs prefill) within the
    precision's tolerance, or that could not be made."""


def _lengths(manifest: GraphManifest) -> tuple[int, ...]:
    """Prompt lengths on both sides of every window (as the float export is verified)."""
    window = max([t.past_cap or 0 for t in manifest.graphs["decode"].inputs] + [0])
    return (11, max(23, window + 7))


def check_variant(
    folder: Path, manifest: GraphManifest, base: GraphManifest | None, steps: int = 5, seed: int = 0
) -> VariantCheck:
    """Decode-after-prefill vs prefill of the whole sequence (this variant against itself),
    the last-token prefill graph against the full one's last row, and this variant's logits
    against the float graphs' (`base`) on the same tokens; the bound both are held to is
    `core.precision.agreement_bound`."""
    pair = load_pair(folder, manifest)
    reference: GraphPair | None = load_pair(folder, base) if base is not None else None
    rng = np.random.default_rng(seed)
    worst, scale, decode_dev, deviations, agree, count = 0.0, 0.0, 0.0, [], 0, 0
    for prompt in _lengths(manifest):
        ids = rng.integers(0, manifest.vocab_size, (1, prompt + steps), dtype=np.int64)
        stepped = decode_after_prefill(pair, ids, prompt)
        whole = pair.prefill.run(None, {"input_ids": ids})[0]
        worst = max(worst, float(np.abs(stepped - whole[:, prompt - 1 :]).max()))
        scale = max(scale, float(np.abs(whole).max()))
        if reference is not None:
            floats = reference.prefill.run(None, {"input_ids": ids})[0]
            deviations.append(np.abs(whole - floats).ravel())
            decode_dev = max(decode_dev, float(np.abs(stepped - floats[:, prompt - 1 :]).max()))
            agree += int((whole.argmax(-1) == floats.argmax(-1)).sum())
            count += whole.shape[1]
    tolerance = (
        INT8_DEVIATION_FACTOR
        if manifest.precision == "int8"
        else AGREEMENT_TOLERANCE[manifest.precision]
    )
    last = _last_token_diff(folder, manifest, seed)
    chunked = _chunked_diff(folder, manifest, seed)
    compute = _compute_deviation(folder, manifest, seed)
    if not deviations:
        return VariantCheck(
            decode_vs_prefill_max_diff=worst,
            last_token_vs_prefill_max_diff=last,
            chunked_vs_prefill_max_diff=chunked,
            tolerance=tolerance,
            logits_scale=scale,
            allowed=agreement_bound(manifest.precision, scale, None, compute),
            vs_float_compute_max_abs_diff=compute,
        )
    dev = np.concatenate(deviations)
    return VariantCheck(
        decode_vs_prefill_max_diff=worst,
        last_token_vs_prefill_max_diff=last,
        chunked_vs_prefill_max_diff=chunked,
        tolerance=tolerance,
        logits_scale=scale,
        allowed=agreement_bound(manifest.precision, scale, float(dev.max()), compute),
        vs_float_compute_max_abs_diff=compute,
        vs_float_max_abs_diff=float(dev.max()),
        vs_float_mean_abs_diff=float(dev.mean()),
        decode_vs_float_max_abs_diff=decode_dev,
        vs_float_top1_agreement=agree / count,
    )


def _last_token_diff(folder: Path, manifest: GraphManifest, seed: int) -> float | None:
    """Max abs difference of the last-token prefill graph's logits from the full prefill
    graph's last row, at the check's prompt lengths (None: the variant has no such graph).
    int8 quantizes the head's input per tensor at run time, from one row here and from L
    rows in the full graph, so the two differ as a decode step does."""
    if "prefill_last" not in manifest.graphs:
        return None
    full = session(folder / manifest.graphs["prefill"].file)
    last = session(folder / manifest.graphs["prefill_last"].file)
    rng = np.random.default_rng(seed + 1)
    worst = 0.0
    for prompt in _lengths(manifest):
        ids = rng.integers(0, manifest.vocab_size, (1, prompt), dtype=np.int64)
        whole = full.run(["logits"], {"input_ids": ids})[0][:, -1:]
        worst = max(worst, float(np.abs(last.run(["logits"], {"input_ids": ids})[0] - whole).max()))
    return worst


CHECK_CHUNK = 4  # tokens per chunk: the check's prompts (11 tokens, and past every window)
# take three chunks or more


def _chunked_diff(folder: Path, manifest: GraphManifest, seed: int) -> float | None:
    """Max abs difference of the chunk graph's last logits, the prompt fed CHECK_CHUNK
    tokens at a time, from the full prefill graph's last row (None: no chunk graph)."""
    if CHUNK_GRAPH not in manifest.graphs:
        return None
    full = session(folder / manifest.graphs["prefill"].file)
    chunk = session(folder / manifest.graphs[CHUNK_GRAPH].file)
    spec = manifest.model_dump()
    rng = np.random.default_rng(seed + 3)
    worst = 0.0
    for prompt in _lengths(manifest):
        ids = rng.integers(0, manifest.vocab_size, (1, prompt), dtype=np.int64)
        whole = full.run(["logits"], {"input_ids": ids})[0][:, -1:]
        last = run_chunked(lambda feeds: chunk.run(None, feeds), spec, ids, CHECK_CHUNK)[0]
        worst = max(worst, float(np.abs(last - whole).max()))
    return worst


def _compute_deviation(folder: Path, manifest: GraphManifest, seed: int) -> float | None:
    """int4 with int8 compute: max abs difference of the prefill graph's logits from the same
    graph at accuracy level 0 (float compute on the same 4-bit weights), at the check's
    prompt lengths; None for other variants. The twin graph is written beside the graph (it
    reads the same weights file) and removed."""
    import onnx

    quantization = manifest.quantization
    if manifest.precision != "int4" or not (quantization and quantization.accuracy_level):
        return None
    graph = folder / manifest.graphs["prefill"].file
    twin_model = onnx.load(str(graph), load_external_data=False)
    for node in twin_model.graph.node:
        for attribute in node.attribute:
            if node.op_type == "MatMulNBits" and attribute.name == "accuracy_level":
                attribute.i = 0
    twin = graph.with_name(f"{graph.stem}.float-compute.onnx")
    onnx.save(twin_model, str(twin))
    try:
        computed, floats = session(graph), session(twin)
        rng = np.random.default_rng(seed + 2)
        worst = 0.0
        for prompt in _lengths(manifest):
            ids = {"input_ids": rng.integers(0, manifest.vocab_size, (1, prompt), dtype=np.int64)}
            a, b = computed.run(["logits"], ids)[0], floats.run(["logits"], ids)[0]
            worst = max(worst, float(np.abs(a - b).max()))
        return worst
    finally:
        twin.unlink()


def require_agreement(check: VariantCheck, variant: Variant) -> None:
    """Refuse a variant whose decode after prefill, last-token prefill graph or chunked
    prefill drifts from prefill past its bound: a phone would measure a graph that does not
    compute the model."""
    for name, diff in (
        ("the last-token prefill graph", check.last_token_vs_prefill_max_diff),
        ("prefill a chunk at a time", check.chunked_vs_prefill_max_diff),
    ):
        if diff is not None and diff > check.allowed:
            raise QuantizationError(
                f"{variant.tag}: {name} differs from the full prefill graph's last row by "
                f"{diff:.3g} (allowed {check.allowed:.3g})"
            )
    if check.decode_vs_prefill_max_diff <= check.allowed:
        return
    rule = f"{check.tolerance:g} of the logits' scale {check.logits_scale:.3g}"
    if variant.precision == "int8":
        rule = (
            f"{check.tolerance:g} x the int8 prefill graph's deviation from float, "
            f"{check.vs_float_max_abs_diff:.3g}"
        )
    elif check.vs_float_compute_max_abs_diff is not None:
        rule += (
            f", or {INT8_DEVIATION_FACTOR:g} x int8 compute's deviation from float compute, "
            f"{check.vs_float_compute_max_abs_diff:.3g}"
        )
    raise QuantizationError(
        f"{variant.tag}: decode after prefill differs from prefill of the whole sequence by "
        f"{check.decode_vs_prefill_max_diff:.3g} (allowed {check.allowed:.3g}: {rule}); "
        f"decode after prefill deviates from float by up to "
        f"{check.decode_vs_float_max_abs_diff:.3g}"
    )
