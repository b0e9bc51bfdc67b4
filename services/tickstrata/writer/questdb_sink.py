"""The writer's QuestDB edge: DDL and health over REST `/exec` and `/ping`, rows over ILP/HTTP.

Rows go as one DataFrame per table (`Sender.dataframe`: the client serializes whole columns in C, without a
Python call per row). One ILP/HTTP flush per table: QuestDB commits a request as one transaction only when it
holds a single table's rows, so a failure never leaves half a batch acknowledged as a whole. A flush answering
200 means the rows are committed to the WAL, not yet applied; a table whose WAL apply failed is *suspended* and
would hide every later row, so the writer checks `wal_tables()` before acknowledging (the rows stay pending
until an operator resumes it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from questdb import Sender

from tickstrata.writer.frames import TableFrame
from tickstrata.writer.tables import TIMESTAMP_COLUMN, create_table_statements

logger = logging.getLogger(__name__)

REST_TIMEOUT_SECS: Final = 10.0
# Retries belong to the consumer loop (the stream is the buffer); the client's own 10 s retry would only hide
# an outage inside one call and delay a stop request.
ILP_RETRY_TIMEOUT_MS: Final = 0
ILP_REQUEST_TIMEOUT_MS: Final = 30_000


class QuestDBError(RuntimeError):
    """QuestDB refused a statement or a table is not healthy; the batch must not be acknowledged."""


def ilp_conf(http_url: str) -> str:
    """`http://host:port` → the `questdb` client's configuration string, auto-flush off (we flush per table)."""
    scheme, _, address = http_url.partition("://")
    protocol = "https" if scheme == "https" else "http"
    return (
        f"{protocol}::addr={address.rstrip('/')};auto_flush=off;retry_timeout={ILP_RETRY_TIMEOUT_MS};"
        f"request_timeout={ILP_REQUEST_TIMEOUT_MS};"
    )


@dataclass(frozen=True, slots=True)
class TableWrite:
    """One table's transaction as it happened: the write span of every traced entry in it uses these times."""

    table: str
    rows: int
    start_ns: int
    end_ns: int
    """Wall-clock nanoseconds (what span timestamps are)."""


class IlpWriter:
    """Writes table frames with one long-lived sync `Sender`; call `write` from a worker thread only."""

    def __init__(self, http_url: str) -> None:
        self._conf = ilp_conf(http_url)
        self._sender: Any = None

    def write(self, frames: Sequence[TableFrame]) -> list[TableWrite]:
        """Send and flush each table's frame as its own transaction; raise on any failure."""
        writes: list[TableWrite] = []
        try:
            if self._sender is None:
                sender: Any = Sender.from_conf(self._conf)
                sender.establish()
                self._sender = sender
            for frame in frames:
                start_ns = time.time_ns()
                self._sender.dataframe(
                    frame.frame, table_name=frame.table, symbols=list(frame.symbols), at=TIMESTAMP_COLUMN
                )
                self._sender.flush(transactional=True)
                writes.append(TableWrite(frame.table, len(frame), start_ns, time.time_ns()))
        except Exception:
            # A failed flush clears the buffer; a fresh sender also drops a connection left in a bad state.
            self.close()
            raise
        return writes

    def close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                sender.close(flush=False)
            except Exception:  # closing a broken connection must not mask the original error
                logger.debug("closing the ILP sender failed", exc_info=True)


class QuestDBRest:
    """Async REST calls: create tables, check table health, readiness ping."""

    def __init__(self, http_url: str) -> None:
        self._base = http_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT_SECS))
        return self._session

    async def exec_sql(self, sql: str) -> dict[str, Any]:
        async with self._client().get(f"{self._base}/exec", params={"query": sql}) as response:
            payload: Any = await response.json(content_type=None)
            if response.status >= 400 or not isinstance(payload, dict) or "error" in payload:
                raise QuestDBError(f"QuestDB refused {sql!r} (HTTP {response.status}): {payload}")
            return payload

    async def create_tables(self) -> None:
        for statement in create_table_statements():
            await self.exec_sql(statement)

    async def suspended_tables(self, tables: Sequence[str]) -> list[str]:
        """Of `tables`, those whose WAL apply is suspended."""
        payload = await self.exec_sql("SELECT name FROM wal_tables() WHERE suspended")
        suspended = {row[0] for row in payload.get("dataset", [])}
        return [table for table in tables if table in suspended]

    async def ping(self) -> bool:
        async with self._client().get(f"{self._base}/ping") as response:
            return response.status == 204

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class QuestDBSink:
    """What the consumer writes through: each table's ILP transaction, then the check that no table is suspended."""

    def __init__(self, http_url: str) -> None:
        self.ilp = IlpWriter(http_url)
        self.rest = QuestDBRest(http_url)

    async def write(self, frames: Sequence[TableFrame]) -> Sequence[TableWrite]:
        """Write `frames`; raise unless QuestDB has every row and every table written is healthy."""
        writes = await asyncio.to_thread(self.ilp.write, frames)
        suspended = await self.rest.suspended_tables([frame.table for frame in frames])
        if suspended:
            # The rows are in the WAL but will not become visible: do not acknowledge; an operator resumes it.
            logger.error("QuestDB tables are WAL-suspended", extra={"tables": suspended})
            raise QuestDBError(f"WAL-suspended tables: {', '.join(suspended)} (ALTER TABLE ... RESUME WAL)")
        return writes

    async def close(self) -> None:
        await asyncio.to_thread(self.ilp.close)
        await self.rest.close()
