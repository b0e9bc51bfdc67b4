"""Redis fixtures: one real server for the whole session, and a client per test that leaves it empty.

Imported into `tests/integration/conftest.py`; the server binary comes from `scripts/setup.sh`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.integration.servers import session_server
from tickstrata.localstack.redis import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A `redis-server` on 127.0.0.1 and a free port, stopped at the end of the session whatever happened."""
    with session_server(RedisServer(tmp_path_factory.mktemp("redis"))) as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A synchronous client with bytes replies (stream payloads are binary); FLUSHALL after the test."""
    client = redis.Redis.from_url(redis_server.url, socket_timeout=10.0)
    try:
        yield client
    finally:
        try:
            # The server is shared by the session: whatever a test wrote must not leak into the next one.
            client.flushall()
        finally:
            client.close()
