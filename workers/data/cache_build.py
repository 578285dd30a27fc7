"""Building one token-cache entry into a fresh folder, streaming the corpus twice and
holding at most one encoding batch, one write buffer and the tokenizer's training sample in
memory, whatever the corpus size:

1. split (`_split_and_sample`): each document's sha256 puts it in train or validation (the
   same rule, hence the same documents, as `Corpus.split`); the BPE's sample is the
   `sample_documents` training documents (at most `sample_bytes` of text) with the smallest
   hashes, kept in a bounded heap (`_BottomK`), so it does not depend on file order and is
   the whole training split when that fits (then the tokenizer equals the one trained on
   the whole split);
2. tokenizer (`_train_tokenizer`): trained on the sample, in corpus order;
3. encode (`_encode`): documents in batches to the shard writers;
4. meta.json, written last: an entry with it is complete.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .cache_key import CACHE_FORMAT, cache_key
from .corpus import (
    SPLIT_METHOD,
    CorpusError,
    CorpusSource,
    document_digest,
    is_held_out,
    iter_documents,
)
from .token_shards import SHARD_TOKENS, ShardWriter, token_dtype
from .tokenizer import Tokenizer, byte_tokenizer, load_bpe, train_bpe

ENCODE_BATCH_BYTES = 1 << 18  # text encoded per tokenizer call


def build(
    folder: Path,
    source: CorpusSource,
    corpus_sha: str,
    val_fraction: float,
    settings: dict[str, Any],
    progress: bool | None = None,
    shard_tokens: int = SHARD_TOKENS,
) -> None:
    """Write a complete entry into `folder` (which must not exist)."""
    folder.mkdir(parents=True)
    bars = _Bars(progress, source.name)
    scan, sample = _split_and_sample(source, val_fraction, settings, bars)
    tokenizer, sample_info = _train_tokenizer(sample, settings, folder, bars)
    del sample  # the sample's text may be large; encoding does not need it
    dtype = token_dtype(tokenizer.vocab_size)
    shards, counts = _encode(source, scan, tokenizer, dtype, folder, shard_tokens, bars)
    np.save(folder / "train_counts.npy", counts)
    split = {
        "corpus": source.name,
        "corpus_sha256": scan.corpus_sha256,
        "corpus_bytes_sha256": corpus_sha,
        "method": SPLIT_METHOD,
        "val_fraction": val_fraction,
        "train_documents": scan.documents - scan.val_documents,
        "val_documents": scan.val_documents,
        "train_characters": scan.characters["train"],
        "val_characters": scan.characters["val"],
    }
    meta = {
        "format": CACHE_FORMAT,
        "key": cache_key(corpus_sha, source, val_fraction, settings),
        "source": {"name": source.name, **source.reader_identity()},
        "split": split,
        "tokenizer": {
            **settings,
            "vocab_size": tokenizer.vocab_size,
            "requested_vocab_size": settings.get("vocab_size"),
        },
        "tokenizer_sample": sample_info,
        "dtype": dtype.str,
        "train_tokens": sum(s["tokens"] for s in shards["train"]),
        "val_tokens": sum(s["tokens"] for s in shards["val"]),
        "shards": shards,
        "shard_tokens": shard_tokens,
    }
    # meta.json last: an entry with it is complete (and the rename makes it visible at once).
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


@dataclass
class _SplitScan:
    """What the first pass learned: the split's counts, and which documents are held out."""

    val_fraction: float
    corpus_sha256: str  # over the documents' hashes, in order (`Corpus.split`'s)
    documents: int
    val_documents: int
    characters: dict[str, int] = field(default_factory=dict)
    last_held_out: bool = False  # tiny corpora: the last document is the validation split

    def held_out(self, index: int, h: bytes) -> bool:
        return (
            index == self.documents - 1 if self.last_held_out else is_held_out(h, self.val_fraction)
        )


def _split_and_sample(
    source: CorpusSource, val_fraction: float, settings: dict[str, Any], bars: _Bars
) -> tuple[_SplitScan, _BottomK]:
    """Step 1: split, count and sample in one streaming pass, memory within caps."""
    sample = _BottomK(settings.get("sample_documents", 0), settings.get("sample_bytes", 0))
    digest = hashlib.sha256()
    n_docs = n_val = 0
    chars = {"train": 0, "val": 0}
    last_chars = 0
    with bars.bar("split", None) as bar:
        for index, doc in enumerate(iter_documents(source)):
            h = document_digest(doc)
            digest.update(h)
            held_out = is_held_out(h, val_fraction)
            n_docs += 1
            n_val += held_out
            chars["val" if held_out else "train"] += len(doc)
            last_chars = len(doc)
            if not held_out and sample.capacity:
                sample.offer(h, index, doc)
            bar.update(1)
    if n_docs == 0:
        raise CorpusError(f"corpus {source.name!r} has no text")
    fallback = n_val == 0 or n_val == n_docs  # tiny corpora: hold out the last document
    if fallback:
        if n_docs < 2:
            raise CorpusError(f"corpus {source.name!r} needs at least two documents to split")
        total = chars["train"] + chars["val"]
        chars = {"train": total - last_chars, "val": last_chars}
        sample.discard(n_docs - 1)
        if n_val == n_docs and sample.capacity:  # nothing was offered: sample again
            for index, doc in enumerate(iter_documents(source)):
                if index < n_docs - 1:
                    sample.offer(document_digest(doc), index, doc)
    scan = _SplitScan(
        val_fraction, digest.hexdigest(), n_docs, 1 if fallback else n_val, chars, fallback
    )
    return scan, sample


