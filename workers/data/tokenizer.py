"""Tokenizers: a byte-level BPE trained offline with HF `tokenizers`, or plain bytes.

The BPE is trained on the training split only and cached on disk under a key made of the
corpus hash and the tokenizer settings, so every worker of a job (and every later job on the
same corpus) uses the identical tokenizer without retraining it. Token id 0 is the
end-of-document token in both kinds.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import numpy as np

from core.training import BPE_VOCAB_RANGE, BYTE_VOCAB_SIZE

from .corpus import Split

EOS = "<|endoftext|>"
TOKENIZER_FORMAT = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("TAILOR_CACHE_DIR", Path.home() / ".cache" / "tailor"))


@dataclass
class Tokenizer:
    kind: Literal["bpe", "byte"]
    vocab_size: int
    identity: dict  # what the result records: kind, vocab, corpus hash, file hash
    _bpe: object | None = None

    def encode_documents(self, documents: list[str], dtype=np.int64) -> np.ndarray:
        """Concatenated ids with an end-of-document token after each document."""
        pieces = []
        eos = np.zeros(1, dtype=dtype)
        if self.kind == "byte":
            for doc in documents:
                # Byte b -> id b + 1; id 0 is the end-of-document token.
                pieces.append(np.frombuffer(doc.encode("utf-8"), dtype=np.uint8).astype(dtype) + 1)
                pieces.append(eos)
        else:
            bpe = self._bpe
            encode = getattr(bpe, "encode_batch_fast", bpe.encode_batch)  # no offsets
            for encoding in encode(documents):  # type: ignore[union-attr]
                pieces.append(np.asarray(encoding.ids, dtype=dtype))
                pieces.append(eos)
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)

    def decode(self, ids: list[int]) -> str:
        if self.kind == "byte":
            return bytes(i - 1 for i in ids if i > 0).decode("utf-8", errors="replace")
        return self._bpe.decode(ids)  # type: ignore[union-attr]


def build_tokenizer(
    split: Split, kind: str = "bpe", vocab_size: int = 4096, cache_dir: str | Path | None = None
) -> Tokenizer:
    if kind == "byte":
        return byte_tokenizer()
    check_bpe_settings(kind, vocab_size)
    key = f"{split.corpus_sha256[:16]}-bpe{vocab_size}-v{TOKENIZER_FORMAT}-val{split.val_fraction}"
    path = Path(cache_dir or default_cache_dir()) / "tokenizers" / f"{key}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        train_bpe(split.train, vocab_size, tmp)
        os.replace(tmp, path)  # atomic: concurrent workers never read half a file
    return load_bpe(path, vocab_size, split.corpus_sha256)


def byte_tokenizer() -> Tokenizer:
    return Tokenizer("byte", BYTE_VOCAB_SIZE, {"kind": "byte", "vocab_size": BYTE_VOCAB_SIZE})


def check_bpe_settings(kind: str, vocab_size: int) -> None:
    if kind != "bpe":
        raise ValueError(f"tokenizer kind must be 'bpe' or 'byte', got {kind!r}")
    low, high = BPE_VOCAB_RANGE
    if not low <= vocab_size <= high:
        raise ValueError(f"BPE vocab_size must be in [{low}, {high}], got {vocab_size}")


def train_bpe(documents: Iterable[str], vocab_size: int, path: str | Path) -> None:
    """Train the byte-level BPE on `documents` (any iterable, consumed once) and save it."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    bpe = HFTokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(documents, trainer=trainer)
    bpe.save(str(path))


def load_bpe(
    path: str | Path, requested_vocab_size: int, corpus_sha256: str, **identity
) -> Tokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    path = Path(path)
    bpe = HFTokenizer.from_file(str(path))
    file_sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    actual = bpe.get_vocab_size()
    if bpe.token_to_id(EOS) != 0:
        raise RuntimeError(f"cached tokenizer {path} does not have {EOS} at id 0")
    return Tokenizer(
        "bpe",
        actual,
        {
            "kind": "bpe",
            "vocab_size": actual,
            "requested_vocab_size": requested_vocab_size,
            "corpus_sha256": corpus_sha256,
            "file_sha256": file_sha,
            **identity,
            "path": str(path),
        },
        bpe,
    )
