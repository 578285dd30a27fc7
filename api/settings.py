"""Service settings of the API: flags of `tailor serve` or TAILOR_* environment variables.

Where the data lives comes from `store.settings.StoreSettings`; this adds what only the
HTTP service needs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from api.guards import parse_proxies
from store.settings import StoreSettings


class Settings(StoreSettings):
    admin_key: str | None = None  # Bearer key for admin endpoints (else generated)
    enroll_token: str | None = None  # token phones enroll with
    lease_seconds: float = Field(default=300.0, gt=0, description="lease length by default")
    max_lease_seconds: float = Field(
        default=3600.0, gt=0, description="the longest lease an agent is granted"
    )
    max_leases_per_device: int = Field(
        default=1, ge=1, description="tasks one device may hold at once"
    )
    heartbeat_interval_s: float = 15.0
    offline_after_s: float = 60.0
    max_body_bytes: int = Field(default=1 << 20, ge=1)
    request_threads: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="threads that run the API's synchronous routes (anyio's default is 40): "
        "a lab's burst of lease calls is Python work under one interpreter lock, and 40 "
        "threads taking turns at it made each write-lock holder wait for its turns too",
    )
    enroll_attempts_per_minute: int = 10
    # Peers whose X-Forwarded-For is believed (IPs or networks; TAILOR_TRUSTED_PROXIES is a
    # comma-separated list). Empty: the rate limits count the TCP peer, whatever it says.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        parse_proxies(value)  # raises naming the field and the bad entry
        return [v.strip() for v in value]

    @model_validator(mode="after")
    def _lease_within_cap(self) -> "Settings":
        if self.lease_seconds > self.max_lease_seconds:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds}) must be at most "
                f"max_lease_seconds ({self.max_lease_seconds})"
            )
        return self
