"""The engine refuses an SQLite library older than the statements the store sends."""

from __future__ import annotations

import sqlite3

import pytest

from store.engine import make_engine


def test_an_sqlite_too_old_for_the_lease_statement_is_refused(monkeypatch, tmp_path):
    """A lease is one UPDATE ... RETURNING, which SQLite has from 3.35: an older library
    would fail every lease call, so the engine refuses to start on it, naming both versions."""
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(RuntimeError, match=r"SQLite is 3\.34\.1; Tailor needs 3\.35\.0 or newer"):
        make_engine(f"sqlite:///{tmp_path / 'old.db'}")
