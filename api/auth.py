"""Authentication: an admin key for job submission and device administration, device
tokens for agent endpoints. Keys are compared as SHA-256 digests in constant time and never
logged; the server keeps only digests of the configured admin key and enrollment token."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import threading
import time
from collections import defaultdict, deque
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.guards import mark_thread_start
from store import SessionFactory, enrollment_limit
from store import devices as device_store
from store.models import Device


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


# Declared in the OpenAPI schema (securitySchemes); the checks below read the header
# themselves so that every failure is our own 401/403 with its message.
ADMIN_KEY = HTTPBearer(
    scheme_name="AdminKey",
    auto_error=False,
    description="the server's admin key (TAILOR_ADMIN_KEY)",
)
DEVICE_TOKEN = HTTPBearer(
    scheme_name="DeviceToken",
    auto_error=False,
    description="the token a device got when it enrolled",
)
Credentials = HTTPAuthorizationCredentials | None


def require_admin(request: Request, _: Credentials = Security(ADMIN_KEY)) -> None:
    token = bearer(request)
    expected = request.app.state.admin_key_digest
    if token is None:
        raise HTTPException(
            401,
            "missing admin key: send Authorization: Bearer KEY",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(digest(token), expected):
        raise HTTPException(403, "wrong admin key")


def _usable_device(request: Request, token: str) -> Device | None:
    """The token's device, or None for an unknown token; a disabled device is a 403."""
    device = device_store.authenticate_device(request.app.state.sessions, token)
    if device is not None and device.state == "disabled":
        raise HTTPException(403, f"device {device.id} is disabled")
    return device


def require_device(request: Request, _: Credentials = Security(DEVICE_TOKEN)) -> Device:
    mark_thread_start()  # the device routes' first step in a worker thread
    token = bearer(request)
    if token is None:
        raise HTTPException(
            401,
            "missing device token: send Authorization: Bearer TOKEN",
            headers={"WWW-Authenticate": "Bearer"},
        )
    device = _usable_device(request, token)
    if device is None:
        raise HTTPException(403, "unknown device token")
    return device


def device_or_admin(
    request: Request,
    _a: Credentials = Security(ADMIN_KEY),
    _d: Credentials = Security(DEVICE_TOKEN),
) -> None:
    """The admin key, or the token of a device that is not disabled."""
    token = bearer(request)
    if token is None:
        raise HTTPException(401, "missing token: send Authorization: Bearer TOKEN")
    if hmac.compare_digest(digest(token), request.app.state.admin_key_digest):
        return
    if _usable_device(request, token) is None:
        raise HTTPException(403, "neither the admin key nor a device token")


class EnrollLimit:
    """At most `per_minute` enrollment attempts per client address in any minute, counted
    in the database by every server process alike (store/enrollment_limit.py). IPv6
    addresses count by their /64 (one host commonly holds all of one). Each process
    remembers the attempts it let through and the refusals the database gave, and refuses
    a client it knows to be over the limit without touching the database: a flood from
    one address costs no transaction each (on SQLite, the writes every lease and report
    queue behind)."""

    SWEEP_EVERY_S = 1.0  # forget expired addresses at most this often, once there are many
    SWEEP_AT = 4096  # addresses remembered before the expired ones are dropped

    def __init__(self, sessions: SessionFactory, per_minute: int):
        self.sessions, self.per_minute = sessions, per_minute
        self.passed: dict[str, deque[float]] = defaultdict(deque)
        self.blocked_until: dict[str, float] = {}
        self.lock = threading.Lock()
        self.swept_at = 0.0

    def check(self, client: str) -> None:
        key, now = limit_key(client), time.monotonic()
        with self.lock:
            window = self.passed[key]
            while window and now - window[0] > enrollment_limit.WINDOW_S:
                window.popleft()
            if len(window) >= self.per_minute:
                wait = enrollment_limit.WINDOW_S - (now - window[0])
            else:
                wait = self.blocked_until.get(key, now) - now
            if len(self.passed) + len(self.blocked_until) > self.SWEEP_AT:
                self._sweep(now)
        if wait <= 0:
            wait = enrollment_limit.take_attempt(self.sessions, key, self.per_minute)
            with self.lock:
                if wait is None:
                    self.passed[key].append(now)
                else:
                    self.blocked_until[key] = now + wait
        if wait is not None:
            raise HTTPException(
                429,
                "too many enrollment attempts; try again in a minute",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def _sweep(self, now: float) -> None:
        if now - self.swept_at < self.SWEEP_EVERY_S:
            return
        self.swept_at = now
        for key in [
            k for k, w in self.passed.items() if not w or now - w[-1] > enrollment_limit.WINDOW_S
        ]:
            del self.passed[key]
        for key in [k for k, until in self.blocked_until.items() if until <= now]:
            del self.blocked_until[key]


def limit_key(client: str) -> str:
    """What the enrollment limit counts: the address, an IPv6 one as its /64."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client  # not an address (a test client's name): itself
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


AdminDep = Annotated[None, Depends(require_admin)]
DeviceDep = Annotated[Device, Depends(require_device)]
ArtifactReaderDep = Annotated[None, Depends(device_or_admin)]
