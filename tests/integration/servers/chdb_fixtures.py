"""Embedded ClickHouse (chDB) fixtures: one engine directory per test session, one database per test.

Import into a conftest: `from tests.integration.servers.chdb_fixtures import chdb_client, chdb_path`.

What chDB 4.4 actually does (tests/integration/test_chdb_engine.py proves each point):
- The engine starts with the first open client (handle) and shuts down when the last one closes.
- While it runs, a process can open no other data directory, and the running engine holds an exclusive
  flock on `<dir>/status`, so no other process can open this directory either.
- Hence one directory per session, and no client left open between tests: each test gets its own database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest


def open_chdb(path: Path, database: str | None = None) -> Any:
    """An ordinary clickhouse-connect client on the embedded engine at `path`; the caller closes it."""
    return clickhouse_connect.get_client(interface="chdb", path=str(path), database=database)


def unique_database_name(prefix: str = "test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def chdb_client(chdb_path: Path) -> Iterator[Any]:
    """A client whose default database is a fresh one, dropped (and the client closed) after the test."""
    database = unique_database_name()
    admin = open_chdb(chdb_path)
    try:
        admin.command(f"CREATE DATABASE {database}")
        client = open_chdb(chdb_path, database)
    finally:
        # The new client keeps the engine running, so closing this one does not restart it.
        admin.close()
    try:
        yield client
    finally:
        try:
            client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        finally:
            client.close()
