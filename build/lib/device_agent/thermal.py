"""Thermal zones of a device (/sys/class/thermal) and waiting for cool-down.

Readings are `zone type -> °C`; kernels report millidegrees (most) or degrees (some), and
unused zones report nonsense (negative, or hundreds of degrees): those are dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from core.protocol import ThermalReading

# One shell line that prints "TYPE TEMP" per zone (works in Android's toybox sh and bash).
READ_ZONES = ("for z in /sys/class/thermal/thermal_zone*; do "
              "echo \"$(cat $z/type 2>/dev/null) $(cat $z/temp 2>/dev/null)\"; done")


def parse_zones(text: str) -> list[ThermalReading]:
    readings = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            value = float(parts[1])
        except ValueError:
            continue
        celsius = value / 1000 if abs(value) >= 200 else value
        if 0 < celsius < 150:
            readings.append(ThermalReading(zone=parts[0], celsius=round(celsius, 2)))
    return readings


def hottest(readings: list[ThermalReading]) -> float | None:
    return max((r.celsius for r in readings), default=None)


def wait_for_cooldown(read: Callable[[], list[ThermalReading]], limit_celsius: float,
                      max_wait_s: float = 300.0, poll_s: float = 5.0,
                      sleep: Callable[[float], None] = time.sleep) -> list[ThermalReading]:
    """Poll until the hottest zone is at or below the limit (or `max_wait_s` passed);
    returns the last readings, which go into the report as `thermal_before`."""
    deadline = time.monotonic() + max_wait_s
    readings = read()
    while (hot := hottest(readings)) is not None and hot > limit_celsius \
            and time.monotonic() < deadline:
        sleep(poll_s)
        readings = read()
    return readings
