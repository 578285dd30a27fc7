"""`tailor arch ...` as a user runs it: a real subprocess, exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TAILOR = [sys.executable, "-m", "cli.main"]


def tailor(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TAILOR, *args], capture_output=True, text=True, input=stdin, timeout=300
    )


def test_presets_lists_every_preset():
    result = tailor("arch", "presets")
    assert result.returncode == 0, result.stderr
    for name in ("transformer++", "lfm2", "hyena-edge", "striped-hyena", "mobilellm"):
        assert name in result.stdout


def test_preset_with_llama_size_has_published_parameter_count(tmp_path):
    result = tailor(
        "arch",
        "preset",
        "transformer++",
        "--width",
        "2048",
        "--depth",
        "16",
        "--heads",
        "32",
        "--kv-heads",
        "8",
        "--ffn",
        "8192",
        "--vocab",
        "128256",
        "--tie",
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "llama.json"
    path.write_text(result.stdout)
    stats = tailor("arch", "stats", str(path), "--context", "1024")
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["params"] == 1_235_814_400
    # 16 layers x (K and V) x 8 KV heads x 64 dims x 1024 tokens x 2 bytes
    assert data["cache_bytes"] == 16 * 2 * 8 * 64 * 1024 * 2


def test_check_accepts_a_valid_genome_and_names_the_bad_gene(tmp_path):
    good = tailor("arch", "preset", "lfm2")
    path = tmp_path / "g.json"
    path.write_text(good.stdout)
    assert tailor("arch", "check", str(path)).returncode == 0
    data = json.loads(good.stdout)
    data["operators"]["attention"]["kv_heads"] = 3
    path.write_text(json.dumps(data))
    bad = tailor("arch", "check", str(path))
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0
    assert "operators.attention.kv_heads" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    "args,fragment",
    [
        (("arch", "check", "/nonexistent/genome.json"), "cannot read"),
        (("arch", "preset", "gpt5"), "unknown preset"),
        (("arch", "preset", "transformer++", "--heads", "3"), "operators.attention.heads"),
        # the option and the value given, not the genome field nor the depth it came to (0)
        (("arch", "preset", "transformer++", "--depth", "-1"), "'--depth'"),
        (("arch", "preset", "transformer++", "--depth", "257"), "'--depth'"),  # 514 slots
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragment):
    result = tailor(*args)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_check_reports_invalid_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    result = tailor("arch", "check", str(path))
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def fails_in_one_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2, one line on stderr naming the problem, no stack trace."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def unreadable_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Files no genome or job spec reader can take, and what the error says of each."""
    files = {
        "binary": (b"\xff\xfe", "is not UTF-8 text"),
        "long-int": (b"1" * 5000, "4300 digits"),
        "deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    }
    for name, (content, _) in files.items():
        (tmp_path / f"{name}.json").write_bytes(content)
    return {name: (tmp_path / f"{name}.json", why) for name, (_, why) in files.items()}


@pytest.mark.parametrize("command", ["check", "stats", "export"])
def test_unreadable_genome_files_are_one_line_errors_naming_the_file(tmp_path, command):
    for path, why in unreadable_files(tmp_path).values():
        extra = ("--out", str(tmp_path / "out")) if command == "export" else ()
        fails_in_one_line(tailor("arch", command, str(path), *extra), str(path), why)


def small_genome(tmp_path: Path) -> Path:
    genome = tailor(
        "arch", "preset", "transformer++", "--width", "32", "--depth", "1", "--heads", "2",
        "--kv-heads", "1", "--ffn", "64", "--vocab", "101",
    )  # fmt: skip
    assert genome.returncode == 0, genome.stderr
    (tmp_path / "g.json").write_text(genome.stdout)
    return tmp_path / "g.json"


def test_export_refuses_bad_out_weights_and_context_naming_them(tmp_path):
    import torch

    genome = str(small_genome(tmp_path))
    (tmp_path / "afile").write_text("")
    fails_in_one_line(
        tailor("arch", "export", genome, "--out", str(tmp_path / "afile")),
        "--out",
        "not a directory",
    )
    fails_in_one_line(
        tailor("arch", "export", genome, "--out", "/proc/tailor-nope"), "--out /proc/tailor-nope"
    )
    (tmp_path / "garbage.pt").write_bytes(b"garbage\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"nope.weight": torch.zeros(2)}, tmp_path / "keys.pt")
    for name, why in [
        ("garbage.pt", "not a state_dict"),
        ("empty.pt", "is empty"),
        ("list.pt", "holds a list"),
        ("keys.pt", "does not fit this genome"),
        ("missing.pt", "cannot read"),
    ]:
        weights = str(tmp_path / name)
        result = tailor(
            "arch", "export", genome, "--out", str(tmp_path / "o"), "--weights", weights
        )
        fails_in_one_line(result, f"--weights {weights}", why)
    # the longest context a profiling task may ask for (core.protocol.MAX_LENGTH) bounds it
    too_long = tailor(
        "arch", "export", genome, "--out", str(tmp_path / "o"), "--context", str((1 << 20) + 1)
    )
    assert too_long.returncode == 2 and "'--context'" in too_long.stderr
    assert "Traceback" not in too_long.stderr and not (tmp_path / "o").exists()


def test_export_writes_graphs_and_reports_the_difference(tmp_path):
    genome = tailor(
        "arch",
        "preset",
        "hyena-edge",
        "--width",
        "32",
        "--heads",
        "2",
        "--kv-heads",
        "1",
        "--ffn",
        "64",
        "--vocab",
        "101",
        "--depth",
        "3",
    ).stdout
    (tmp_path / "g.json").write_text(genome)
    out = tmp_path / "out"
    result = tailor("arch", "export", str(tmp_path / "g.json"), "--out", str(out), "--context", "8")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["max_abs_diff"] <= 1e-4  # rounding only: tests/workers/test_export.py TOL
    for name in ("prefill.onnx", "decode.onnx", "genome.json", "manifest.json"):
        assert (Path(out) / name).stat().st_size > 0
    assert not (Path(out) / "prefill_chunk.onnx").exists()  # only when asked
    chunked = tailor("arch", "export", str(tmp_path / "g.json"), "--out", str(out), "--chunk-graph")
    assert chunked.returncode == 0, chunked.stderr
    assert "prefill_chunk.onnx" in json.loads(chunked.stdout)["files"]
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    assert manifest["graphs"]["prefill_chunk"]["file"] == "prefill_chunk.onnx"
