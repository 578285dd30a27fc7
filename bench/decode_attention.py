"""How close one decode step's attention comes to one read of its cache, per way onnxruntime
can run it on this CPU (read with no target: why bench.inference's decode ÷ bound stays above 3).

bench.inference's int4 decode steps stay 2-8x above their bandwidth bound (the weights and the
cache read once) at long contexts, where the cache is most of the bytes. This times the
attention alone: `--layers` GQA layers of one decode step (one new token; `--heads` query
heads over `--kv-heads` KV heads of `--head-dim`) in one ONNX graph and nothing else, at each
context length, every kernel in the same process, interleaved repeat by repeat, against one
read of the cache (every layer's K and V, float32) at the copy bandwidth measured in the run:

- `concat`: Tailor's plain decode graph's attention (graph revision 6 on): present =
  Concat(past, new), then the grouped MatMul -> Softmax -> MatMul; fresh arrays in, present out.
- `gqa`: `com.microsoft::GroupQueryAttention` as Tailor's fused graphs run it: past in,
  present out in a buffer of its own.
- `gqa-shared`: the same operator with past and present bound to one buffer that holds the
  context and the step (io binding), as onnxruntime-genai runs it: only the new token is written.
- `scatter`: ONNX `TensorScatter` (opset 24) writes the new token into a cache buffer bound as
  its input and its output (in place), then the grouped MatMul -> Softmax -> MatMul over the
  buffer with an additive mask beyond the tokens held.
- `attention24`: `TensorScatter` as above, then ONNX `Attention` (opset 24) over the buffer
  with `nonpad_kv_seqlen`.

Before any timing, every kernel's output (and the cache it leaves) is checked against numpy
attention of the same inputs (`check`), so a kernel timed here computes the step.

    python -m bench.decode_attention
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from bench.inference import memory_bandwidth_bytes_per_s
from workers.export.fused_attention import PROBE_TOLERANCE

RESULTS = Path(__file__).parent / "results"
KERNELS = ["concat", "gqa", "gqa-shared", "scatter", "attention24"]
FLOAT = TensorProto.FLOAT


@dataclass(frozen=True)
class Shape:
    layers: int
    heads: int
    kv_heads: int
    head_dim: int

    @property
    def rows(self) -> int:
        return self.heads // self.kv_heads

    def cache_bytes(self, held: int) -> int:
        """Every layer's K and V for `held` tokens, float32."""
        return self.layers * 2 * self.kv_heads * held * self.head_dim * 4


def _info(name: str, dtype: int, shape) -> helper.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _grouped_attention(nodes: list, keys: str, values: str, out: str, s: Shape, bias: str | None):
    """q (1, G, rows, hd) over keys/values (1, G, n, hd): Tailor's grouped decode attention."""
    nodes += [
        helper.make_node("Transpose", [keys], [f"{out}_kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", f"{out}_kt"], [f"{out}_s"]),
        helper.make_node("Mul", [f"{out}_s", "scale"], [f"{out}_ss"]),
    ]
    scores = f"{out}_ss"
    if bias:
        nodes.append(helper.make_node("Add", [scores, bias], [f"{out}_sb"]))
        scores = f"{out}_sb"
    nodes += [
        helper.make_node("Softmax", [scores], [f"{out}_p"], axis=-1),
        helper.make_node("MatMul", [f"{out}_p", values], [out]),
    ]


