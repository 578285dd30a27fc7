"""Devices: enrollment with the operator's enrollment token, heartbeats, administration, and
whether each device is ready to measure (and if not, why and the fix).

Enrolling again (a lost token, an agent restarted) gives the same device row a new token
and hands back, uncounted, the leases it held; a disabled device is refused until an admin
enables it.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request

from api.auth import AdminDep, DeviceDep, digest
from api.guards import client_address
from api.schemas.public import DevicePublic
from core.protocol import (
    API_PREFIX,
    EnrollRequest,
    EnrollResponse,
    HeartbeatRequest,
    HeartbeatResponse,
)
from store import devices as store
from store.models import Device, utcnow

from .deps import DeviceId, SessionsDep, SettingsDep

router = APIRouter(prefix="/devices", tags=["devices"])


def device_public(device: Device, offline_after_s: float) -> DevicePublic:
    paused_until, paused_reason = device.pause() or (None, None)
    verdict = store.readiness(device, offline_after_s)
    return DevicePublic(
        id=device.id,
        name=device.name,
        model=device.model,
        state=device.state,
        online=store.is_online(device, offline_after_s),
        last_heartbeat_at=device.last_heartbeat_at,
        paused_until=paused_until,
        paused_reason=paused_reason,
        properties=device.properties,
        ready=verdict.ready,
        not_ready_reason=verdict.reason or None,
        fix=verdict.fix or None,
        runner=(device.readiness or {}).get("runner"),
    )


@router.post("/enroll", response_model=EnrollResponse, status_code=201)
def enroll(
    body: EnrollRequest, request: Request, sessions: SessionsDep, settings: SettingsDep
) -> EnrollResponse:
    expected = request.app.state.enroll_token_digest
    if expected is None:  # nothing to guess: no attempt to count
        raise HTTPException(403, "enrollment is closed: the server has no enrollment token")
    request.app.state.enroll_limiter.check(
        client_address(request, request.app.state.trusted_proxies)
    )
    if not hmac.compare_digest(digest(body.enroll_token), expected):
        raise HTTPException(403, "wrong enrollment token")
    try:
        device, token = store.enroll_device(sessions, body.name, body.properties.model_dump())
    except store.DeviceDisabled as exc:
        raise HTTPException(
            403, f"{exc} (POST {API_PREFIX}/devices/{exc.device_id}/enable)"
        ) from None
    return EnrollResponse(
        device_id=device.id, device_token=token, heartbeat_interval_s=settings.heartbeat_interval_s
    )


@router.post("/heartbeat", response_model=HeartbeatResponse)
def heartbeat(
    device: DeviceDep, sessions: SessionsDep, body: HeartbeatRequest | None = None
) -> HeartbeatResponse:
    """The device is alive: mark it online and renew every lease it holds; properties sent
    with it (an agent's first heartbeat after a restart, or after a lease call it got no
    answer to) replace the stored ones and hand back, uncounted, the leases its agent does
    not know of, and its readiness (the phone's preflight verdict) is what `GET /devices`
    shows. One transaction (store.devices.heartbeat_device)."""
    properties = body.properties.model_dump(mode="json") if body and body.properties else None
    readiness = body.readiness.model_dump(mode="json") if body and body.readiness else None
    device = store.heartbeat_device(sessions, device.id, properties, readiness)
    paused_until, paused_reason = device.pause() or (None, None)
    return HeartbeatResponse(
        device_id=device.id,
        state=device.state,
        server_time=utcnow(),
        paused_until=paused_until,
        paused_reason=paused_reason,
    )


@router.get("", response_model=list[DevicePublic])
def list_devices(sessions: SessionsDep, settings: SettingsDep) -> list[DevicePublic]:
    return [device_public(d, settings.offline_after_s) for d in store.list_devices(sessions)]


def _set_state(device_id: int, state: str, sessions, settings) -> DevicePublic:
    return device_public(
        store.set_device_state(sessions, device_id, state), settings.offline_after_s
    )


@router.post("/{device_id}/drain", response_model=DevicePublic)
def drain(
    device_id: DeviceId, sessions: SessionsDep, settings: SettingsDep, _: AdminDep
) -> DevicePublic:
    """Finish the current task, lease no new ones."""
    return _set_state(device_id, "draining", sessions, settings)


@router.post("/{device_id}/disable", response_model=DevicePublic)
def disable(
    device_id: DeviceId, sessions: SessionsDep, settings: SettingsDep, _: AdminDep
) -> DevicePublic:
    """Reject the device's token from now on."""
    return _set_state(device_id, "disabled", sessions, settings)


@router.post("/{device_id}/enable", response_model=DevicePublic)
def enable(
    device_id: DeviceId, sessions: SessionsDep, settings: SettingsDep, _: AdminDep
) -> DevicePublic:
    return _set_state(device_id, "active", sessions, settings)
