"""Service settings: flags of `tailor serve` or TAILOR_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="SQLite file and artifacts")
    database_url: str | None = Field(default=None, description="default: SQLite in data_dir")
    admin_key: str | None = Field(default=None, description="Bearer key for admin endpoints")
    enroll_token: str | None = Field(default=None, description="token phones enroll with")
    artifact_dir: Path | None = None
    lease_seconds: float = 300.0
    heartbeat_interval_s: float = 15.0
    offline_after_s: float = 60.0
    max_body_bytes: int = 1 << 20
    enroll_attempts_per_minute: int = 10

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'tailor.db').resolve()}"

    def resolved_artifact_dir(self) -> Path:
        path = self.artifact_dir or self.data_dir / "artifacts"
        path.mkdir(parents=True, exist_ok=True)
        return path
