"""Shared route dependencies: the session factory and settings from app state.

They are `async` because they only read app state: FastAPI runs a plain `def` dependency
in a request thread, and under load every such hop waits for a free thread."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session, sessionmaker

from api.settings import Settings
from core.strict import ID_MAX


async def get_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

JobId = Annotated[int, Path(ge=1, le=ID_MAX, description="job id")]
CandidateId = Annotated[int, Path(ge=1, le=ID_MAX, description="candidate id")]
DeviceId = Annotated[int, Path(ge=1, le=ID_MAX, description="device id")]
TaskId = Annotated[int, Path(ge=1, le=ID_MAX, description="task id")]
