"""What names a token-cache entry: the tokenizer's settings, the content key built from them
and the corpus, and the corpus's content hash, memoised per file signature under
`<cache>/fingerprints/` (hashing a large corpus takes a while; a memo is read in
milliseconds)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from .corpus import SPLIT_METHOD, CorpusSource, content_sha256, source_signature
from .tokenizer import TOKENIZER_FORMAT, check_bpe_settings

CACHE_FORMAT = 1


def tokenizer_settings(
    kind: str, vocab_size: int, sample_documents: int, sample_bytes: int
) -> dict[str, Any]:
    """The tokenizer's identity for the key: another library may train another BPE."""
    if kind == "byte":
        return {"kind": "byte"}
    check_bpe_settings(kind, vocab_size)
    import tokenizers

    return {
        "kind": "bpe",
        "vocab_size": vocab_size,
        "sample_documents": sample_documents,
        "sample_bytes": sample_bytes,
        "format": TOKENIZER_FORMAT,
        "library": f"tokenizers {tokenizers.__version__}",
    }


def cache_key(
    corpus_sha: str, source: CorpusSource, val_fraction: float, tokenizer: dict[str, Any]
) -> str:
    """24 hex digits of the SHA-256 of everything an entry's bytes depend on."""
    identity = {
        "format": CACHE_FORMAT,
        "corpus_bytes_sha256": corpus_sha,
        "reader": source.reader_identity(),
        "split": {"method": SPLIT_METHOD, "val_fraction": val_fraction},
        "tokenizer": tokenizer,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def corpus_fingerprint(source: CorpusSource, root: Path) -> str:
    """The content hash, memoised under the files' signature."""
    signature = source_signature(source)
    memo = (
        root
        / "fingerprints"
        / (
            hashlib.sha256(
                json.dumps([source.kind, str(source.path.resolve())]).encode()
            ).hexdigest()[:24]
            + ".json"
        )
    )
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


def _write_atomic(path: Path, data: bytes) -> None:
    """Through a unique temporary file: a concurrent reader never sees half a memo."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
