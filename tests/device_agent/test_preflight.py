"""The phone's preflight on the loopback phone: the runner is
there and answers `--help` as every supported release line does, the ABI fits, the work
folder has room; the agent leases nothing until it passes and re-checks with back-off; its
verdict (reason and fix) is what the heartbeats carry."""

from __future__ import annotations

import hashlib
import logging
import time

import pytest

from device_agent.adb_backend import Reconnector
from device_agent.defaults import DEFAULT_RUNNER, WORK_ROOT
from device_agent.failures import failure_kind
from device_agent.preflight import Preflight, PreflightFailed, readiness_of


def test_a_fit_phone_passes_with_every_release_line(phone, standin, runner_line):
    """Today's agent asked `-h` and looked for "usage": since 1.23 `-h` is an Abseil flag
    that does nothing, and the runner only says "See 'onnxruntime_perf_test --help'."."""
    check = Preflight(phone, DEFAULT_RUNNER, WORK_ROOT)
    assert check.problems() == []
    runner = standin.sandbox / "data/local/tmp/onnxruntime_perf_test"
    assert check.probe.parser == ("getopt" if runner_line == "1.20" else "abseil")
    assert check.probe.sha256 == hashlib.sha256(runner.read_bytes()).hexdigest()
    readiness = check.check()
    assert readiness.ready and readiness.runner.sha256 == check.probe.sha256
    assert readiness.runner.release_line == ("1.19-1.22" if runner_line == "1.20" else "1.23+")
    assert any(" --help 2>&1" in c for c in standin.commands)
    assert not any(" -h 2>&1" in c for c in standin.commands)


def test_the_onnxruntime_version_is_read_where_the_runner_folder_says_it(phone, standin):
    (standin.sandbox / "data/local/tmp/libonnxruntime.so.1.22.0").write_bytes(b"\x7fELF")
    check = Preflight(phone, DEFAULT_RUNNER, WORK_ROOT)
    assert check.problems() == [] and check.probe.onnxruntime_version == "1.22.0"


def test_each_problem_says_how_to_fix_it(phone, standin):
    check = Preflight(phone, DEFAULT_RUNNER, WORK_ROOT)
    standin.remove_runner()
    standin.set_free_storage(50 * 1024)
    with pytest.raises(PreflightFailed) as failed:
        check.check()
    message = str(failed.value)
    assert (
        f"{DEFAULT_RUNNER} is not on the phone: push the runner with `adb push "
        "onnxruntime_perf_test /data/local/tmp/` or start the agent with --runner PATH" in message
    )
    assert f"only 50 MB free in {WORK_ROOT} (need 200 MB)" in message
    assert failure_kind(failed.value) == "device"
    readiness = readiness_of(failed.value.problems, None)
    assert not readiness.ready and readiness.reason == (
        f"{DEFAULT_RUNNER} is not on the phone; only 50 MB free in {WORK_ROOT} (need 200 MB)"
    )
    assert readiness.fix.startswith("push the runner with `adb push onnxruntime_perf_test")


def test_a_runner_that_does_not_start_or_a_foreign_abi_is_refused(phone, standin):
    runner = standin.sandbox / "data/local/tmp/onnxruntime_perf_test"
    runner.chmod(0o644)  # pushed without chmod: the shell cannot execute it (exit 126)
    [problem] = Preflight(phone, DEFAULT_RUNNER, WORK_ROOT).problems()
    assert str(problem).startswith(
        f"{DEFAULT_RUNNER} does not answer `--help` as "
        "onnxruntime_perf_test 1.19 or newer does (exit 126"
    )
    assert "chmod 755" in problem.fix and f"adb shell {DEFAULT_RUNNER} --help" in problem.fix
    runner.chmod(0o755)
    getprop = standin.sandbox / "system/bin/getprop"
    getprop.write_text("#!/bin/sh\necho mips\n")
    [problem] = Preflight(phone, DEFAULT_RUNNER, WORK_ROOT).problems()
    assert str(problem).startswith("the phone's ABI is mips; the runner is built for arm64-v8a")


def test_no_lease_until_the_preflight_passes_then_rechecks_after_a_device_fault(
    phone, standin, caplog
):
    standin.remove_runner()
    ready = Reconnector(
        phone, max_backoff_s=0.2, preflight=Preflight(phone, DEFAULT_RUNNER, WORK_ROOT)
    )
    with caplog.at_level(logging.INFO, "tailor.agent"):
        assert ready() is False
        assert not ready.readiness.ready and "is not on the phone" in ready.readiness.reason
        assert ready() is False  # backing off: not even checked again
        assert "phone not ready to measure:" in caplog.text and "next try in 1 s" in caplog.text
        (standin.sandbox / "data/local/tmp/onnxruntime_perf_test").write_text(
            (standin.sandbox / "system/bin/taskset").read_text()
        )  # placeholder, no usage
        time.sleep(1.1)
        assert ready() is False  # present but does not run
        from .adb_standin import make_sandbox

        make_sandbox(standin.sandbox)  # pushed properly
        time.sleep(0.3)
        assert ready() is True
        assert "preflight passed" in caplog.text and ready.readiness.ready
        assert ready.readiness.runner.parser == "abseil"
    ready.device_failed()
    standin.remove_runner()
    assert ready() is False  # checked again before the next lease
