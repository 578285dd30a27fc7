"""The token cache: every corpus tokenized once, as memory-mapped shards every run reuses.

A cache entry is a folder named by a content key: the SHA-256 of the corpus bytes
(`corpus.content_sha256`, streamed), how they are read (format, text field), the split
settings and the tokenizer's identity (kind, vocabulary, sample caps, format and library
version). Whatever job or worker asks for the same key gets the same folder:

    <cache>/<corpus name>-<key>/
        meta.json            counts, split description, shards (tokens and sha256 each)
        tokenizer.json       the BPE (absent for the byte tokenizer)
        train_counts.npy     unigram counts of the training tokens (int64, one per id)
        train-00000.bin ...  token ids, little-endian uint16 when the vocabulary fits
        val-00000.bin ...    (else uint32), an end-of-document token (id 0) after each

Every byte written is a function of the corpus bytes and the settings, so a worker on
another node that lacks the entry rebuilds it byte for byte.

This module is the entry point (`prepare`, `prepare_for`); the rest lives by concern:

    cache_key.py      the key: tokenizer settings, content key, memoised corpus fingerprint
    cache_build.py    building an entry: split and sample, tokenizer, encode, meta.json
    token_shards.py   the shard files: id dtype, writing shards, reading them as one array
    cache_entry.py    opening an entry (`PreparedTokens`, memory-mapped)
    cache_publish.py  building each entry once: lock file, temporary folder, atomic rename
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .cache_build import build
from .cache_entry import PreparedTokens, open_entry
from .cache_key import cache_key, corpus_fingerprint, tokenizer_settings
from .cache_publish import publish_once
from .corpus import check_val_fraction, resolve_source
from .token_shards import SHARD_TOKENS
from .tokenizer import default_cache_dir


def token_cache_dir(setting: str | Path | None = None) -> Path:
    """The setting, else $TAILOR_TOKEN_CACHE, else <user cache>/tailor/tokens."""
    if setting:
        return Path(setting)
    env = os.environ.get("TAILOR_TOKEN_CACHE")
    return Path(env) if env else default_cache_dir() / "tokens"


def prepare(
    data: str | None = None,
    text_field: str = "text",
    val_fraction: float = 0.05,
    kind: str = "bpe",
    vocab_size: int = 4096,
    sample_documents: int = 200_000,
    sample_bytes: int = 64_000_000,
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
    shard_tokens: int = SHARD_TOKENS,
) -> PreparedTokens:
    """Open the cache entry for this corpus and settings, building it first if missing.
    `progress`: True shows bars, False hides them, None shows them on a terminal."""
    started = time.perf_counter()
    check_val_fraction(val_fraction)
    root = token_cache_dir(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    source = resolve_source(data, text_field)
    settings = tokenizer_settings(kind, vocab_size, sample_documents, sample_bytes)
    corpus_sha = corpus_fingerprint(source, root)
    fingerprint_s = time.perf_counter() - started
    key = cache_key(corpus_sha, source, val_fraction, settings)
    final = root / f"{_safe(source.name)}-{key}"
    build_s = publish_once(
        final,
        lambda folder: build(
            folder, source, corpus_sha, val_fraction, settings, progress, shard_tokens
        ),
    )
    prepared = open_entry(final)
    prepared.built, prepared.build_s = build_s is not None, build_s
    prepared.fingerprint_s = fingerprint_s
    prepared.prepare_s = time.perf_counter() - started
    return prepared


def prepare_for(config, progress: bool | None = None) -> PreparedTokens:
    """`prepare` with the settings of a `core.training.TrainConfig` (a job's training block)."""
    return prepare(
        config.data,
        config.text_field,
        config.val_fraction,
        config.tokenizer.kind,
        config.tokenizer.vocab_size,
        config.tokenizer.sample_documents,
        config.tokenizer.sample_bytes,
        cache_dir=config.token_cache,
        progress=progress,
    )


def _safe(name: str) -> str:
    """The corpus name as a folder-name prefix: letters, digits and ._- only, 64 at most."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:64] or "corpus"
