"""What a device is: read from the host's /proc and /sys (the ADB backend reads the same
files on the phone, plus getprop)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from .protocol import DeviceProperties


def parse_meminfo(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def host_properties(model: str = "host") -> DeviceProperties:
    freqs = []
    for path in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq")):
        try:
            freqs.append(int(path.read_text().strip()))
        except (OSError, ValueError):
            pass
    try:
        ram = parse_meminfo(Path("/proc/meminfo").read_text())
    except OSError:
        ram = 0
    return DeviceProperties(backend="host", model=model, manufacturer=platform.system(),
                            soc=platform.processor() or platform.machine(),
                            abi=platform.machine(), cpu_count=os.cpu_count() or 1,
                            cpu_max_freq_khz=freqs, ram_bytes=ram, serial=platform.node())
