"""The six MAD tasks as seeded numpy generators.

Each task returns (inputs, targets) int64 arrays of shape (N, L); a target of -100 means
"not scored". Accuracy = the fraction of scored positions where the model's argmax equals
the target. Every generator takes its own `np.random.Generator`, so workers running in
parallel never share random state. Token layout per task is documented on each function;
all tasks share one vocabulary of `VOCAB` ids so a model is built once per task.

Reduced grid (vs MAD's vocabularies of 16-64 and sequences of 128-1024): 8 keys and 8 values,
sequences of 13-72 tokens, 2,000 training sequences seen for 10 epochs and 200 fresh test
sequences — the easy end of MAD's sweep, sized so six tasks take about a minute per
architecture on one core at width 64. At this budget in-context recall is far from solved
(scores of 0.2-0.6), so the proxy ranks how fast an architecture learns to recall.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

IGNORE = -100
N_SYMBOLS = 8  # keys 1..8, values 9..16
KEY0, VALUE0 = 1, 1 + N_SYMBOLS
NOISE0 = VALUE0 + N_SYMBOLS  # 17..24: noise tokens
BLANK, COPY, COMPRESS = NOISE0 + 8, NOISE0 + 9, NOISE0 + 10
MEM_KEYS = 64  # memorization: keys 44..107, values 108..171
MEM_KEY0 = COMPRESS + 1
MEM_VALUE0 = MEM_KEY0 + MEM_KEYS
VOCAB = MEM_VALUE0 + MEM_KEYS  # 0 is padding


def in_context_recall(rng: np.random.Generator, n: int, pairs: int = 12):
    """k1 v1 k2 v2 ... with a fresh key->value map per sequence; every value whose key was
    seen earlier in the sequence is scored (the model must look it up in context)."""
    x = np.zeros((n, 2 * pairs), dtype=np.int64)
    y = np.full_like(x, IGNORE)
    for i in range(n):
        mapping = rng.permutation(N_SYMBOLS)
        keys = rng.integers(0, N_SYMBOLS, pairs)
        seen: set[int] = set()
        for p, k in enumerate(keys):
            x[i, 2 * p], x[i, 2 * p + 1] = KEY0 + k, VALUE0 + mapping[k]
            if k in seen:
                y[i, 2 * p] = VALUE0 + mapping[k]  # predict the value from the key position
            seen.add(int(k))
    return x, y


def fuzzy_in_context_recall(rng: np.random.Generator, n: int, pairs: int = 8):
    """Keys and values are spans of 1-2 tokens; after a repeated key span, each token of its
    value span is scored."""
    length = 8 * pairs
    x = np.zeros((n, length), dtype=np.int64)
    y = np.full_like(x, IGNORE)
    for i in range(n):
        n_keys = 6
        key_spans = [
            tuple(KEY0 + rng.integers(0, N_SYMBOLS, rng.integers(1, 3))) for _ in range(n_keys)
        ]
        value_spans = [
            tuple(VALUE0 + rng.integers(0, N_SYMBOLS, rng.integers(1, 3))) for _ in range(n_keys)
        ]
        pos, seen = 0, set()
        while True:
            k = int(rng.integers(0, n_keys))
            span = key_spans[k] + value_spans[k]
            if pos + len(span) > length:
                break
            x[i, pos : pos + len(span)] = span
            if k in seen:
                start = pos + len(key_spans[k]) - 1  # predict value tokens from the token before
                y[i, start : start + len(value_spans[k])] = value_spans[k]
            seen.add(k)
            pos += len(span)
    return x, y


def noisy_in_context_recall(rng: np.random.Generator, n: int, pairs: int = 12, noise: float = 0.3):
    """In-context recall with noise tokens inserted between pairs (about `noise` of all
    tokens); only values of repeated keys are scored."""
    length = 2 * pairs + int(2 * pairs * noise / (1 - noise)) + 1
    x = np.zeros((n, length), dtype=np.int64)
    y = np.full_like(x, IGNORE)
    for i in range(n):
        mapping = rng.permutation(N_SYMBOLS)
        pos, seen = 0, set()
        for _ in range(pairs):
            while pos < length - 2 and rng.random() < noise:
                x[i, pos] = NOISE0 + rng.integers(0, 8)
                pos += 1
            if pos > length - 2:
                break
            k = int(rng.integers(0, N_SYMBOLS))
            x[i, pos], x[i, pos + 1] = KEY0 + k, VALUE0 + mapping[k]
            if k in seen:
                y[i, pos] = VALUE0 + mapping[k]
            seen.add(k)
            pos += 2
    return x, y


def selective_copying(rng: np.random.Generator, n: int, length: int = 48, tokens: int = 6):
    """`tokens` data tokens scattered among blanks, then `tokens` COPY markers: at each
    marker the model must emit the data tokens in their order of appearance."""
    x = np.full((n, length + tokens), BLANK, dtype=np.int64)
    y = np.full_like(x, IGNORE)
    for i in range(n):
        where = np.sort(rng.choice(length, tokens, replace=False))
        data = KEY0 + rng.integers(0, N_SYMBOLS, tokens)
        x[i, where] = data
        x[i, length:] = COPY
        y[i, length - 1 : length + tokens - 1] = data  # position t predicts token t+1
    return x, y


def compression(rng: np.random.Generator, n: int, length: int = 12):
    """Random tokens then a COMPRESS token; the targets are the tokens themselves, decoded
    from the hidden state at the COMPRESS position alone (see runner.CompressionHead)."""
    x = np.zeros((n, length + 1), dtype=np.int64)
    x[:, :length] = KEY0 + rng.integers(0, N_SYMBOLS, (n, length))
    x[:, length] = COMPRESS
    return x, x[:, :length].copy()


def memorization(rng: np.random.Generator, n: int, length: int = 32, table_seed: int = 1234):
    """A fixed key->value table (the same for every sequence, train and test): `key BLANK`
    pairs, the value is scored at each BLANK. Tests capacity, not in-context skill."""
    table = np.random.default_rng(table_seed).permutation(MEM_KEYS)
    keys = rng.integers(0, MEM_KEYS, (n, length // 2))
    x = np.full((n, length), BLANK, dtype=np.int64)
    y = np.full_like(x, IGNORE)
    x[:, 0::2] = MEM_KEY0 + keys
    y[:, 0::2] = MEM_VALUE0 + table[keys]
    return x, y


@dataclass(frozen=True)
class Task:
    name: str
    generate: Callable[..., tuple[np.ndarray, np.ndarray]]
    epochs: int
    compression: bool = False


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("in_context_recall", in_context_recall, epochs=10),
        Task("fuzzy_in_context_recall", fuzzy_in_context_recall, epochs=10),
        Task("noisy_in_context_recall", noisy_in_context_recall, epochs=10),
        Task("selective_copying", selective_copying, epochs=10),
        Task("compression", compression, epochs=10, compression=True),
        Task("memorization", memorization, epochs=10),
    ]
}
