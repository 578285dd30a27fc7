"""Per-layer cost terms of a genome: what the LIV latency model (`latency_model.py`) sums.

nn-Meter predicts a network's latency as a sum of per-kernel predictions; a LIV network's
kernels are its layers, so every executed layer contributes, per operator class, the work
it does and the bytes it moves at the measured length and precision:

- `flops`: 2 x the multiply-accumulates of the dense projections, the catalog's exact
  `macs(genes, D, 0)` less the depthwise taps; prefill does them for each of the L tokens;
- `conv`: 2 x the depthwise convolution taps (short convs, Hyena's inner filter of
  `filter_length`, the modal readout), apart because a CPU runs a depthwise convolution at a
  far lower rate per FLOP than a GEMM (measured here: five Hyena-Y layers with long filters
  took 5x the time of a same-width model with short ones);
- `mix`: 2 x the context-dependent ones: at decode the catalog's `macs(L) - macs(0)`
  (attention's scores and weighted sum), at prefill what the exported graph really computes,
  which is not the sum of L decode steps: plain attention and GLA's parallel form build a
  full L x L matrix, the modal filter a full-length convolution (`PREFILL_MIX`);
- `bytes`: weights read (the slot's parameters at the precision's bytes per weight: the
  MatMul weights dominate, the few conv and norm weights are counted alike) plus
  activations (prefill) or the decode state read and written back (decode, float32);
- `count`: how many times the class executes (per-op dispatch overhead of the runtime).

The embedding and LM head form a `head` group (one position's logits: prefill is profiled
on the last-token graph, as phones run it) and a `runtime` constant. Peak memory gets byte terms
instead (`peak_features`), each fitted with its own scale: the V x d table, an untied LM head
apart, the backbone's weights, the logits, the largest layer's activations and the cache at
the profiled lengths; and per executed layer, by class, a count, its prefill intermediates
(`held`) and, for a windowed cache, the K/V of every prompt token (`uncapped`): onnxruntime
holds memory per layer beyond its weights (kernels, buffers its planner does not share).
Refitted on the measured peaks of four phone-scale runs (random 64/32 splits), these terms
took held-out predictions within +-5 % from 86-98 % to 100 % (bench/README, Latency model:
chosen on those data; the eleventh run tests them). Torch-free: only `core`'s catalog and
costs are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core import catalog, costs
from core.arch import ArchPlan, plan
from core.genome import Genome
from core.metrics import Metric, parse_metric

LATENCY_NAMES = ("prefill_ms", "decode_ms")
PEAK_NAME = "peak_mem_mb"
KINDS = ("flops", "conv", "mix", "bytes", "count")
HEAD_KINDS = ("flops", "bytes")
PEAK_TERMS = ("embedding", "lm_head", "weights", "logits", "activations", "cache")
# Per executed layer, by operator class: one for the layer ("count"), its prefill
# intermediates ("held"), and for a layer whose cache keeps a window of tokens the per-token
# state of every prompt token ("uncapped": its prefill computes K/V for all L tokens, then
# copies the window out as its cache): what the runtime holds per layer beyond its weights.
PEAK_LAYER_KINDS = ("count", "held", "uncapped")
STATE_BYTES = 4  # the decode state and activations are float32 in every variant
# Bytes read per weight: int4 is MatMulNBits' 4 bits plus one float32 scale per 32 weights.
WEIGHT_BYTES = {"float32": 4.0, "int8": 1.0, "int4": 0.5 + 4 / 32}


@dataclass(frozen=True)
class LatencyTarget:
    """One predicted quantity: a hardware metric on one device class at one precision."""

    name: str
    length: int | None
    device: str
    precision: str

    @classmethod
    def parse(cls, metric: str, device_class: str | None = None) -> "LatencyTarget":
        """`decode_ms@128[host:int8]`, or `decode_ms@128` / `decode_ms@128[:int8]` with the
        device class given apart; ValueError names what is wrong."""
        text = metric.strip()
        if device_class is not None:
            base, _, bracket = text.partition("[")
            precision = bracket.rstrip("]").partition(":")[2]
            text = f"{base}[{device_class}{':' + precision if precision else ''}]"
        parsed = parse_metric(text)
        if parsed.name not in (*LATENCY_NAMES, PEAK_NAME) or parsed.device is None:
            raise ValueError(
                f"{metric!r}: the latency model predicts prefill_ms@L, decode_ms@L and "
                "peak_mem_mb on one device class, e.g. decode_ms@128[SM-S928B:int8]"
            )
        return cls(parsed.name, parsed.length, parsed.device, parsed.precision)

    @property
    def platform(self) -> tuple[str, str]:
        """(device class, precision): what transfer moves between."""
        return self.device, self.precision

    @property
    def quantity(self) -> tuple[str, int | None]:
        """(metric name, length): what stays the same across platforms."""
        return self.name, self.length

    def on(self, device: str, precision: str) -> "LatencyTarget":
        return LatencyTarget(self.name, self.length, device, precision)

    def __str__(self) -> str:
        return str(Metric(self.name, self.length, self.device, self.precision))


@dataclass(frozen=True)
class CostColumn:
    group: str  # an operator class, "head", "runtime", or a peak-memory term
    kind: str  # flops | mix | bytes | count | const, or the peak term's own name


def columns(target: LatencyTarget) -> list[CostColumn]:
    """The layout of `features` for a target (the same for every genome)."""
    if target.name == PEAK_NAME:
        cols = [CostColumn("runtime", "const")] + [CostColumn(t, t) for t in PEAK_TERMS]
        return cols + [
            CostColumn(spec.name, kind) for spec in catalog.ordered() for kind in PEAK_LAYER_KINDS
        ]
    cols = [CostColumn(spec.name, kind) for spec in catalog.ordered() for kind in KINDS]
    cols += [CostColumn("head", kind) for kind in HEAD_KINDS]
    return cols + [CostColumn("runtime", "const")]


def depthwise_taps(op: str, genes: dict[str, int], d: int) -> int:
    """Depthwise-convolution MACs per token inside the catalog's `macs(genes, D, 0)` (the
    catalog's own formulas, split out; 0 for classes with none)."""
    short = 3 * d * genes["short_length"] if "short_length" in genes else 0
    if op in ("hyena", "hyena_y"):
        return short + d * genes["filter_length"]
    if op == "hyena_modal":
        return short + d * genes["modes"]
    return short


