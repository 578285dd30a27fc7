"""Running an exported variant the way a phone generates text, to check it against itself and
against the float graphs: decode after prefill, perplexity token by token through the decode
graph, greedy continuations.

A phone runs the prefill graph once over the prompt and then the decode graph one token at a
time, feeding each step's cache outputs back as the next step's inputs (`cache_pairs` in the
manifest). What users care about is that this loop scores and generates what the prefill
graph does: `decode_perplexity` against `window_perplexity` (the same tokens through prefill),
and `greedy_continuation` of two variants side by side. onnxruntime and numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.manifest import GraphManifest
from core.precision import Variant


@dataclass
class GraphPair:
    """A variant's prefill and decode sessions, with the manifest that says how to feed them."""

    manifest: GraphManifest
    prefill: object  # onnxruntime.InferenceSession
    decode: object

    @property
    def cache_inputs(self) -> list[str]:
        """The decode graph's cache inputs, in the order the prefill/decode outputs them."""
        return [t.name for t in self.manifest.graphs["decode"].inputs if t.role == "cache"]

    def step(self, token: int, position: int, states: list[np.ndarray]):
        """One decode step: (logits of shape (vocab,), the next states)."""
        feed = {
            "input_ids": np.array([[token]], dtype=np.int64),
            "position": np.array([position], dtype=np.int64),
        }
        feed.update(zip(self.cache_inputs, states))
        out = self.decode.run(None, feed)
        return out[0][0, -1], out[1:]


def session(path: str | Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_pair(folder: str | Path, manifest: GraphManifest | Variant) -> GraphPair:
    """The sessions of a variant in an export folder (by its manifest or by its variant)."""
    folder = Path(folder)
    if isinstance(manifest, Variant):
        manifest = GraphManifest.model_validate_json(
            (folder / manifest.file("manifest")).read_text()
        )
    return GraphPair(
        manifest,
        session(folder / manifest.graphs["prefill"].file),
        session(folder / manifest.graphs["decode"].file),
    )


def decode_after_prefill(pair: GraphPair, ids: np.ndarray, prompt: int) -> np.ndarray:
    """Logits (1, len - prompt + 1, vocab) for positions prompt-1 .. len-1 of `ids` (1, len):
    the prompt's last through prefill, then one decode step per further token."""
    out = pair.prefill.run(None, {"input_ids": ids[:, :prompt]})
    logits, states = [out[0][0, -1]], out[1:]
    for t in range(prompt, ids.shape[1]):
        step, states = pair.step(int(ids[0, t]), t, states)
        logits.append(step)
    return np.stack(logits)[None]


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Cross-entropy of each of n targets under (n, vocab) logits, in float64."""
    logits = logits.astype(np.float64)
    top = logits.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(axis=-1)) + top[:, 0]
    return log_z - logits[np.arange(len(targets)), targets]


def _perplexity(logits: np.ndarray, targets: np.ndarray) -> float:
    """exp(mean cross-entropy) of (n, vocab) logits against n targets."""
    return math.exp(float(token_nll(logits, targets).mean()))


def decode_perplexity(pair: GraphPair, tokens: np.ndarray) -> float:
    """Perplexity of tokens[1:] given what precedes each, computed as a phone generates: the
    first token through prefill, every later one through a decode step."""
    ids = np.asarray(tokens, dtype=np.int64)[None]
    logits = decode_after_prefill(pair, ids[:, :-1], 1)[0]
    return _perplexity(logits, ids[0, 1:])


def window_perplexity(pair: GraphPair, tokens: np.ndarray) -> float:
    """The same perplexity as `decode_perplexity`, from one prefill over the window."""
    ids = np.asarray(tokens, dtype=np.int64)[None]
    logits = pair.prefill.run(None, {"input_ids": ids[:, :-1]})[0][0]
    return _perplexity(logits, ids[0, 1:])


@dataclass
class Continuation:
    tokens: list[int]
    margins: list[float]  # top-1 minus top-2 logit at each generated token


def greedy_continuation(pair: GraphPair, prompt: np.ndarray, length: int) -> Continuation:
    """`length` tokens generated greedily after `prompt` (prefill, then decode steps)."""
    ids = np.asarray(prompt, dtype=np.int64)[None]
    out = pair.prefill.run(None, {"input_ids": ids})
    logits, states = out[0][0, -1], out[1:]
    tokens, margins = [], []
    for position in range(ids.shape[1], ids.shape[1] + length):
        top2 = np.sort(logits)[-2:]
        tokens.append(int(logits.argmax()))
        margins.append(float(top2[1] - top2[0]))
        if len(tokens) < length:
            logits, states = pair.step(tokens[-1], position, states)
    return Continuation(tokens, margins)


def first_divergence(reference: Continuation, other: Continuation) -> int | None:
    """Index of the first token where two continuations differ (None if they never do)."""
    return next((i for i, (a, b) in enumerate(zip(reference.tokens, other.tokens)) if a != b), None)
