"""Devices: enrollment, token authentication, heartbeats, online state, drain/disable.

Device tokens are random and stored only as SHA-256 hashes; a token is looked up by its
hash and confirmed with a constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from store.models import Device, utcnow

from . import NotFound, SessionFactory, transaction

STATES = ("active", "draining", "disabled")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def enroll_device(sessions: SessionFactory, name: str,
                  properties: dict[str, Any]) -> tuple[Device, str]:
    token = secrets.token_urlsafe(32)
    with transaction(sessions) as s:
        device = Device(name=name, model=properties["model"], properties=properties,
                        token_hash=token_hash(token), state="active",
                        last_heartbeat_at=utcnow())
        s.add(device)
        s.flush()
        return device, token


def authenticate_device(sessions: SessionFactory, token: str) -> Device | None:
    digest = token_hash(token)
    with transaction(sessions) as s:
        device = s.scalar(select(Device).where(Device.token_hash == digest))
        if device is None or not hmac.compare_digest(device.token_hash, digest):
            return None
        return device


def heartbeat_device(sessions: SessionFactory, device_id: int) -> Device:
    with transaction(sessions) as s:
        device = s.get(Device, device_id)
        if device is None:
            raise NotFound(f"device {device_id} not found")
        device.last_heartbeat_at = utcnow()
        return device


def is_online(device: Device, offline_after_s: float, now: datetime | None = None) -> bool:
    if device.last_heartbeat_at is None:
        return False
    last = device.last_heartbeat_at
    if last.tzinfo is None:  # SQLite returns naive datetimes
        last = last.replace(tzinfo=timezone.utc)
    return (now or utcnow()) - last <= timedelta(seconds=offline_after_s)


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
