"""Devices: enrollment, token authentication, heartbeats, online state, drain/disable.

Device tokens are random and stored only as SHA-256 hashes; a token is looked up by its
hash and confirmed with a constant-time comparison.

A device row belongs to one physical device (`device_identity`: a phone's serial and board,
a host agent's name and model). Enrolling again gets the same row with a new token (the old
one stops working), so disabling sticks: while the row is disabled, enrollment is refused
until an admin enables it.

Ready to measure (`readiness`): active, online, not paused by a device error, and its agent's
last heartbeat did not report it unfit (the phone's preflight: runner missing or unusable,
storage full); each "not ready" comes with the reason and the fix, for `GET /devices`, the
dashboard and the warnings of jobs whose device class has no ready device.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.protocol import API_PREFIX as API
from store.models import Device, as_utc, utcnow

from . import Conflict, NotFound, SessionFactory, single_read, tasks, transaction

STATES = ("active", "draining", "disabled")
# Why an agent that enrolls, or sends its properties with a heartbeat, gets its device's
# leases taken back: it holds no task (it started, or its lease call's answer was lost).
AGENT_RESTARTED = (
    "the device's agent restarted or never got its lease's answer (it holds no task; "
    "a measurement in progress was lost)"
)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DeviceDisabled(PermissionError):
    """Enrollment of a device whose row an admin disabled."""

    def __init__(self, device_id: int):
        super().__init__(
            f"device {device_id} is disabled: an admin must enable device "
            f"{device_id} before it can enroll again"
        )
        self.device_id = device_id


def device_identity(name: str, properties: dict[str, Any]) -> str:
    """SHA-256 of what makes a device the same device: a phone's serial and board (its
    agent name may change), else the agent's name and device model (host agents)."""
    if properties.get("backend") == "adb" and properties.get("serial"):
        key = ["adb", properties["serial"], properties.get("board", "")]
    else:
        key = [properties.get("backend", ""), name, properties.get("model", "")]
    return hashlib.sha256("\x1f".join(key).encode()).hexdigest()


def enroll_device(
    sessions: SessionFactory, name: str, properties: dict[str, Any]
) -> tuple[Device, str]:
    """A new token for this device's row (created on its first enrollment), and the leases
    it held handed back uncounted (an agent that enrolls holds no task); raises
    DeviceDisabled while the row is disabled."""
    identity = device_identity(name, properties)
    for _ in range(2):  # a concurrent first enrollment of the same device: take its row
        token = secrets.token_urlsafe(32)
        try:
            with transaction(sessions) as s:
                device = s.scalar(
                    select(Device).where(Device.identity == identity).with_for_update()
                )
                if device is None:
                    device = Device(identity=identity, state="active")
                    s.add(device)
                elif device.state == "disabled":
                    raise DeviceDisabled(device.id)
                device.name, device.model = name, properties["model"]
                device.properties, device.token_hash = properties, token_hash(token)
                device.last_heartbeat_at = utcnow()
                s.flush()
                tasks.release_device_leases(s, device.id, AGENT_RESTARTED)
                return device, token
        except IntegrityError:
            continue
    raise RuntimeError(f"could not enroll device {name!r}: its row kept changing")


def authenticate_device(sessions: SessionFactory, token: str) -> Device | None:
    digest = token_hash(token)
    with single_read(sessions) as s:
        device = s.scalar(select(Device).where(Device.token_hash == digest))
        if device is None or not hmac.compare_digest(device.token_hash, digest):
            return None
        return device


def heartbeat_device(
    sessions: SessionFactory,
    device_id: int,
    properties: dict[str, Any] | None = None,
    readiness: dict[str, Any] | None = None,
) -> Device:
    """Mark the device alive and renew every lease it holds, in one transaction (a lab's
    heartbeats are half its requests; three transactions each queued on SQLite's one
    writer). With `properties` (an agent that started, or lost a lease call's answer: it
    holds no task), refresh what the agent read from the device and hand its leases back
    uncounted first; they must describe the same physical device (a Conflict otherwise,
    and nothing changes: that device must enroll on its own). With `readiness`, store the
    agent's preflight verdict. Tasks are locked before the device row, as fail_task does."""
    with transaction(sessions) as s:
        if properties is not None:
            tasks.release_device_leases(s, device_id, AGENT_RESTARTED)
        tasks.renew_leases(s, device_id)
        device = s.get(Device, device_id, with_for_update=properties is not None)
        if device is None:
            raise NotFound(f"device {device_id} not found")
        if properties is not None:
            if (
                device.identity is not None
                and device_identity(device.name, properties) != device.identity
            ):
                raise Conflict(
                    f"these properties describe another device than device "
                    f"{device_id} (serial, board or model differ): enroll it"
                )
            device.model, device.properties = properties["model"], properties
        if readiness is not None:
            device.readiness = readiness
        device.last_heartbeat_at = utcnow()
        return device


def is_online(device: Device, offline_after_s: float, now: datetime | None = None) -> bool:
    if device.last_heartbeat_at is None:
        return False
    return (now or utcnow()) - as_utc(device.last_heartbeat_at) <= timedelta(
        seconds=offline_after_s
    )


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str = ""
    fix: str = ""


def readiness(device: Device, offline_after_s: float, now: datetime | None = None) -> Readiness:
    """Can the device take a task now, and if not, why and what fixes it."""
    if device.state != "active":
        return Readiness(
            False,
            f"the device is {device.state}",
            f"an admin enables it: POST {API}/devices/{device.id}/enable",
        )
    if not is_online(device, offline_after_s, now):
        return Readiness(
            False,
            f"no heartbeat for over {offline_after_s:.0f} s",
            "start its agent (`tailor agent`) and check it reaches the server",
        )
    paused = device.pause()
    if paused is not None:
        return Readiness(
            False,
            f"paused until {paused[0].isoformat(timespec='seconds')} "
            f"after a device error: {paused[1] or 'no reason given'}",
            "fix what the error says; the agent checks the phone again and "
            "leases once the pause ends",
        )
    verdict = device.readiness or {}
    if verdict.get("ready") is False:
        return Readiness(
            False,
            verdict.get("reason") or "its agent reports it not ready",
            verdict.get("fix") or "see the agent's log",
        )
    return Readiness(True)


def fleet_readiness(
    sessions: SessionFactory, offline_after_s: float
) -> dict[str, list[tuple[Device, Readiness]]]:
    """Every enrolled device with its readiness, by device class."""
    fleet: dict[str, list[tuple[Device, Readiness]]] = {}
    now = utcnow()
    for device in list_devices(sessions):
        fleet.setdefault(device.model, []).append((device, readiness(device, offline_after_s, now)))
    return fleet


def list_devices(sessions: SessionFactory) -> list[Device]:
    with transaction(sessions) as s:
        return list(s.scalars(select(Device).order_by(Device.id)).all())


def set_device_state(sessions: SessionFactory, device_id: int, state: str) -> Device:
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}")
    with transaction(sessions) as s:
        device = s.get(Device, device_id)
        if device is None:
            raise NotFound(f"device {device_id} not found")
        device.state = state
        return device
