"""Where the data lives: the database URL, the data folder and the artifact folder.

Flags of `tailor serve` / `tailor orchestrator` or TAILOR_* environment variables; the API's
settings (`api.settings.Settings`) extend these, so both services read one definition.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="SQLite file and artifacts")
    database_url: str | None = Field(default=None, description="default: SQLite in data_dir")
    artifact_dir: Path | None = None

    def uses_sqlite(self) -> bool:
        """SQLite: no URL (the file in data_dir) or a sqlite one; asks nothing of the disk."""
        return not self.database_url or self.database_url.startswith("sqlite")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'tailor.db').resolve()}"

    def resolved_artifact_dir(self) -> Path:
        path = self.artifact_dir or self.data_dir / "artifacts"
        path.mkdir(parents=True, exist_ok=True)
        return path
