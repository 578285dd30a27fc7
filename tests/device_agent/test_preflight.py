"""The phone's preflight (issue #13 point 5) on the loopback phone: the runner is there and
starts, the ABI fits, the work folder has room; the agent leases nothing until it passes
and re-checks with back-off."""

from __future__ import annotations

import logging
import time

import pytest

from device_agent.adb_backend import Reconnector
from device_agent.defaults import DEFAULT_RUNNER, WORK_ROOT
from device_agent.failures import failure_kind
from device_agent.preflight import Preflight, PreflightFailed


def test_a_fit_phone_passes(phone):
    assert Preflight(phone, DEFAULT_RUNNER, WORK_ROOT).problems() == []


def test_each_problem_says_how_to_fix_it(phone, standin):
    check = Preflight(phone, DEFAULT_RUNNER, WORK_ROOT)
    standin.remove_runner()
    standin.set_free_storage(50 * 1024)
    with pytest.raises(PreflightFailed) as failed:
        check.check()
    message = str(failed.value)
    assert f"{DEFAULT_RUNNER} is not on the phone: push the runner with `adb push " \
           "onnxruntime_perf_test /data/local/tmp/` or start the agent with --runner PATH" \
        in message
    assert f"only 50 MB free in {WORK_ROOT} (need 200 MB)" in message
    assert failure_kind(failed.value) == "device"


def test_a_runner_that_does_not_start_or_a_foreign_abi_is_refused(phone, standin):
    runner = standin.sandbox / "data/local/tmp/onnxruntime_perf_test"
    runner.chmod(0o644)   # pushed without chmod: the shell cannot execute it (exit 126)
    [problem] = Preflight(phone, DEFAULT_RUNNER, WORK_ROOT).problems()
    assert "does not start on the phone (exit 126" in problem and "chmod 755" in problem
    runner.chmod(0o755)
    getprop = standin.sandbox / "system/bin/getprop"
    getprop.write_text("#!/bin/sh\necho mips\n")
    [problem] = Preflight(phone, DEFAULT_RUNNER, WORK_ROOT).problems()
    assert problem.startswith("the phone's ABI is mips; the runner is built for arm64-v8a")


def test_no_lease_until_the_preflight_passes_then_rechecks_after_a_device_fault(
        phone, standin, caplog):
    standin.remove_runner()
    ready = Reconnector(phone, max_backoff_s=0.2,
                        preflight=Preflight(phone, DEFAULT_RUNNER, WORK_ROOT))
    with caplog.at_level(logging.INFO, "tailor.agent"):
        assert ready() is False
        assert ready() is False                     # backing off: not even checked again
        assert "phone not ready to measure:" in caplog.text and "next try in 1 s" in caplog.text
        (standin.sandbox / "data/local/tmp/onnxruntime_perf_test").write_text(
            (standin.sandbox / "system/bin/taskset").read_text())   # placeholder, no usage
        time.sleep(1.1)
        assert ready() is False                     # present but does not run
        from .adb_standin import make_sandbox
        make_sandbox(standin.sandbox)               # pushed properly
        time.sleep(0.3)
        assert ready() is True
        assert "preflight passed" in caplog.text
    ready.device_failed()
    standin.remove_runner()
    assert ready() is False                         # checked again before the next lease
