"""Thermal zones of a device (/sys/class/thermal) and waiting for cool-down.

Readings are `zone type -> °C`; kernels report millidegrees (most) or degrees (some), and
unused zones report nonsense (negative, or hundreds of degrees): those are dropped.
The job sets the limit, the zones to watch and the longest wait (MeasurementSpec); the
agent's own settings (CoolingPolicy) can make the limit stricter and name the zones.

Zones are chosen by their `type`. When neither names any, only CPU/SoC zones are watched
(DEFAULT_ZONE_TYPES): on USB power a phone's PMIC, modem, charger or battery zones often sit
above 45 °C while its cores are cool, and watching them made every task wait the whole
cool-down and be marked hot. A phone with no such zone falls back to every zone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.protocol import MeasurementSpec, ThermalReading

log = logging.getLogger("tailor.agent.thermal")
POLL_S = 5.0  # between readings while waiting
LOG_EVERY_S = 30.0  # one progress line per this much waiting

# One shell line that prints "TYPE TEMP" per zone (works in Android's toybox sh and bash).
READ_ZONES = (
    "for z in /sys/class/thermal/thermal_zone*; do "
    'echo "$(cat $z/type 2>/dev/null) $(cat $z/temp 2>/dev/null)"; done'
)


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


# Zone types of CPU clusters and SoCs (Qualcomm cpu-0-0-0, cpuss-0; MediaTek mtktscpu,
# soc_max; Exynos and Tensor BIG, MID, LITTLE; others cluster0, soc_thermal).
DEFAULT_ZONE_TYPES = ("cpu", "soc", "cluster", "big", "mid", "little")


def watched(readings: list[ThermalReading], zones: list[str]) -> list[ThermalReading]:
    """The readings of the zones to watch: those whose type contains one of `zones`
    (case-insensitive); the CPU/SoC zones when `zones` is empty, or every zone when the
    phone has none of those."""
    default = not zones
    wanted = [z.lower() for z in (zones or DEFAULT_ZONE_TYPES)]
    found = [r for r in readings if any(w in r.zone.lower() for w in wanted)]
    return readings if default and not found else found


@dataclass(frozen=True)
class CoolingPolicy:
    """The agent's side: `limit_celsius` (stricter of it and the job's wins), `zones`
    (replace the job's when given), `timeout_s` (replaces the job's when given)."""

    limit_celsius: float | None = None
    zones: tuple[str, ...] = ()
    timeout_s: float | None = None

    def zones_on(self, readings: list[ThermalReading]) -> list[str]:
        """The zone types of this phone the agent watches when the job names none."""
        return sorted({r.zone for r in watched(readings, list(self.zones))})

    def resolve(self, spec: MeasurementSpec) -> tuple[float, list[str], float]:
        limit = (
            spec.cooldown_celsius
            if self.limit_celsius is None
            else min(spec.cooldown_celsius, self.limit_celsius)
        )
        zones = list(self.zones) or list(spec.thermal_zones)
        timeout = spec.cooldown_timeout_s if self.timeout_s is None else self.timeout_s
        return limit, zones, timeout


@dataclass
class Cooldown:
    readings: list[ThermalReading]  # every zone, at the end of the wait
    limit_celsius: float
    waited_s: float
    still_hot: bool  # a watched zone is above the limit after the wait

    def hot_zone(self, zones: list[str]) -> ThermalReading | None:
        return max(watched(self.readings, zones), key=lambda r: r.celsius, default=None)


def describe(reading: ThermalReading | None, limit: float) -> str:
    if reading is None:
        return "no readable thermal zone"
    return f"phone at {reading.celsius:.1f} °C (zone {reading.zone}) above {limit:.1f} °C"


def wait_for_cooldown(
    read: Callable[[], list[ThermalReading]],
    limit_celsius: float,
    zones: list[str] | None = None,
    max_wait_s: float = 600.0,
    poll_s: float = POLL_S,
    log_every_s: float = LOG_EVERY_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Cooldown:
    """Poll until every watched zone is at or below the limit (or `max_wait_s` passed),
    logging the hottest zone when the wait starts and every `log_every_s`."""
    zones = zones or []
    started = clock()
    readings = read()
    last_log = None
    while True:
        hot = max(watched(readings, zones), key=lambda r: r.celsius, default=None)
        waited = clock() - started
        if hot is None or hot.celsius <= limit_celsius:
            if last_log is not None:
                log.info(
                    "cooled down to %.1f °C (zone %s) after %.0f s",
                    hot.celsius if hot else float("nan"),
                    hot.zone if hot else "-",
                    waited,
                )
            return Cooldown(readings, limit_celsius, waited, still_hot=False)
        if waited >= max_wait_s:
            log.warning(
                "%s after waiting %.0f s of %.0f s",
                describe(hot, limit_celsius),
                waited,
                max_wait_s,
            )
            return Cooldown(readings, limit_celsius, waited, still_hot=True)
        if last_log is None or clock() - last_log >= log_every_s:
            log.info(
                "%s: cooling down, waited %.0f s of %.0f s",
                describe(hot, limit_celsius),
                waited,
                max_wait_s,
            )
            last_log = clock()
        sleep(min(poll_s, max(0.0, max_wait_s - waited)))
        readings = read()
