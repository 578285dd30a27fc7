"""The token cache: corpora tokenized once into memory-mapped shards every run reuses."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from core import preset
from workers.data import cache_key
from workers.data.corpus import iter_documents, load_corpus
from workers.data.token_cache import prepare
from workers.data.token_shards import TokenStream
from workers.data.tokenizer import build_tokenizer
from workers.train.trainer import evaluate_quality, prepare_tokens

ROOT = Path(__file__).resolve().parents[2]
TINY = preset("transformer++", width=64, layers=2, heads=4, kv_heads=2, ffn=192).to_json()
KJV_DOCS = list(iter_documents())[:240]  # chapters: real text, small enough to be quick


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _entries(cache: Path) -> list[Path]:
    return [p for p in cache.iterdir() if p.is_dir() and p.name != "fingerprints"]


def test_prepared_tokens_equal_encoding_the_split_in_memory(tmp_path):
    """Same documents in the same order, same tokenizer: the cache holds exactly the tokens
    the in-memory path makes (so batches, and perplexities, are those of before)."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": d}) for d in KJV_DOCS))
    prepared = prepare(str(corpus), vocab_size=512, cache_dir=tmp_path / "cache")
    split = load_corpus(str(corpus)).split(0.05)
    tokenizer = build_tokenizer(split, "bpe", 512, cache_dir=tmp_path / "old")
    assert prepared.tokenizer.identity["file_sha256"] == tokenizer.identity["file_sha256"]
    assert isinstance(prepared.train, np.memmap) and prepared.train.dtype == np.uint16
    assert np.array_equal(prepared.train, tokenizer.encode_documents(split.train))
    assert np.array_equal(prepared.val, tokenizer.encode_documents(split.val))
    described = prepared.split.describe()
    assert described.pop("corpus_bytes_sha256")
    assert described == split.describe()
    assert np.array_equal(
        prepared.train_counts, np.bincount(tokenizer.encode_documents(split.train), minlength=512)
    )


