"""Service settings of the API: flags of `tailor serve` or TAILOR_* environment variables.

Where the data lives comes from `store.settings.StoreSettings`; this adds what only the
HTTP service needs.
"""

from __future__ import annotations

from store.settings import StoreSettings


class Settings(StoreSettings):
    admin_key: str | None = None  # Bearer key for admin endpoints (else generated)
    enroll_token: str | None = None  # token phones enroll with
    lease_seconds: float = 300.0
    heartbeat_interval_s: float = 15.0
    offline_after_s: float = 60.0
    max_body_bytes: int = 1 << 20
    enroll_attempts_per_minute: int = 10
