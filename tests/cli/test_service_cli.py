"""`tailor serve`, `tailor submit`, `tailor orchestrator --once`, `tailor status` and
`tailor export` together, as separate processes talking over HTTP and the database."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .test_arch_cli import fails_in_one_line, tailor, unreadable_files

SPEC = """
name: cli
objectives: [perplexity, params]
search_space: {widths: [32], depth_min: 2, depth_max: 3, vocab_size: 257}
evolution: {population: 3, generations: 1}
training: {tokens: 3000, seq_len: 32, tokenizer: {kind: byte}}
"""


@pytest.fixture
def server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(TAILOR_ADMIN_KEY="k3y", TAILOR_DATA_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{url}/api/v1/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield url, env
    proc.terminate()
    proc.wait(timeout=30)


def run_orchestrator(env: dict) -> None:
    """`tailor orchestrator --once`: runs every queued job, then exits."""
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "orchestrator", "--once", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parents[2],
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_submit_run_status_export(server, tmp_path):
    url, env = server
    (tmp_path / "spec.yaml").write_text(SPEC)
    os.environ.update(TAILOR_SERVER=url, TAILOR_ADMIN_KEY="k3y")
    try:
        submitted = tailor("submit", str(tmp_path / "spec.yaml"))
        assert submitted.returncode == 0, submitted.stderr
        job_id = json.loads(submitted.stdout)["id"]
        run_orchestrator(env)
        status = json.loads(tailor("status", str(job_id)).stdout)
        assert status["status"] == "completed" and status["pareto"]
        candidate = status["pareto"][0]["id"]
        exported = tailor("export", str(job_id), str(candidate), "--out", str(tmp_path / "x"))
        assert exported.returncode == 0, exported.stderr
        files = set(json.loads(exported.stdout)["files"])
        assert {"genome.json", "weights.pt", "decode.onnx", "manifest.json"} <= files
        # the scale-up check: best front members and the presets, larger, trained longer
        scaled = tailor(
            "scale", str(job_id), "--top", "2", "--width", "64", "--depth", "4", "--tokens", "4000"
        )
        assert scaled.returncode == 0, scaled.stderr
        scale_id = json.loads(scaled.stdout)["id"]
        run_orchestrator(env)
        result = httpx.get(f"{url}/api/v1/jobs/{scale_id}/scale").json()
        assert result["status"] == "completed" and result["source_job"] == job_id
        report = result["report"]
        members = report["members"]
        assert len(members) >= 2 and report["compared"] == len(members)
        assert all(m["scaled_perplexity"] > 1 and m["params"] > 0 for m in members)
        assert report["kendall_tau"] is None or -1 <= report["kendall_tau"] <= 1
        detail = httpx.get(
            f"{url}/api/v1/jobs/{scale_id}/candidates/{members[0]['candidate']}"
        ).json()
        assert detail["genome"]["global"]["width"] == 64
        assert len(detail["genome"]["backbone"]) == 4
        not_done = tailor("scale", str(scale_id + 1))
        assert not_done.returncode == 2 and "not found" in not_done.stderr
        int8 = tailor(
            "export",
            str(job_id),
            str(candidate),
            "--out",
            str(tmp_path / "q"),
            "--precision",
            "int8",
        )
        assert int8.returncode == 0, int8.stderr
        assert {"prefill.int8.onnx", "decode.int8.onnx", "manifest.int8.json"} <= set(
            json.loads(int8.stdout)["files"]
        )

        bad = tailor("submit", str(tmp_path / "spec.yaml"), "--admin-key", "wrong")
        assert bad.returncode == 2 and "HTTP 403" in bad.stderr
        (tmp_path / "bad.yaml").write_text(SPEC.replace("perplexity", "latency"))
        invalid = tailor("submit", str(tmp_path / "bad.yaml"))
        assert invalid.returncode == 2 and "unknown metric" in invalid.stderr
    finally:
        os.environ.pop("TAILOR_SERVER", None)
        os.environ.pop("TAILOR_ADMIN_KEY", None)


def test_bad_specs_out_and_server_fail_in_one_line_before_any_request(tmp_path):
    """Nothing listens at the --server given: each error is found before a request is made."""
    nowhere = ("--server", "http://127.0.0.1:9")
    for path, why in unreadable_files(tmp_path).values():
        fails_in_one_line(tailor("submit", str(path), *nowhere), str(path), why)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "nan.yaml").write_text(SPEC.replace("population: 3", "population: 3, seed: .nan"))
    (tmp_path / "date.yaml").write_text(SPEC.replace("name: cli", "name: 2020-01-01"))
    (tmp_path / "nan.json").write_text('{"name": "x", "evolution": {"seed": NaN}}')
    (tmp_path / "baddate.yaml").write_text(SPEC.replace("name: cli", "name: 2020-13-45"))
    (tmp_path / "badint.yaml").write_text(SPEC.replace("name: cli", "name: !!int abc"))
    (tmp_path / "long.yaml").write_text(SPEC.replace("population: 3", "population: " + "1" * 5000))
    for name, why in [
        ("binary.yaml", "is not UTF-8 text"),
        ("empty.yaml", "is empty"),
        ("nan.yaml", "evolution.seed is nan"),
        ("date.yaml", "name is a date"),
        ("nan.json", "evolution.seed is nan"),
        ("baddate.yaml", "is not valid YAML we can read: month must be in 1..12"),
        ("badint.yaml", "is not valid YAML we can read"),
        ("long.yaml", "is not valid YAML we can read: Exceeds the limit"),
    ]:
        fails_in_one_line(tailor("submit", str(tmp_path / name), *nowhere), name, why)
    (tmp_path / "afile").write_text("")
    fails_in_one_line(
        tailor("export", "1", "1", "--out", str(tmp_path / "afile"), *nowhere),
        "--out",
        "not a directory",
    )
    fails_in_one_line(
        tailor("export", "1", "1", "--out", "/proc/tailor-nope", *nowhere),
        "--out /proc/tailor-nope",
    )
    fails_in_one_line(
        tailor("status", "1", "--server", "http://[::1"),
        "--server 'http://[::1' is not a valid URL",
    )


@pytest.mark.parametrize(
    "variable,value,fragment",
    [
        ("TAILOR_LEASE_SECONDS", "abc", "TAILOR_LEASE_SECONDS"),
        ("TAILOR_LEASE_SECONDS", "99999", "lease_seconds (99999.0) must be at most"),
        ("TAILOR_TRUSTED_PROXIES", "garbage", "TAILOR_TRUSTED_PROXIES"),
        ("TAILOR_MAX_BODY_BYTES", "0", "TAILOR_MAX_BODY_BYTES"),
    ],
)
def test_serve_names_a_bad_setting(tmp_path, monkeypatch, variable, value, fragment):
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(variable, value)
    fails_in_one_line(tailor("serve", "--port", "0"), fragment)


def test_serve_with_workers_on_sqlite_is_refused_before_touching_the_data_dir(tmp_path):
    data = tmp_path / "a-file"
    data.write_text("")
    result = tailor("serve", "--workers", "2", "--data-dir", str(data))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: --workers 2 needs PostgreSQL"), result.stderr


@pytest.mark.parametrize("port", ["-1", "70000"])
def test_serve_refuses_a_port_out_of_range(port):
    result = tailor("serve", "--port", port)
    assert result.returncode == 2 and "'--port'" in result.stderr
    assert "Traceback" not in result.stderr
