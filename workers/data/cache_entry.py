"""A token-cache entry, opened: `open_entry` memory-maps the shards a complete entry's
meta.json lists (nothing is read up front) and loads its tokenizer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .corpus import CorpusError
from .token_shards import TokenStream
from .tokenizer import Tokenizer, byte_tokenizer, load_bpe


@dataclass
class SplitInfo:
    """The split as stored in the cache's meta.json; `describe()` is what results record."""

    info: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        return dict(self.info)

    @property
    def corpus_sha256(self) -> str:
        return self.info["corpus_sha256"]


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
        return {
            "key": self.key,
            "path": str(self.path),
            "built": self.built,
            "build_s": self.build_s,
            "prepare_s": round(self.prepare_s, 4),
            "dtype": self.meta["dtype"],
            "shards": len(self.meta["shards"]["train"]),
            "train_tokens": self.meta["train_tokens"],
            "val_tokens": self.meta["val_tokens"],
        }


def open_entry(path: Path) -> PreparedTokens:
    """Memory-map a complete entry; a truncated shard names the folder to delete."""
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
        tokenizer = load_bpe(
            path / "tokenizer.json",
            tok_meta["vocab_size"],
            meta["split"]["corpus_sha256"],
            sample_documents=tok_meta["sample_documents"],
            sample_bytes=tok_meta["sample_bytes"],
            sample_is_whole_split=meta["tokenizer_sample"]["whole_split"],
        )
    counts = np.load(path / "train_counts.npy", mmap_mode="r")
    return PreparedTokens(
        path=path,
        key=meta["key"],
        meta=meta,
        split=SplitInfo(meta["split"]),
        tokenizer=tokenizer,
        train=streams["train"],
        val=streams["val"],
        train_counts=counts,
    )
