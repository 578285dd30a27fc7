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

Building streams the corpus twice and holds at most one encoding batch, one write buffer
and the tokenizer's training sample in memory, whatever the corpus size:

1. split: each document's sha256 puts it in train or validation (the same rule, hence the
   same documents, as `Corpus.split`); the BPE's sample is the `sample_documents` training
   documents (at most `sample_bytes` of text) with the smallest hashes, kept in a bounded
   heap, so it does not depend on file order and is the whole training split when that
   fits (then the tokenizer equals the one trained on the whole split);
2. tokenizer: trained on the sample, in corpus order;
3. encode: documents in batches to the shard writers.

Every byte written is a function of the corpus bytes and the settings, so a worker on
another node that lacks the entry rebuilds it byte for byte. Builds happen in a temporary
folder renamed into place (atomic); a lock file makes a second local builder wait and then
reuse the first one's result, and should two builders still race (separate nodes on a
shared disk), the rename of the second fails and it uses the winner's folder.

The content hash of a large corpus takes a while to compute, so it is memoised per file
signature (path, size, mtime, inode) under `<cache>/fingerprints/`; a prepared corpus then
opens in milliseconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import heapq
import json
import os
import shutil
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .corpus import (SPLIT_METHOD, CorpusError, CorpusSource, check_val_fraction,
                     content_sha256, document_digest, is_held_out, iter_documents,
                     resolve_source, source_signature)
from .tokenizer import (TOKENIZER_FORMAT, Tokenizer, byte_tokenizer, check_bpe_settings,
                        default_cache_dir, load_bpe, train_bpe)

CACHE_FORMAT = 1
SHARD_TOKENS = 1 << 28  # 512 MiB of uint16 a shard
ENCODE_BATCH_BYTES = 1 << 18  # text encoded per tokenizer call
WRITE_BUFFER_TOKENS = 1 << 20


def token_cache_dir(setting: str | Path | None = None) -> Path:
    """The setting, else $TAILOR_TOKEN_CACHE, else <user cache>/tailor/tokens."""
    if setting:
        return Path(setting)
    env = os.environ.get("TAILOR_TOKEN_CACHE")
    return Path(env) if env else default_cache_dir() / "tokens"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32).newbyteorder("<")


@dataclass
class SplitInfo:
    """The split as stored in the cache's meta.json; `describe()` is what results record."""

    info: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        return dict(self.info)

    @property
    def corpus_sha256(self) -> str:
        return self.info["corpus_sha256"]


class TokenStream:
    """Several memory-mapped shards read as one 1-D array: len(), slices and integer-array
    indexing (windows may straddle shards)."""

    def __init__(self, shards: list[np.ndarray]):
        self.shards = shards
        self.bounds = np.cumsum([0] + [len(s) for s in shards])
        self.dtype = shards[0].dtype

    def __len__(self) -> int:
        return int(self.bounds[-1])

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return self[np.arange(start, stop, step)]
            parts = []
            for i, shard in enumerate(self.shards):
                lo, hi = max(start, self.bounds[i]), min(stop, self.bounds[i + 1])
                if lo < hi:
                    parts.append(shard[lo - self.bounds[i]:hi - self.bounds[i]])
            return (np.concatenate(parts) if len(parts) != 1 else parts[0]) if parts \
                else np.zeros(0, self.dtype)
        index = np.asarray(index)
        if index.ndim == 0:
            i = int(index) + (len(self) if index < 0 else 0)
            shard = int(np.searchsorted(self.bounds, i, "right")) - 1
            return self.shards[shard][i - self.bounds[shard]]
        out = np.empty(index.shape, self.dtype)
        which = np.searchsorted(self.bounds, index, "right") - 1
        for shard in np.unique(which):
            mask = which == shard
            out[mask] = self.shards[shard][index[mask] - self.bounds[shard]]
        return out

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[:], dtype=dtype)


@dataclass
class PreparedTokens:
    """A cache entry, opened: the tokens are memory-mapped, nothing is read up front."""

    path: Path
    key: str
    meta: dict[str, Any]
    split: SplitInfo
    tokenizer: Tokenizer
    train: np.ndarray | TokenStream
    val: np.ndarray | TokenStream
    train_counts: np.ndarray
    built: bool = False  # this call built the entry
    build_s: float | None = None
    prepare_s: float = 0.0
    fingerprint_s: float = 0.0

    def report(self) -> dict[str, Any]:
        return {"key": self.key, "path": str(self.path), "built": self.built,
                "build_s": self.build_s, "prepare_s": round(self.prepare_s, 4),
                "dtype": self.meta["dtype"], "shards": len(self.meta["shards"]["train"]),
                "train_tokens": self.meta["train_tokens"], "val_tokens": self.meta["val_tokens"]}


# -- the key -------------------------------------------------------------------------------


