"""Is the phone fit to measure? Checked at start-up, after a reconnect and after a device
failure, before the agent leases anything: the runner is on the phone, starts and answers
`--help` as a supported onnxruntime_perf_test does (runner_probe.py), the phone's ABI is
one the runner is built for, and the work folder has free storage.

Each problem comes with how to fix it; `check` raises PreflightFailed (a DeviceError)
listing them all, and `readiness()` is what the agent's heartbeats tell the server, so the
dashboard shows why a phone measures nothing.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import NamedTuple

from core.protocol import DeviceReadiness

from .defaults import MIN_FREE_MB
from .failures import DeviceError
from .runner_errors import RUNNER_NOT_RUNNABLE
from .runner_probe import (
    RunnerProbe,
    help_command,
    parse_help,
    parse_version,
    split_status,
    version_command,
)

SUPPORTED_ABIS = ("arm64-v8a", "x86_64")  # what the README's runner build targets


class Problem(NamedTuple):
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}: {self.fix}"


class PreflightFailed(DeviceError):
    """The phone cannot measure until someone fixes what the message lists."""

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


def readiness_of(problems: list[Problem], probe: RunnerProbe | None) -> DeviceReadiness:
    return DeviceReadiness(
        ready=not problems,
        reason="; ".join(p.what for p in problems)[:2000],
        fix="; ".join(p.fix for p in problems)[:2000],
        runner=probe.identity() if probe and not problems else None,
    )


@dataclass
class Preflight:
    phone: object  # adb_device.Phone
    runner: str
    work_root: str
    min_free_mb: float = MIN_FREE_MB
    probe: RunnerProbe | None = field(default=None, init=False)

    def problems(self) -> list[Problem]:
        found = []
        abi = self.phone.shell("getprop ro.product.cpu.abi").strip()
        if abi and abi not in SUPPORTED_ABIS:
            found.append(
                Problem(
                    f"the phone's ABI is {abi}; the runner is built for "
                    f"{' or '.join(SUPPORTED_ABIS)}",
                    f"build onnxruntime_perf_test with --android_abi {abi}",
                )
            )
        found += self.runner_problems(abi or SUPPORTED_ABIS[0])
        free_mb = self.free_mb()
        if free_mb is not None and free_mb < self.min_free_mb:
            found.append(
                Problem(
                    f"only {free_mb:.0f} MB free in {self.work_root} (need "
                    f"{self.min_free_mb:.0f} MB)",
                    f"free storage on the phone, or delete old graphs with "
                    f"`adb shell rm -r {self.work_root}`",
                )
            )
        return found

    def runner_problems(self, abi: str) -> list[Problem]:
        """Nothing when the runner answers `--help` as a supported line does (and then
        `self.probe` says which build it is)."""
        self.probe = None
        runner = shlex.quote(self.runner)
        if self.phone.shell(f"[ -e {runner} ] && echo yes || echo no").strip() != "yes":
            return [
                Problem(
                    f"{self.runner} is not on the phone",
                    f"push the runner with `adb push onnxruntime_perf_test "
                    f"{PurePosixPath(self.runner).parent}/` or start the agent with "
                    f"--runner PATH (device_agent/README.md says how to build it)",
                )
            ]
        body, status = split_status(self.phone.shell(help_command(self.runner)))
        probe = parse_help(body) if status not in RUNNER_NOT_RUNNABLE else None
        if probe is None:
            tail = " ".join(body.split())[-300:]
            return [
                Problem(
                    f"{self.runner} does not answer `--help` as onnxruntime_perf_test "
                    f"1.19 or newer does (exit {status}: {tail or 'no output'})",
                    f"`adb shell chmod 755 {self.runner}`, push libonnxruntime.so "
                    f"beside it, check it was built for {abi}, and check it with "
                    f"`adb shell {self.runner} --help` (device_agent/README.md)",
                )
            ]
        sums = self.phone.sha256([self.runner])
        version = parse_version(self.phone.shell(version_command(self.runner)))
        self.probe = RunnerProbe(probe.parser, probe.providers, sums.get(self.runner), version)
        return []

    def free_mb(self) -> float | None:
        out = self.phone.shell(
            f"mkdir -p {shlex.quote(self.work_root)} && "
            f"df -k {shlex.quote(self.work_root)} 2>/dev/null"
        )
        for line in reversed(out.strip().splitlines()):
            parts = line.split()
            if len(parts) >= 4 and parts[3].isdigit():
                return int(parts[3]) / 1024
        return None  # no df on this phone: nothing to say

    def check(self) -> DeviceReadiness:
        """The readiness when the phone passes; PreflightFailed listing what to fix."""
        found = self.problems()
        if found:
            raise PreflightFailed(found)
        return readiness_of([], self.probe)