def _step_inputs(kernel: str, s: Shape) -> list:
    """The inputs every layer shares: the query and the new token's K, V in the kernel's
    layout, and what the kernel needs to place and mask them."""
    g, hd = s.kv_heads, s.head_dim
    if kernel in ("concat", "scatter"):
        inputs = [_info("q", FLOAT, [1, g, s.rows, hd])]
    elif kernel == "attention24":
        inputs = [_info("q", FLOAT, [1, s.heads, 1, hd])]
    else:
        inputs = [_info("q", FLOAT, [1, 1, s.heads * hd])]
    if kernel.startswith("gqa"):
        inputs += [_info(n, FLOAT, [1, 1, g * hd]) for n in ("k", "v")]
        inputs += [
            _info("seqlens_k", TensorProto.INT32, [1]),
            _info("total", TensorProto.INT32, []),
        ]
    else:
        inputs += [_info(n, FLOAT, [1, g, 1, hd]) for n in ("k", "v")]
    if kernel == "scatter":
        inputs.append(_info("bias", FLOAT, [1, 1, 1, "n"]))
    if kernel in ("scatter", "attention24"):
        inputs.append(_info("position", TensorProto.INT64, [1]))
    if kernel == "attention24":
        inputs.append(_info("held", TensorProto.INT64, [1]))
    return inputs


def _layer(kernel: str, i: int, s: Shape, nodes: list) -> None:
    """Layer `i`'s attention nodes: past_k/v{i} in, y{i} and present_k/v{i} out."""
    past, present, y = [f"past_{c}{i}" for c in "kv"], [f"present_{c}{i}" for c in "kv"], f"y{i}"
    if kernel.startswith("gqa"):
        attrs = dict(domain="com.microsoft", num_heads=s.heads, kv_num_heads=s.kv_heads)
        ins = ["q", "k", "v", *past, "seqlens_k", "total"]
        nodes.append(helper.make_node("GroupQueryAttention", ins, [y, *present], **attrs))
        return
    for p, n, o in zip(past, "kv", present):
        if kernel == "concat":
            nodes.append(helper.make_node("Concat", [p, n], [o], axis=2))
        else:
            nodes.append(helper.make_node("TensorScatter", [p, n, "position"], [o], axis=2))
    if kernel == "attention24":
        attrs = dict(q_num_heads=s.heads, kv_num_heads=s.kv_heads)
        ins = ["q", *present, "", "", "", "held"]
        nodes.append(helper.make_node("Attention", ins, [y], **attrs))
    else:
        _grouped_attention(
            nodes, present[0], present[1], y, s, "bias" if kernel == "scatter" else None
        )


def graph(kernel: str, s: Shape) -> bytes:
    """The kernel's `s.layers` attention layers of one decode step as one ONNX model."""
    inputs, nodes, outputs = _step_inputs(kernel, s), [], []
    for i in range(s.layers):
        inputs += [_info(f"past_{c}{i}", FLOAT, [1, s.kv_heads, "n", s.head_dim]) for c in "kv"]
        _layer(kernel, i, s, nodes)
        outputs += [_info(n, FLOAT, None) for n in (f"y{i}", f"present_k{i}", f"present_v{i}")]
    inits = []
    if kernel in ("concat", "scatter"):
        inits.append(helper.make_tensor("scale", FLOAT, [], [s.head_dim**-0.5]))
    opsets = [helper.make_opsetid("", 24)]
    if kernel.startswith("gqa"):
        opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(
        helper.make_graph(nodes, kernel, inputs, outputs, inits),
        opset_imports=opsets,
        ir_version=11,
    )
    return model.SerializeToString()


def session(kernel: str, s: Shape) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(graph(kernel, s), options, providers=["CPUExecutionProvider"])


@dataclass
class Step:
    """One decode step's inputs at `past` tokens held: the query, the new token's K and V and
    every layer's cache (the first `past` positions of a buffer one longer)."""

    q: np.ndarray  # (1, H, 1, hd)
    k: np.ndarray  # (1, G, 1, hd)
    v: np.ndarray
    caches: list[np.ndarray]  # per layer K, V: (1, G, past + 1, hd), last position unset

    @property
    def past(self) -> int:
        return self.caches[0].shape[2] - 1

    def expected(self, layer: int) -> np.ndarray:
        """numpy attention of the step for `layer`: (1, H, 1, hd)."""
        keys, values = (c[:, :, :-1] for c in self.caches[2 * layer : 2 * layer + 2])
        keys = np.concatenate([keys, self.k], axis=2)
        values = np.concatenate([values, self.v], axis=2)
        g, hd = self.k.shape[1], self.k.shape[3]
        q = self.q.reshape(1, g, -1, hd).astype(np.float64)
        scores = q @ keys.astype(np.float64).transpose(0, 1, 3, 2) * hd**-0.5
        p = np.exp(scores - scores.max(-1, keepdims=True))
        y = (p / p.sum(-1, keepdims=True)) @ values
        return y.reshape(self.q.shape)