def _train_tokenizer(
    sample: _BottomK, settings: dict[str, Any], folder: Path, bars: _Bars
) -> tuple[Tokenizer, dict[str, Any]]:
    """Step 2: the tokenizer from the sample, and the sample's line in meta.json."""
    sample_docs = sample.documents()
    if settings["kind"] == "byte":
        tokenizer = byte_tokenizer()
    else:
        bars.note(f"training the BPE tokenizer on {len(sample_docs):,} documents")
        train_bpe(sample_docs, settings["vocab_size"], folder / "tokenizer.json")
        tokenizer = load_bpe(folder / "tokenizer.json", settings["vocab_size"], "")
    sample_info = {
        "documents": len(sample_docs),
        "bytes": sample.bytes,
        "whole_split": not sample.dropped,
    }
    return tokenizer, sample_info


def _encode(
    source: CorpusSource,
    scan: _SplitScan,
    tokenizer: Tokenizer,
    dtype: np.dtype,
    folder: Path,
    shard_tokens: int,
    bars: _Bars,
) -> tuple[dict[str, list[dict[str, Any]]], np.ndarray]:
    """Step 3: encode in batches into shards: memory holds one batch, whatever the corpus."""
    writers = {name: ShardWriter(folder, name, dtype, shard_tokens) for name in ("train", "val")}
    counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    pending: dict[str, list[str]] = {"train": [], "val": []}
    pending_bytes = {"train": 0, "val": 0}

    def flush(name: str) -> None:
        if pending[name]:
            ids = tokenizer.encode_documents(pending[name], dtype=dtype)
            if name == "train":
                counts[:] += np.bincount(ids, minlength=tokenizer.vocab_size)[: len(counts)]
            writers[name].write(ids)
            pending[name], pending_bytes[name] = [], 0

    with bars.bar("tokenize", scan.documents) as bar:
        for index, doc in enumerate(iter_documents(source)):
            name = "val" if scan.held_out(index, document_digest(doc)) else "train"
            pending[name].append(doc)
            pending_bytes[name] += len(doc)
            if pending_bytes[name] >= ENCODE_BATCH_BYTES:
                flush(name)
            bar.update(1)
        flush("train")
        flush("val")
    shards = {name: writer.close() for name, writer in writers.items()}
    if not shards["train"] or not shards["val"]:
        raise CorpusError(f"corpus {source.name!r}: a split came out empty")
    return shards, counts


class _BottomK:
    """The training documents with the smallest hashes that fit the caps (`max_docs`
    documents, `max_bytes` of UTF-8 text): a max-heap on the hash, so memory stays within
    the caps. Once a document has been dropped, every larger hash is refused, so the
    sample is exactly "all documents below some hash" - the same set in any file order."""

    def __init__(self, max_docs: int, max_bytes: int):
        self.capacity = max_docs if max_bytes else 0
        self.max_bytes = max_bytes
        self.heap: list[tuple[bytes, int, str, int]] = []  # (inverted hash, index, doc, size)
        self.bytes = 0
        self.cut: bytes | None = None  # the inverted hash of the smallest dropped hash
        self.dropped = False

    def offer(self, h: bytes, index: int, doc: str) -> None:
        inverted = bytes(255 - b for b in h)  # heapq is a min-heap: the largest hash on top
        if self.cut is not None and inverted <= self.cut:
            return
        size = len(doc.encode())
        heapq.heappush(self.heap, (inverted, index, doc, size))
        self.bytes += size
        while self.heap and (len(self.heap) > self.capacity or self.bytes > self.max_bytes):
            gone, _, _, gone_size = heapq.heappop(self.heap)
            self.bytes -= gone_size
            self.cut = gone if self.cut is None else max(self.cut, gone)
            self.dropped = True
        while self.heap and self.cut is not None and self.heap[0][0] <= self.cut:
            self.bytes -= heapq.heappop(self.heap)[3]  # ties with the cut go too

    def discard(self, index: int) -> None:
        kept = [item for item in self.heap if item[1] != index]
        self.bytes = sum(item[3] for item in kept)
        self.heap = kept
        heapq.heapify(self.heap)

    def documents(self) -> list[str]:
        return [item[2] for item in sorted(self.heap, key=lambda item: item[1])]


class _Bars:
    """Progress bars on stderr (tqdm) when enabled: None enables them on a terminal."""

    def __init__(self, progress: bool | None, name: str):
        self.enabled = sys.stderr.isatty() if progress is None else progress
        self.name = name

    @contextmanager
    def bar(self, stage: str, total: int | None) -> Iterator[Any]:
        if not self.enabled:
            yield _NoBar()
            return
        from tqdm import tqdm

        with tqdm(
            total=total,
            desc=f"{self.name}: {stage}",
            unit=" docs",
            unit_scale=True,
            mininterval=0.5,
            file=sys.stderr,
        ) as bar:
            yield bar

    def note(self, text: str) -> None:
        if self.enabled:
            print(f"{self.name}: {text}", file=sys.stderr, flush=True)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass
