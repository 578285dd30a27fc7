"""The REST client of Tailor's API, used by every `tailor` command that talks to a server and
by `tailor demo`. (The device agent keeps its own small client on the `core` protocol, so a
laptop beside a phone needs nothing from here.)

Errors come back as `ApiError` with the server's one-line `detail`, `Unreachable` when no
server answers, or `InvalidServer` when the server's URL is not one; the CLI turns each into
a one-line message and exit code 2.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from core.protocol import API_PREFIX, error_detail


class ApiError(RuntimeError):
    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


class Unreachable(RuntimeError):
    pass


class InvalidServer(ValueError):
    """The server's base URL is not a URL (httpx.InvalidURL's message)."""


class TailorClient:
    def __init__(self, server: str, admin_key: str | None = None, timeout_s: float = 60.0):
        self.server = server.rstrip("/")
        headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        try:
            self.http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout_s)
        except httpx.InvalidURL as exc:
            raise InvalidServer(str(exc)) from None

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        """`path` is under the API prefix, or a full path such as an artifact's URL."""
        url = path if path.startswith(API_PREFIX) else API_PREFIX + path
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.server}{url}: {exc}") from None
        if response.status_code >= 400:
            raise ApiError(response.status_code, error_detail(response.text))
        return response

    # ----------------------------------------------------------------- jobs and results

    def submit_job(self, spec: dict[str, Any], attempts: int = 3) -> dict[str, Any]:
        """Submit once, whatever happens to the answers: every attempt carries the same
        Idempotency-Key, so a retry after a lost response gets the job the first made."""
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        for attempt in range(attempts):
            try:
                return self._call("POST", "/jobs", json=spec, headers=headers).json()
            except Unreachable:
                if attempt == attempts - 1:
                    raise
            except ApiError as exc:
                if exc.status < 500 or attempt == attempts - 1:
                    raise
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def job(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}").json()

    def generations(self, job_id: int, since: int = 0) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}/generations", params={"since": since}).json()

    def pareto(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}/pareto").json()

    def scale(self, job_id: int, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/scale", json=request).json()

    def scale_result(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}/scale").json()

    def candidate(self, job_id: int, candidate_id: int) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}/candidates/{candidate_id}").json()

    def download(self, url: str) -> bytes:
        """An artifact, by the URL the candidate detail lists."""
        return self._call("GET", url).content

    # ----------------------------------------------------------------- the server

    def wait_until_up(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._call("GET", "/health")
                return
            except (Unreachable, ApiError):
                if time.monotonic() > deadline:
                    raise Unreachable(f"no API at {self.server} after {timeout_s:.0f}s") from None
                time.sleep(0.3)
