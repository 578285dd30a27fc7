"""`tailor train` and `tailor mad` as a user runs them."""

from __future__ import annotations

import json

from .test_arch_cli import fails_in_one_line, small_genome, tailor, unreadable_files


def test_train_prints_a_result_record(tmp_path):
    genome = tailor(
        "arch",
        "preset",
        "transformer++",
        "--width",
        "32",
        "--depth",
        "1",
        "--heads",
        "2",
        "--kv-heads",
        "1",
        "--ffn",
        "64",
        "--vocab",
        "257",
    ).stdout
    (tmp_path / "g.json").write_text(genome)
    result = tailor(
        "train",
        str(tmp_path / "g.json"),
        "--tokens",
        "60000",
        "--tokenizer",
        "byte",
        "--seq-len",
        "64",
        "--out",
        str(tmp_path / "w"),
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["status"] == "ok"
    assert record["perplexity"] < record["unigram_perplexity"]
    assert record["split"]["corpus"] == "kjv"
    assert (tmp_path / "w").exists() and record["weights_path"].startswith(str(tmp_path))


def test_train_rejects_bad_options_in_one_line(tmp_path):
    genome = tailor("arch", "preset", "mobilellm").stdout
    (tmp_path / "g.json").write_text(genome)
    for args, fragment in [
        (("--data", str(tmp_path / "none.txt")), "does not exist"),
        (("--tokenizer", "words"), "tokenizer.kind"),
        (("--tokenizer", "byte"), "vocab_size is 4096 but the byte"),
        (("--vocab", "8192"), "--vocab 8192 differs from the genome's"),
        (("--config", "{bad"), "--config is not valid JSON"),
        (("--config", "[1]"), "--config must be a JSON object"),
        (("--config", '"x"'), "--config must be a JSON object"),
        (("--config", "null"), "--config must be a JSON object"),
        (("--config", "1" * 5000), "--config is not valid JSON we can read"),
    ]:
        result = tailor("train", str(tmp_path / "g.json"), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert fragment in result.stderr and "Traceback" not in result.stderr


def test_mad_prints_per_task_and_mean_scores(tmp_path):
    genome = tailor(
        "arch",
        "preset",
        "hyena-edge",
        "--width",
        "32",
        "--depth",
        "1",
        "--heads",
        "2",
        "--kv-heads",
        "1",
        "--ffn",
        "64",
    ).stdout
    (tmp_path / "g.json").write_text(genome)
    result = tailor("mad", str(tmp_path / "g.json"), "--task", "memorization")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert set(record["accuracies"]) == {"memorization"}
    assert record["score"] == record["accuracies"]["memorization"]
    assert tailor("mad", str(tmp_path / "g.json"), "--task", "sudoku").returncode == 2


def test_train_and_mad_refuse_unreadable_genomes_and_bad_threads(tmp_path):
    for path, why in unreadable_files(tmp_path).values():
        for command in ("train", "mad"):
            fails_in_one_line(tailor(command, str(path)), str(path), why)
    genome = str(small_genome(tmp_path))
    for threads in ("0", "-1"):  # `train`'s bound (TrainConfig.threads), not torch's RuntimeError
        fails_in_one_line(tailor("mad", genome, "--threads", threads), f"--threads {threads}")
    # a negative seed failed every task inside the runner and scored them 0, exit code 0
    fails_in_one_line(tailor("mad", genome, "--seed", "-1"), "--seed -1")
    fails_in_one_line(tailor("mad", genome, "--eval-width", "7"), "eval_width 7", "global.width")
