"""Shared route dependencies: the session factory and settings from app state.

They are `async` because they only read app state: FastAPI runs a plain `def` dependency
in a request thread, and under load every such hop waits for a free thread."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session, sessionmaker

from api.settings import Settings


async def get_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

MAX_ID = 2**31 - 1  # ids are 32-bit integers in PostgreSQL
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="job id")]
CandidateId = Annotated[int, Path(ge=1, le=MAX_ID, description="candidate id")]
DeviceId = Annotated[int, Path(ge=1, le=MAX_ID, description="device id")]
TaskId = Annotated[int, Path(ge=1, le=MAX_ID, description="task id")]
