"""Shared route dependencies: the session factory and settings from app state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from api.settings import Settings


def get_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