def step_inputs(s: Shape, past: int, seed: int = 0) -> Step:
    rng = np.random.default_rng(seed)

    def randn(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    caches = []
    for _ in range(2 * s.layers):
        cache = randn(1, s.kv_heads, past + 1, s.head_dim)
        cache[:, :, -1] = np.nan  # the step writes it (in-place kernels) or it is unused
        caches.append(cache)
    return Step(
        randn(1, s.heads, 1, s.head_dim),
        randn(1, s.kv_heads, 1, s.head_dim),
        randn(1, s.kv_heads, 1, s.head_dim),
        caches,
    )


def runner(kernel: str, sess: ort.InferenceSession, s: Shape, step: Step):
    """A callable that runs one step as the kernel's runtime would, and one that returns
    (per layer output (1, H, 1, hd), per layer K/V holding past + 1 tokens) after it ran."""
    g, hd, past = s.kv_heads, s.head_dim, step.past
    names = [f"past_{c}{i}" for i in range(s.layers) for c in "kv"]
    outs = [f"y{i}" for i in range(s.layers)]
    q = step.q.reshape(1, g, s.rows, hd) if kernel in ("concat", "scatter") else step.q
    if kernel.startswith("gqa"):
        q = step.q.reshape(1, 1, s.heads * hd)
        k, v = step.k.reshape(1, 1, g * hd), step.v.reshape(1, 1, g * hd)
        extra = {"seqlens_k": np.array([past], np.int32), "total": np.array(past + 1, np.int32)}
    else:
        k, v = step.k, step.v
        extra = {"position": np.array([past], np.int64)} if kernel != "concat" else {}
    if kernel == "scatter":
        extra["bias"] = np.zeros((1, 1, 1, past + 1), np.float32)  # every slot held after the step
    if kernel == "attention24":
        extra["held"] = np.array([past + 1], np.int64)
    if kernel in ("concat", "gqa"):  # fresh arrays of `past` tokens in, present out
        feeds = {"q": q, "k": k, "v": v, **extra}
        feeds.update({n: np.ascontiguousarray(c[:, :, :past]) for n, c in zip(names, step.caches)})
        last: list = []

        def run():
            last[:] = sess.run(None, feeds)

        def result():
            return [last[3 * i] for i in range(s.layers)], [
                last[3 * i + j] for i in range(s.layers) for j in (1, 2)
            ]

        return run, result
    buffers = [ort.OrtValue.ortvalue_from_numpy(c.copy()) for c in step.caches]
    binding = sess.io_binding()
    for name, value in {"q": q, "k": k, "v": v, **extra}.items():
        binding.bind_cpu_input(name, np.ascontiguousarray(value))
    for name in outs:  # bound first: copy_outputs_to_cpu lists outputs in binding order
        binding.bind_output(name)
    for i, (name, buffer) in enumerate(zip(names, buffers)):
        binding.bind_ortvalue_input(name, buffer)
        binding.bind_ortvalue_output(f"present_{'kv'[i % 2]}{i // 2}", buffer)

    def run():
        sess.run_with_iobinding(binding)

    def result():
        return binding.copy_outputs_to_cpu()[: s.layers], [b.numpy() for b in buffers]

    return run, result


def check(kernel: str, s: Shape, past: int) -> float:
    """The kernel's worst absolute difference from numpy attention over one step (outputs, and
    the cache it leaves holding past + 1 tokens); raises when above PROBE_TOLERANCE."""
    step = step_inputs(s, past, seed=past)
    run, result = runner(kernel, session(kernel, s), s, step)
    run()
    ys, caches = result()
    worst = 0.0
    for i in range(s.layers):
        worst = max(worst, float(np.abs(ys[i].reshape(step.q.shape) - step.expected(i)).max()))
        for j, new in ((0, step.k), (1, step.v)):
            held = np.concatenate([step.caches[2 * i + j][:, :, :-1], new], axis=2)
            worst = max(worst, float(np.abs(caches[2 * i + j] - held).max()))
    if not worst <= PROBE_TOLERANCE:
        raise RuntimeError(f"{kernel} at {past} tokens differs from numpy attention by {worst:.1e}")
    return worst


def time_kernels(s: Shape, past: int, repeats: int, kernels: list[str]) -> dict[str, list[float]]:
    """Per kernel, `repeats` timings (ms) of one step, kernels interleaved repeat by repeat."""
    step = step_inputs(s, past)
    runs: dict[str, Callable[[], None]] = {}
    for kernel in kernels:
        runs[kernel] = runner(kernel, session(kernel, s), s, step)[0]
        for _ in range(3):  # warm-up
            runs[kernel]()
    samples: dict[str, list[float]] = {k: [] for k in kernels}
    for _ in range(repeats):
        for kernel, run in runs.items():
            start = time.perf_counter()
            run()
            samples[kernel].append((time.perf_counter() - start) * 1e3)
    return samples


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lengths",
        type=_positive,
        nargs="+",
        default=[128, 512, 1024, 2048, 4096],
        help="tokens held before the step",
    )
    parser.add_argument("--layers", type=_positive, default=12)
    parser.add_argument("--heads", type=_positive, default=8)
    parser.add_argument("--kv-heads", type=_positive, default=2)
    parser.add_argument("--head-dim", type=_positive, default=32)
    parser.add_argument("--repeats", type=_positive, default=30)
    parser.add_argument("--kernels", nargs="+", choices=KERNELS, default=KERNELS)
    parser.add_argument("--out", type=Path, default=RESULTS / "decode_attention.json")
    args = parser.parse_args(argv)
    if args.heads % args.kv_heads:
        parser.error(f"--heads ({args.heads}) must be a multiple of --kv-heads ({args.kv_heads})")
    if args.head_dim % 8:
        parser.error(
            f"--head-dim must be a multiple of 8 (GroupQueryAttention's CPU kernel), "
            f"not {args.head_dim}"
        )
    return args