def test_parquet_and_saved_dataset_corpora_train_end_to_end(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    pq.write_table(
        pa.table({"text": KJV_DOCS, "n": list(range(len(KJV_DOCS)))}),
        tmp_path / "c.parquet",
        row_group_size=50,
    )
    Dataset.from_dict({"text": KJV_DOCS}).save_to_disk(
        str(tmp_path / "saved"), max_shard_size="200KB"
    )
    assert len(list((tmp_path / "saved").glob("*.arrow"))) > 1  # several Arrow files
    config = {
        "tokens": 4_000,
        "seq_len": 32,
        "batch_size": 4,
        "eval_tokens": 2_000,
        "tokenizer": {"vocab_size": 512},
        "token_cache": str(tmp_path / "cache"),
    }
    results = {}
    for name in ("c.parquet", "saved"):
        result = evaluate_quality(TINY, {**config, "data": str(tmp_path / name)})
        assert result.status == "ok", result.reason
        assert result.token_cache["built"] and result.split["corpus"] == name
        assert result.split["train_documents"] + result.split["val_documents"] == len(KJV_DOCS)
        results[name] = result
    # Same documents, same tokens: the two formats train the same model bit for bit.
    assert results["c.parquet"].perplexity == results["saved"].perplexity
    assert len(_entries(tmp_path / "cache")) == 2  # one entry per corpus's bytes


def test_the_cache_is_built_once_for_two_jobs(tmp_path):
    """Two jobs that differ only in training settings share the corpus's entry; a second
    run's data loading is opening memory maps (well under a second)."""
    base = {
        "seq_len": 32,
        "batch_size": 4,
        "eval_tokens": 2_000,
        "tokenizer": {"kind": "byte"},
        "token_cache": str(tmp_path / "cache"),
    }
    first = evaluate_quality(TINY, {**base, "tokens": 2_000, "seed": 1})
    second = evaluate_quality(TINY, {**base, "tokens": 3_000, "lr": 3e-3})
    assert first.status == second.status == "ok", (first.reason, second.reason)
    assert first.token_cache["built"] and not second.token_cache["built"]
    assert first.token_cache["key"] == second.token_cache["key"]
    assert second.data_load_s < 1.0, second.data_load_s
    assert len(_entries(tmp_path / "cache")) == 1
    assert first.split == second.split


BUILD_SCRIPT = textwrap.dedent("""
    import json, sys
    from workers.data.token_cache import prepare
    prepared = prepare(sys.argv[1], kind="byte", cache_dir=sys.argv[2])
    print(json.dumps({"built": prepared.built, "key": prepared.key}))
""")


def test_two_workers_at_once_build_one_cache(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(KJV_DOCS * 3))
    cache = tmp_path / "cache"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD_SCRIPT, str(corpus), str(cache)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    outputs = [json.loads(w.communicate(timeout=120)[0]) for w in workers]
    assert all(w.returncode == 0 for w in workers)
    assert sorted(o["built"] for o in outputs) == [False, True]
    assert outputs[0]["key"] == outputs[1]["key"]
    assert [p.name for p in _entries(cache)] == [f"c.txt-{outputs[0]['key']}"]
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-")]


def test_a_rebuilt_cache_is_byte_identical(tmp_path):
    """A worker elsewhere that lacks the entry rebuilds it bit for bit: here with a BPE
    sample smaller than the training split and shards small enough to need several."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": d}) for d in KJV_DOCS))
    settings = dict(vocab_size=400, sample_documents=100, sample_bytes=400_000, shard_tokens=50_000)
    a = prepare(str(corpus), cache_dir=tmp_path / "node-a", **settings)
    b = prepare(str(corpus), cache_dir=tmp_path / "node-b", **settings)
    assert a.built and b.built and a.key == b.key
    assert _files(a.path) == _files(b.path)
    assert not a.tokenizer.identity["sample_is_whole_split"]
    assert a.meta["tokenizer_sample"]["documents"] <= 100
    assert isinstance(a.train, TokenStream) and len(a.meta["shards"]["train"]) > 2
    whole = np.concatenate(
        [np.fromfile(a.path / s["file"], dtype=a.train.dtype) for s in a.meta["shards"]["train"]]
    )
    assert len(whole) == len(a.train) == a.meta["train_tokens"]
    idx = np.array([[0, 1], [49_999, 50_000], [len(whole) - 2, len(whole) - 1]])
    assert np.array_equal(a.train[idx], whole[idx])  # windows across shard bounds
    assert np.array_equal(a.train[49_990:50_010], whole[49_990:50_010])
    # Another sample cap is another tokenizer, hence another entry.
    c = prepare(
        str(corpus),
        cache_dir=tmp_path / "node-a",
        **{**settings, "sample_documents": 10**6, "sample_bytes": 10**7},
    )
    assert c.key != a.key and c.tokenizer.identity["sample_is_whole_split"]


def test_the_tokenizer_sample_does_not_depend_on_file_order(tmp_path):
    docs = KJV_DOCS[:120]
    for name, order in (("a.jsonl", docs), ("b.jsonl", docs[::-1])):
        (tmp_path / name).write_text("\n".join(json.dumps({"text": d}) for d in order))
    settings = dict(vocab_size=300, sample_documents=40, cache_dir=tmp_path / "cache")
    a = prepare(str(tmp_path / "a.jsonl"), **settings)
    b = prepare(str(tmp_path / "b.jsonl"), **settings)
    assert a.key != b.key  # other bytes
    assert a.meta["tokenizer_sample"] == b.meta["tokenizer_sample"]
    assert a.meta["split"]["corpus_sha256"] != b.meta["split"]["corpus_sha256"]
    vocab = [json.loads((p.path / "tokenizer.json").read_text())["model"]["vocab"] for p in (a, b)]
    assert vocab[0] == vocab[1]


def test_an_edited_corpus_is_a_new_entry_and_an_untouched_one_is_not_rehashed(
    tmp_path, monkeypatch
):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(KJV_DOCS[:50]))
    first = prepare(str(corpus), kind="byte", cache_dir=tmp_path / "cache")
    calls = []
    real = cache_key.content_sha256
    monkeypatch.setattr(cache_key, "content_sha256", lambda s: calls.append(s) or real(s))
    again = prepare(str(corpus), kind="byte", cache_dir=tmp_path / "cache")
    assert again.key == first.key and not again.built and calls == []
    corpus.write_text("\n\n".join(KJV_DOCS[:51]))
    edited = prepare(str(corpus), kind="byte", cache_dir=tmp_path / "cache")
    assert edited.built and edited.key != first.key and len(calls) == 1


def test_prepare_tokens_keeps_its_four_values(tmp_path):
    from core.training import TrainConfig

    config = TrainConfig(tokenizer={"kind": "byte"}, eval_tokens=1000, token_cache=str(tmp_path))
    split, tokenizer, train, val = prepare_tokens(config)
    assert split.describe()["corpus"] == "kjv" and tokenizer.vocab_size == 257
    assert isinstance(train, np.memmap)
    assert isinstance(val, np.ndarray) and val.dtype == np.int64 and len(val) == 1001


# VmHWM, not ru_maxrss: the latter survives exec, so a child of a big pytest process would
# report its parent's peak.
MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from workers.data.token_cache import prepare

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    base = status("VmRSS")
    started = time.perf_counter()
    prepared = prepare(sys.argv[1], kind=sys.argv[3], vocab_size=4096, cache_dir=sys.argv[2],
                       sample_bytes=int(sys.argv[4]))
    print(json.dumps({"growth": status("VmHWM") - base, "base": base,
                      "build_s": time.perf_counter() - started,
                      "train_tokens": prepared.meta["train_tokens"]}))
""")


