"""A small bounded pool of PGWire connections to QuestDB, reused across calls (psycopg 3, no extra package).

At most `max_size` connections exist; a caller past that waits for one (the history RPCs admit at most
`QUERY_MAX_CONCURRENT_HISTORY_CALLS` calls, and the pool is one larger, so a call normally never waits). A
connection goes back to the pool only when the block that used it ended normally with the connection idle; after
an error, a cancellation or a read abandoned half-way it is closed instead, so the next caller connects afresh:
that is how the pool reconnects after QuestDB restarts. A connection idle in the pool may have died meanwhile; the
caller learns it from `Lease.reused` and may retry once on a new one (`hot_tier` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg.pq import TransactionStatus

CONNECT_TIMEOUT_SECS: Final = 5

logger = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[psycopg.AsyncConnection]]


@dataclass
class Lease:
    connection: psycopg.AsyncConnection
    reused: bool
    """True when the connection came from the pool (it may have died while idle)."""
    keep: bool = True
    """Set false to close the connection at the end of the block even when it ended normally."""


class PgPool:
    def __init__(self, dsn: str, *, max_size: int, connect: Connect | None = None) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be positive, got {max_size}")
        self.max_size = max_size
        self._dsn = dsn
        self._connect = connect or self._open
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots = asyncio.Semaphore(max_size)
        self._closed = False
        self.opened = 0
        """Connections opened since start (reuse shows as calls > opened)."""

    async def _open(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECS)

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Lease]:
        """A connection for the block; raises what connecting raises (`psycopg.Error`, `OSError`)."""
        if self._closed:
            raise psycopg.OperationalError("the QuestDB connection pool is closed")
        async with self._slots:
            reused = bool(self._idle)
            connection = self._idle.pop() if reused else await self._connect()
            if not reused:
                self.opened += 1
            lease = Lease(connection, reused)
            healthy = False
            try:
                yield lease
                healthy = lease.keep
            finally:
                if healthy and not self._closed and self._reusable(connection):
                    self._idle.append(connection)
                else:
                    await _close_quietly(connection)

    @staticmethod
    def _reusable(connection: psycopg.AsyncConnection) -> bool:
        return not connection.closed and connection.info.transaction_status == TransactionStatus.IDLE

    async def close(self) -> None:
        """Close the idle connections; leased ones are closed when their block ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await _close_quietly(connection)


async def _close_quietly(connection: psycopg.AsyncConnection) -> None:
    try:
        await connection.close()
    except (psycopg.Error, OSError) as error:
        logger.debug("closing a QuestDB connection failed", extra={"error": repr(error)})