def run(args: argparse.Namespace) -> dict:
    s = Shape(args.layers, args.heads, args.kv_heads, args.head_dim)
    checked = {k: max(check(k, s, p) for p in (1, 7)) for k in args.kernels}
    bandwidth = memory_bandwidth_bytes_per_s()
    rows: dict[str, dict] = {}
    for past in args.lengths:
        bound_ms = s.cache_bytes(past + 1) / bandwidth * 1e3
        samples = time_kernels(s, past, args.repeats, args.kernels)
        rows[str(past)] = {"cache_read_once_ms": bound_ms}
        for kernel, times in samples.items():
            median = statistics.median(times)
            rows[str(past)][kernel] = {
                "median_ms": median,
                "over_read_once": median / bound_ms,
                "samples_ms": times,
            }
        line = "  ".join(
            f"{k} {rows[str(past)][k]['median_ms']:.3f} ms "
            f"({rows[str(past)][k]['over_read_once']:.1f}x)"
            for k in args.kernels
        )
        print(f"{past:>5} held  read once {bound_ms:.3f} ms  {line}", flush=True)
    return {
        "benchmark": "decode_attention",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "onnxruntime": ort.__version__,
        "memory_bandwidth_gb_s": bandwidth / 1e9,
        "checked_worst_abs_difference": checked,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
