"""Token shards on disk: the id dtype, writing a split's ids into fixed-size shard files
(each with its sha256), and reading several memory-mapped shards as one array."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

SHARD_TOKENS = 1 << 28  # 512 MiB of uint16 a shard
WRITE_BUFFER_TOKENS = 1 << 20


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when the vocabulary fits: half the disk and page cache of uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32).newbyteorder("<")


class ShardWriter:
    """Appends a split's ids to `<name>-00000.bin`, `<name>-00001.bin`, ... of at most
    `shard_tokens` ids each, buffering writes; `close()` lists the shards written (file,
    tokens, sha256), which meta.json records."""

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
            ids = ids[len(take) :]
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
                    parts.append(shard[lo - self.bounds[i] : hi - self.bounds[i]])
            return (
                (np.concatenate(parts) if len(parts) != 1 else parts[0])
                if parts
                else np.zeros(0, self.dtype)
            )
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
