"""The orchestrator tests' database: a fresh SQLite file per test, migrated to head."""

from __future__ import annotations

import pytest

from store.engine import make_engine, session_factory, upgrade


@pytest.fixture
def db(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()
