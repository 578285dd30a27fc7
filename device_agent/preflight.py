"""Is the phone fit to measure? Checked at start-up, after a reconnect and after a device
failure, before the agent leases anything: the runner is on the phone and starts, the
phone's ABI is one the runner is built for, and the work folder has free storage.

Each problem comes with how to fix it; `check` raises PreflightFailed (a DeviceError)
listing them all.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

from .defaults import MIN_FREE_MB
from .failures import DeviceError

SUPPORTED_ABIS = ("arm64-v8a", "x86_64")   # what the README's runner build targets
RUNNER_NOT_RUNNABLE = (126, 127)   # the shell's "cannot execute" / "not found" statuses


class PreflightFailed(DeviceError):
    """The phone cannot measure until someone fixes what the message lists."""


@dataclass
class Preflight:
    phone: object                      # adb_device.Phone
    runner: str
    work_root: str
    min_free_mb: float = MIN_FREE_MB

    def problems(self) -> list[str]:
        found = []
        abi = self.phone.shell("getprop ro.product.cpu.abi").strip()
        if abi and abi not in SUPPORTED_ABIS:
            found.append(f"the phone's ABI is {abi}; the runner is built for "
                         f"{' or '.join(SUPPORTED_ABIS)} (build onnxruntime_perf_test with "
                         f"--android_abi {abi})")
        found += self.runner_problems(abi or SUPPORTED_ABIS[0])
        free_mb = self.free_mb()
        if free_mb is not None and free_mb < self.min_free_mb:
            found.append(f"only {free_mb:.0f} MB free in {self.work_root} (need "
                         f"{self.min_free_mb:.0f} MB): free storage on the phone, or delete "
                         f"old graphs with `adb shell rm -r {self.work_root}`")
        return found

    def runner_problems(self, abi: str) -> list[str]:
        runner = shlex.quote(self.runner)
        push = (f"push the runner with `adb push onnxruntime_perf_test "
                f"{PurePosixPath(self.runner).parent}/` or start the agent with "
                f"--runner PATH (device_agent/README.md says how to build it)")
        if self.phone.shell(f"[ -e {runner} ] && echo yes || echo no").strip() != "yes":
            return [f"{self.runner} is not on the phone: {push}"]
        libs = shlex.quote(str(PurePosixPath(self.runner).parent))
        out = self.phone.shell(f"LD_LIBRARY_PATH={libs} {runner} -h 2>&1; echo \"@@rc=$?\"")
        body, _, rc = out.rstrip().rpartition("@@rc=")
        status = int(rc) if rc.strip().isdigit() else -1
        if status in RUNNER_NOT_RUNNABLE or "usage" not in body.lower():
            tail = " ".join(body.split())[-300:]
            return [f"{self.runner} does not start on the phone (exit {status}: {tail}); "
                    f"`adb shell chmod 755 {self.runner}`, push libonnxruntime.so beside it, "
                    f"and check it was built for {abi}"]
        return []

    def free_mb(self) -> float | None:
        out = self.phone.shell(f"mkdir -p {shlex.quote(self.work_root)} && "
                               f"df -k {shlex.quote(self.work_root)} 2>/dev/null")
        for line in reversed(out.strip().splitlines()):
            parts = line.split()
            if len(parts) >= 4 and parts[3].isdigit():
                return int(parts[3]) / 1024
        return None   # no df on this phone: nothing to say

    def check(self) -> None:
        found = self.problems()
        if found:
            raise PreflightFailed("; ".join(found))
