"""QuestDB fixtures: one real server for the whole session, and a unique table name per test.

Imported into `tests/integration/conftest.py`; the JDK and the server jar come from `scripts/setup.sh`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.integration.servers import session_server
from tickstrata.localstack.questdb import QuestDBServer


@pytest.fixture(scope="session")
def questdb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuestDBServer]:
    """A QuestDB on 127.0.0.1 and free ports, stopped at the end of the session whatever happened."""
    with session_server(QuestDBServer(tmp_path_factory.mktemp("questdb"))) as server:
        yield server


@pytest.fixture
def questdb_table(questdb_server: QuestDBServer) -> Iterator[str]:
    """A table name no other test uses (the server is shared by the session); the table is dropped after."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        questdb_server.exec_sql(f"DROP TABLE IF EXISTS {name}")
