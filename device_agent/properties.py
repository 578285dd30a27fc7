"""What a device is: read from the host's /proc and /sys (the ADB backend reads the same
files on the phone, plus getprop)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from core.protocol import DeviceProperties
from core.wire_text import DEVICE_CLASS_MAX_CHARS


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
    return DeviceProperties(
        backend="host",
        model=model,
        manufacturer=platform.system(),
        soc=platform.processor() or platform.machine(),
        abi=platform.machine(),
        cpu_count=os.cpu_count() or 1,
        cpu_max_freq_khz=freqs,
        ram_bytes=ram,
        serial=platform.node(),
    )


# --------------------------------------------------------------------------- phones


def parse_getprop(text: str) -> dict[str, str]:
    """`getprop` prints `[key]: [value]` per line."""
    props = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and "]: [" in line and line.endswith("]"):
            key, _, value = line[1:-1].partition("]: [")
            props[key] = value
    return props


def parse_cpu_freqs(text: str) -> list[int]:
    """Lines `cpuN KHZ` (from PHONE_CPUFREQ) -> max kHz per CPU index (0 where unreadable)."""
    freqs: dict[int, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0].startswith("cpu") and parts[0][3:].isdigit():
            freqs[int(parts[0][3:])] = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return [freqs.get(i, 0) for i in range(max(freqs) + 1)] if freqs else []


def count_processors(cpuinfo: str) -> int:
    return sum(1 for line in cpuinfo.splitlines() if line.split(":")[0].strip() == "processor")


def parse_cpu_list(text: str) -> set[int] | None:
    """`/sys/devices/system/cpu/online` ("0-3,5,7") -> {0, 1, 2, 3, 5, 7}; None when
    unreadable (then every CPU with a frequency counts)."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            return None
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus or None


PHONE_ONLINE = "cat /sys/devices/system/cpu/online 2>/dev/null"
PHONE_CPUFREQ = (
    "for c in /sys/devices/system/cpu/cpu[0-9]*; do "
    'echo "${c##*/} $(cat $c/cpufreq/cpuinfo_max_freq 2>/dev/null)"; done'
)


def phone_class(model: str) -> str:
    """A phone's `ro.product.model` as a device class any job can name
    (core.wire_text.device_class_problem): control characters dropped, brackets made
    parentheses, spaces trimmed, cut to the length a class may have; "unknown" when nothing
    is left. The same model always gives the same class, so its phones share one."""
    text = "".join(c for c in model if c.isprintable())
    text = text.replace("[", "(").replace("]", ")").strip()[:DEVICE_CLASS_MAX_CHARS].strip()
    return text or "unknown"


def phone_properties(phone, thermal_zones: list[str] | None = None) -> DeviceProperties:
    """Read a phone's identity with getprop and /proc, /sys (over adb shell);
    `thermal_zones`: the zone types the agent watches (AdbBackend.watched_zones)."""
    props = parse_getprop(phone.shell("getprop"))
    freqs = parse_cpu_freqs(phone.shell(PHONE_CPUFREQ))
    cpus = count_processors(phone.shell("cat /proc/cpuinfo")) or len(freqs) or 1
    sdk = props.get("ro.build.version.sdk", "")
    return DeviceProperties(
        backend="adb",
        model=phone_class(props.get("ro.product.model", "")),
        manufacturer=props.get("ro.product.manufacturer", ""),
        soc=props.get("ro.soc.model")
        or props.get("ro.board.platform")
        or props.get("ro.hardware", ""),
        board=props.get("ro.product.board", ""),
        android_release=props.get("ro.build.version.release", ""),
        sdk=int(sdk) if sdk.isdigit() else None,
        abi=props.get("ro.product.cpu.abi", ""),
        cpu_count=cpus,
        cpu_max_freq_khz=freqs,
        ram_bytes=parse_meminfo(phone.shell("cat /proc/meminfo")),
        serial=props.get("ro.serialno", ""),
        thermal_zones=thermal_zones or [],
    )
