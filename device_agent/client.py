"""HTTP client of the agent endpoints, speaking only the wire schemas in protocol.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from core.protocol import (
    API_PREFIX,
    ArtifactRef,
    DeviceProperties,
    DeviceReadiness,
    EnrollRequest,
    EnrollResponse,
    FailureReport,
    HeartbeatRequest,
    HeartbeatResponse,
    LeaseRequest,
    LeaseResponse,
    MeasurementReport,
    TaskAck,
    error_detail,
)


class ServerError(RuntimeError):
    """The server answered with an error; `status` is its HTTP status."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


class AgentClient:
    def __init__(self, server: str, token: str | None = None, timeout_s: float = 30.0):
        self.http = httpx.Client(base_url=server.rstrip("/"), timeout=timeout_s)
        self.token = token

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _post(self, path: str, body=None, timeout_s: float | None = None) -> dict:
        """`timeout_s`: this call's own limit (else the client's)."""
        response = self.http.post(
            API_PREFIX + path,
            headers=self._headers(),
            json=None if body is None else body.model_dump(mode="json"),
            **({} if timeout_s is None else {"timeout": timeout_s}),
        )
        if response.status_code >= 400:
            raise ServerError(response.status_code, error_detail(response.text))
        return response.json()

    def enroll(self, enroll_token: str, name: str, properties: DeviceProperties) -> EnrollResponse:
        data = self._post(
            "/devices/enroll",
            EnrollRequest(enroll_token=enroll_token, name=name, properties=properties),
        )
        return EnrollResponse.model_validate(data)

    def heartbeat(
        self,
        properties: DeviceProperties | None = None,
        readiness: DeviceReadiness | None = None,
        timeout_s: float | None = None,
    ) -> HeartbeatResponse:
        """`properties`: refresh what the server knows of the device (after a restart);
        `readiness`: the device's preflight verdict (shown as ready / not ready, and why);
        `timeout_s`: give up after this long (a beat stuck on a dead link is sent again)."""
        body = (
            HeartbeatRequest(properties=properties, readiness=readiness)
            if properties is not None or readiness is not None
            else None
        )
        answer = self._post("/devices/heartbeat", body, timeout_s)
        return HeartbeatResponse.model_validate(answer)

    def lease(self, lease_seconds: float | None = None) -> LeaseResponse:
        return LeaseResponse.model_validate(
            self._post("/tasks/lease", LeaseRequest(lease_seconds=lease_seconds))
        )

    def report(self, task_id: int, report: MeasurementReport) -> TaskAck:
        return TaskAck.model_validate(self._post(f"/tasks/{task_id}/report", report))

    def fail(self, task_id: int, reason: str | FailureReport, retryable: bool = True) -> TaskAck:
        report = (
            reason
            if isinstance(reason, FailureReport)
            else FailureReport(reason=reason, retryable=retryable)
        )
        return TaskAck.model_validate(self._post(f"/tasks/{task_id}/fail", report))

    def release(self, task_id: int) -> TaskAck:
        return TaskAck.model_validate(self._post(f"/tasks/{task_id}/release"))

    def download(self, artifact: ArtifactRef, folder: Path) -> Path:
        """Fetch an artifact unless a file with its checksum is already there."""
        path = folder / artifact.name
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == artifact.sha256:
            return path
        response = self.http.get(artifact.url, headers=self._headers())
        if response.status_code >= 400:
            raise ServerError(response.status_code, response.text[:500])
        if hashlib.sha256(response.content).hexdigest() != artifact.sha256:
            raise ServerError(502, f"{artifact.name}: checksum mismatch after download")
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(response.content)
        return path