def _generate_text(path: Path, target_bytes: int, seed: int = 0) -> int:
    """Paragraphs of Zipf-distributed pseudo-words, written in 4 MB pieces."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlucmfwypvbgkjqxz"))
    words = ["".join(rng.choice(letters, rng.integers(2, 9))) for _ in range(20_000)]
    written = 0
    with open(path, "w") as f:
        while written < target_bytes:
            ids = np.minimum(rng.zipf(1.2, 700_000), len(words)) - 1
            lengths = rng.integers(40, 400, len(ids) // 40)
            cuts = np.cumsum(lengths)
            cuts = cuts[cuts < len(ids)]
            paragraphs = [" ".join(words[i] for i in chunk) for chunk in np.split(ids, cuts)]
            block = "\n\n".join(paragraphs) + "\n\n"
            f.write(block)
            written += len(block)
    return path.stat().st_size


def _prepare_measured(corpus: Path, cache: Path, kind: str, sample_bytes: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(corpus), str(cache), kind, str(sample_bytes)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_preparing_a_50mb_corpus_keeps_memory_far_below_its_size(tmp_path):
    corpus = tmp_path / "big.txt"
    size = _generate_text(corpus, 50_000_000)
    measured = _prepare_measured(corpus, tmp_path / "cache", "byte", 1)
    print(f"50 MB corpus: {measured}")
    assert measured["train_tokens"] > 0.9 * size
    assert measured["growth"] < size / 3, measured  # tokens: 100 MB on disk, not in memory


@pytest.fixture(scope="module")
def gigabyte_corpus(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("huge") / "huge.txt"
    return corpus, _generate_text(corpus, 1_000_000_000)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("kind", ["byte", "bpe"])
def test_preparing_a_1gb_corpus_keeps_peak_memory_under_1gb(gigabyte_corpus, tmp_path, kind):
    corpus, size = gigabyte_corpus
    measured = _prepare_measured(corpus, tmp_path / "cache", kind, 32_000_000)
    print(f"1 GB corpus, {kind}: {measured}")
    assert measured["train_tokens"] > size / 8
    assert measured["growth"] < 1_000_000_000, measured
