"""Corpora and tokenizers: the built-in corpus, user formats, a leak-free stable split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workers.data.corpus import CorpusError, load_corpus
from workers.data.tokenizer import build_tokenizer


def test_builtin_corpus_is_the_kjv_split_by_chapter():
    corpus = load_corpus()
    assert len(corpus.documents) == 1189  # chapters of the KJV
    assert 4_000_000 < corpus.characters < 4_300_000
    assert corpus.documents[0].startswith("In the beginning God created the heaven")
    split = corpus.split(0.05)
    assert not set(split.train) & set(split.val)
    assert 0.02 < len(split.val) / len(corpus.documents) < 0.08
    assert corpus.split(0.05).describe() == split.describe()  # deterministic


def test_split_does_not_depend_on_document_order(tmp_path):
    docs = [f"document number {i} " * 5 for i in range(200)]
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text("\n".join(json.dumps({"text": d}) for d in docs))
    b.write_text("\n".join(json.dumps({"text": d}) for d in reversed(docs)))
    assert set(load_corpus(str(a)).split(0.1).val) == set(load_corpus(str(b)).split(0.1).val)


def test_user_formats_load_the_same_documents(tmp_path):
    docs = ["first doc about cats", "second doc about dogs", "third doc about birds"]
    (tmp_path / "c.txt").write_text("\n\n".join(docs))
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"body": d}) for d in docs))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": docs}), tmp_path / "c.parquet")
    from datasets import Dataset

    Dataset.from_dict({"text": docs}).save_to_disk(str(tmp_path / "saved"))
    assert load_corpus(str(tmp_path / "c.txt")).documents == docs
    assert load_corpus(str(tmp_path / "c.jsonl"), text_field="body").documents == docs
    assert load_corpus(str(tmp_path / "c.parquet")).documents == docs
    assert load_corpus(str(tmp_path / "saved")).documents == docs


@pytest.mark.parametrize(
    "content,name,fragment",
    [
        ('{"text": "a"}\nnot json\n', "x.jsonl", "line 2: not JSON"),
        ('{"body": "a"}\n', "x.jsonl", "no string field 'text'"),
        ("hello", "x.csv", "unsupported corpus format"),
    ],
)
def test_bad_corpora_fail_with_a_clear_message(tmp_path, content, name, fragment):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CorpusError, match=fragment):
        load_corpus(str(path))
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(str(tmp_path / "missing.txt"))


def test_bpe_is_trained_on_train_split_cached_and_round_trips(tmp_path):
    split = load_corpus().split()
    first = build_tokenizer(split, "bpe", 1024, cache_dir=tmp_path)
    second = build_tokenizer(split, "bpe", 1024, cache_dir=tmp_path)
    assert first.vocab_size == 1024 and first.identity == second.identity
    assert len(list((tmp_path / "tokenizers").glob("*.json"))) == 1
    text = split.val[0][:200]
    ids = first.encode_documents([text])
    assert ids[-1] == 0 and 0 not in ids[:-1]
    assert first.decode(list(ids[:-1])) == text
    assert ids.max() < first.vocab_size
    # Byte-level BPE compresses English several-fold relative to bytes.
    assert len(ids) < len(text.encode()) / 2.5


def test_byte_tokenizer_round_trips_any_text():
    tok = build_tokenizer(load_corpus().split(), "byte")
    text = "naïve café — 東京"
    ids = tok.encode_documents([text])
    assert tok.vocab_size == 257 and ids.max() < 257
    assert tok.decode(list(ids)) == text
    assert np.count_nonzero(ids == 0) == 1