def tokenizer_settings(kind: str, vocab_size: int, sample_documents: int,
                       sample_bytes: int) -> dict[str, Any]:
    if kind == "byte":
        return {"kind": "byte"}
    check_bpe_settings(kind, vocab_size)
    import tokenizers

    return {"kind": "bpe", "vocab_size": vocab_size, "sample_documents": sample_documents,
            "sample_bytes": sample_bytes, "format": TOKENIZER_FORMAT,
            "library": f"tokenizers {tokenizers.__version__}"}


def cache_key(corpus_sha: str, source: CorpusSource, val_fraction: float,
              tokenizer: dict[str, Any]) -> str:
    identity = {"format": CACHE_FORMAT, "corpus_bytes_sha256": corpus_sha,
                "reader": source.reader_identity(),
                "split": {"method": SPLIT_METHOD, "val_fraction": val_fraction},
                "tokenizer": tokenizer}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def corpus_fingerprint(source: CorpusSource, root: Path) -> str:
    """The content hash, memoised under the files' signature."""
    signature = source_signature(source)
    memo = root / "fingerprints" / (hashlib.sha256(
        json.dumps([source.kind, str(source.path.resolve())]).encode()).hexdigest()[:24] + ".json")
    try:
        saved = json.loads(memo.read_text())
        if saved["signature"] == signature:
            return saved["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = content_sha256(source)
    memo.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(memo, json.dumps({"signature": signature, "sha256": digest}).encode())
    return digest


# -- preparing -----------------------------------------------------------------------------


def prepare(data: str | None = None, text_field: str = "text", val_fraction: float = 0.05,
            kind: str = "bpe", vocab_size: int = 4096, sample_documents: int = 200_000,
            sample_bytes: int = 64_000_000, cache_dir: str | Path | None = None,
            progress: bool | None = None, shard_tokens: int = SHARD_TOKENS) -> PreparedTokens:
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
    built, build_s = False, None
    if not _complete(final):
        with _lock(root / f".{final.name}.lock"):
            if not _complete(final):  # another local worker may have built it meanwhile
                build_started = time.perf_counter()
                tmp = root / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                try:
                    build(tmp, source, corpus_sha, val_fraction, settings, progress,
                          shard_tokens)
                    try:
                        os.rename(tmp, final)
                    except OSError:  # a builder elsewhere won the race: use its entry
                        if not _complete(final):
                            raise
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                built, build_s = True, round(time.perf_counter() - build_started, 3)
    prepared = open_entry(final)
    prepared.built, prepared.build_s = built, build_s
    prepared.fingerprint_s = fingerprint_s
    prepared.prepare_s = time.perf_counter() - started
    return prepared


def prepare_for(config, progress: bool | None = None) -> PreparedTokens:
    """`prepare` with the settings of a `core.training.TrainConfig` (a job's training block)."""
    return prepare(config.data, config.text_field, config.val_fraction,
                   config.tokenizer.kind, config.tokenizer.vocab_size,
                   config.tokenizer.sample_documents, config.tokenizer.sample_bytes,
                   cache_dir=config.token_cache, progress=progress)


def open_entry(path: Path) -> PreparedTokens:
    meta = json.loads((path / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])
    streams = {}
    for name in ("train", "val"):
        shards = []
        for shard in meta["shards"][name]:
            file = path / shard["file"]
            if file.stat().st_size != shard["tokens"] * dtype.itemsize:
                raise CorpusError(f"token cache {file} is truncated; delete {path}")
            shards.append(np.memmap(file, dtype=dtype, mode="r", shape=(shard["tokens"],)))
        streams[name] = shards[0] if len(shards) == 1 else TokenStream(shards)
    tok_meta = meta["tokenizer"]
    if tok_meta["kind"] == "byte":
        tokenizer = byte_tokenizer()
    else:
        tokenizer = load_bpe(path / "tokenizer.json", tok_meta["vocab_size"],
                             meta["split"]["corpus_sha256"],
                             sample_documents=tok_meta["sample_documents"],
                             sample_bytes=tok_meta["sample_bytes"],
                             sample_is_whole_split=meta["tokenizer_sample"]["whole_split"])
    counts = np.load(path / "train_counts.npy", mmap_mode="r")
    return PreparedTokens(path=path, key=meta["key"], meta=meta, split=SplitInfo(meta["split"]),
                          tokenizer=tokenizer, train=streams["train"], val=streams["val"],
                          train_counts=counts)


def build(folder: Path, source: CorpusSource, corpus_sha: str, val_fraction: float,
          settings: dict[str, Any], progress: bool | None = None,
          shard_tokens: int = SHARD_TOKENS) -> None:
    """Write a complete entry into `folder` (which must not exist)."""
    folder.mkdir(parents=True)
    bars = _Bars(progress, source.name)

    # 1. split and sample.
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
    n_val_docs = 1 if fallback else n_val

    def held_out_at(index: int, h: bytes) -> bool:
        return index == n_docs - 1 if fallback else is_held_out(h, val_fraction)

    # 2. tokenizer.
    sample_docs = sample.documents()
    if settings["kind"] == "byte":
        tokenizer = byte_tokenizer()
    else:
        bars.note(f"training the BPE tokenizer on {len(sample_docs):,} documents")
        train_bpe(sample_docs, settings["vocab_size"], folder / "tokenizer.json")
        tokenizer = load_bpe(folder / "tokenizer.json", settings["vocab_size"], "")
    sample_info = {"documents": len(sample_docs), "bytes": sample.bytes,
                   "whole_split": not sample.dropped}
    del sample_docs, sample
    dtype = token_dtype(tokenizer.vocab_size)

    # 3. encode.
    writers = {name: _ShardWriter(folder, name, dtype, shard_tokens) for name in ("train", "val")}
    counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    pending: dict[str, list[str]] = {"train": [], "val": []}
    pending_bytes = {"train": 0, "val": 0}

    def flush(name: str) -> None:
        if pending[name]:
            ids = tokenizer.encode_documents(pending[name], dtype=dtype)
            if name == "train":
                counts[:] += np.bincount(ids, minlength=tokenizer.vocab_size)[:len(counts)]
            writers[name].write(ids)
            pending[name], pending_bytes[name] = [], 0

    with bars.bar("tokenize", n_docs) as bar:
        for index, doc in enumerate(iter_documents(source)):
            name = "val" if held_out_at(index, document_digest(doc)) else "train"
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
    np.save(folder / "train_counts.npy", counts)
    split = {"corpus": source.name, "corpus_sha256": digest.hexdigest(),
             "corpus_bytes_sha256": corpus_sha, "method": SPLIT_METHOD,
             "val_fraction": val_fraction, "train_documents": n_docs - n_val_docs,
             "val_documents": n_val_docs, "train_characters": chars["train"],
             "val_characters": chars["val"]}
    meta = {"format": CACHE_FORMAT, "key": cache_key(corpus_sha, source, val_fraction, settings),
            "source": {"name": source.name, **source.reader_identity()},
            "split": split, "tokenizer": {**settings, "vocab_size": tokenizer.vocab_size,
                                          "requested_vocab_size": settings.get("vocab_size")},
            "tokenizer_sample": sample_info, "dtype": dtype.str,
            "train_tokens": sum(s["tokens"] for s in shards["train"]),
            "val_tokens": sum(s["tokens"] for s in shards["val"]), "shards": shards,
            "shard_tokens": shard_tokens}
    # meta.json last: an entry with it is complete (and the rename makes it visible at once).
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


# -- pieces --------------------------------------------------------------------------------


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


class _ShardWriter:
    def __init__(self, folder: Path, name: str, dtype: np.dtype, shard_tokens: int):
        self.folder, self.name, self.dtype, self.limit = folder, name, dtype, shard_tokens
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.shards: list[dict[str, Any]] = []
        self.file = None
        self.digest = None
        self.count = 0

    def write(self, ids: np.ndarray) -> None:
        self.buffer.append(ids.astype(self.dtype, copy=False))
        self.buffered += len(ids)
        if self.buffered >= WRITE_BUFFER_TOKENS:
            self._drain()

    def _drain(self) -> None:
        if not self.buffer:
            return
        ids = np.concatenate(self.buffer)
        self.buffer, self.buffered = [], 0
        while len(ids):
            if self.file is None:
                name = f"{self.name}-{len(self.shards):05d}.bin"
                self.file = open(self.folder / name, "wb")
                self.digest, self.count = hashlib.sha256(), 0
                self.shards.append({"file": name})
            take = ids[: self.limit - self.count]
            data = take.tobytes()
            self.file.write(data)
            self.digest.update(data)
            self.count += len(take)
            ids = ids[len(take):]
            if self.count >= self.limit:
                self._finish()

    def _finish(self) -> None:
        self.file.close()
        self.shards[-1].update(tokens=self.count, sha256=self.digest.hexdigest())
        self.file = None

    def close(self) -> list[dict[str, Any]]:
        self._drain()
        if self.file is not None:
            self._finish()
        return self.shards


class _Bars:
    def __init__(self, progress: bool | None, name: str):
        self.enabled = sys.stderr.isatty() if progress is None else progress
        self.name = name

    @contextmanager
    def bar(self, stage: str, total: int | None) -> Iterator[Any]:
        if not self.enabled:
            yield _NoBar()
            return
        from tqdm import tqdm

        with tqdm(total=total, desc=f"{self.name}: {stage}", unit=" docs", unit_scale=True,
                  mininterval=0.5, file=sys.stderr) as bar:
            yield bar

    def note(self, text: str) -> None:
        if self.enabled:
            print(f"{self.name}: {text}", file=sys.stderr, flush=True)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _complete(path: Path) -> bool:
    return (path / "meta.json").exists()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:64] or "corpus"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