def _prefill_mix(op: str, genes: dict[str, int], d: int, length: int) -> float:
    """Context-dependent MACs of one prefill over `length` tokens, as the export computes."""
    square = float(length) * length
    if op == "attention":  # scores and weighted sum over the whole L x L (mask, not skip)
        return 2 * square * d
    if op == "gla":  # parallel form: q k^T (qk wide) and scores v (d wide), L x L each
        return square * (genes["heads"] * genes["key_dim"] + d)
    if op == "hyena_modal":  # the implicit filter as a full-length depthwise convolution
        return square * d
    spec = catalog.REGISTRY[op]
    if spec.macs(genes, d, length) == spec.macs(genes, d, 0):
        return 0.0  # convolutions and channel mixers: all of it is in `flops`
    # An operator registered later: the sum of its decode steps (its causal work).
    base = spec.macs(genes, d, 0)
    return float(sum(spec.macs(genes, d, t) - base for t in range(length)))


def _layer_terms(arch: ArchPlan, slot_index: int, target: LatencyTarget) -> dict[str, float]:
    slot = arch.slots[slot_index]
    spec, d, length = catalog.REGISTRY[slot.op], arch.width, target.length or 0
    base = spec.macs(slot.genes, d, 0)
    taps = depthwise_taps(slot.op, slot.genes, d)
    weights = spec.params(slot.genes, d).total * WEIGHT_BYTES[target.precision]
    if target.name == "prefill_ms":
        outputs = base / d  # output elements per token of its matrix products
        mix = _prefill_mix(slot.op, slot.genes, d, length)
        return {
            "flops": 2.0 * (base - taps) * length,
            "conv": 2.0 * taps * length,
            "mix": 2.0 * mix,
            "bytes": weights + STATE_BYTES * length * (outputs + d),
            "count": 1.0,
        }
    state = spec.cache(slot.genes, d).elements(length) * STATE_BYTES * 2  # read, written back
    return {
        "flops": 2.0 * (base - taps),
        "conv": 2.0 * taps,
        "mix": 2.0 * (spec.macs(slot.genes, d, length) - base),
        "bytes": weights + state,
        "count": 1.0,
    }


def _head_terms(arch: ArchPlan, target: LatencyTarget) -> dict[str, float]:
    """The LM head and the embedding gather. Prefill is profiled on the last-token graph
    (the manifest's `profiled_prefill`, as phones generate), so the head runs on one
    position in both phases; the prompt's rows are still gathered from the table."""
    tokens = target.length if target.name == "prefill_ms" else 1
    lm_head = arch.width * arch.vocab_size
    return {
        "flops": 2.0 * lm_head,
        "bytes": lm_head * WEIGHT_BYTES[target.precision]
        + STATE_BYTES * (arch.vocab_size + tokens * arch.width),  # one row of logits out
    }


def latency_features(genome: Genome, target: LatencyTarget) -> np.ndarray:
    """Per (class, kind): the sum over every executed layer; then head and runtime."""
    arch = plan(genome)
    index = {(c.group, c.kind): i for i, c in enumerate(columns(target))}
    row = np.zeros(len(index))
    for slot_index in arch.executions:
        op = arch.slots[slot_index].op
        for kind, value in _layer_terms(arch, slot_index, target).items():
            row[index[(op, kind)]] += value
    for kind, value in _head_terms(arch, target).items():
        row[index[("head", kind)]] = value
    row[index[("runtime", "const")]] = 1.0
    return row


def _largest_activation(arch: ArchPlan, length: int) -> float:
    """Elements of the largest intermediate any one layer holds in a prefill of `length`:
    the runtime reuses most of a layer's buffers for the next (what it does not, the per-layer
    `held` terms of `peak_features` leave to the fit)."""
    largest = 0.0
    for slot in arch.slots:
        spec = catalog.REGISTRY[slot.op]
        per_token = spec.macs(slot.genes, arch.width, 0) / arch.width
        square = 0.0
        if slot.op in ("attention", "gla"):  # the L x L score matrix of every head
            square = float(length) * length * slot.genes["heads"]
        largest = max(largest, length * per_token + square)
    return largest


def peak_features(genome: Genome, target: LatencyTarget, lengths: tuple[int, int]) -> np.ndarray:
    """Byte terms of the largest profiled case, then the per-layer terms by class: `lengths` =
    (longest prefill, longest decode context) of the profiling spec (each case runs in its
    own process with its own graph)."""
    arch = plan(genome)
    prefill, decode = lengths
    per_weight = WEIGHT_BYTES[target.precision]
    # The table at the variant's precision (int8 / int4 variants quantize it, workers/export/
    # embedding_quant.py); its own fitted scale covers how the runtime holds it (measured at
    # int8: about 2.6 bytes per entry whether or not the head is tied, an untied head's own
    # term near zero: the runtime keeps a gather copy and a packed MatMul copy either way).
    table = arch.vocab_size * arch.width
    head = 0 if arch.tie_embeddings else table
    terms = {
        "embedding": table * per_weight,
        "lm_head": head * per_weight,
        "weights": (costs.params(arch) - table - head) * per_weight,  # the backbone's
        "logits": float(arch.vocab_size) * STATE_BYTES,  # the last-token graph: one row
        "activations": _largest_activation(arch, prefill) * STATE_BYTES,
        "cache": costs.cache_elements(arch, decode) * STATE_BYTES * 2,
    }
    index = {(c.group, c.kind): i for i, c in enumerate(columns(target))}
    row = np.zeros(len(index))
    row[index[("runtime", "const")]] = 1.0
    for term in PEAK_TERMS:
        row[index[(term, term)]] = terms[term] / 2**20
    for slot_index in arch.executions:
        slot = arch.slots[slot_index]
        spec = catalog.REGISTRY[slot.op]
        per_token = spec.macs(slot.genes, arch.width, 0) / arch.width
        shape = spec.cache(slot.genes, arch.width)
        layer = {
            "count": 1.0,
            "held": prefill * per_token * STATE_BYTES / 2**20,
            "uncapped": prefill * shape.per_token * STATE_BYTES / 2**20 if shape.window else 0.0,
        }
        for kind in PEAK_LAYER_KINDS:
            row[index[(slot.op, kind)]] += layer[kind]
    return row


def features(
    genomes: list[Genome], target: LatencyTarget, peak_lengths: tuple[int, int] = (512, 512)
) -> np.ndarray:
    """The cost matrix (genomes x `columns(target)`) the additive model is linear in."""
    if target.name == PEAK_NAME:
        rows = [peak_features(g, target, peak_lengths) for g in genomes]
    else:
        rows = [latency_features(g, target) for g in genomes]
    return np.stack(rows) if rows else np.zeros((0, len(columns(target))))
