"""The writer's QuestDB edge: DDL and health over REST `/exec` and `/ping`, rows over ILP/HTTP.

One ILP/HTTP flush per table: QuestDB commits a request as one transaction only when it holds a single table's
rows, so a failure never leaves half a batch acknowledged as a whole. A flush answering 200 means the rows are
committed to the WAL, not yet applied; a table whose WAL apply failed is *suspended* and would hide every later
row, so the writer checks `wal_tables()` before acknowledging (the rows stay pending until an operator resumes it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

import aiohttp
from questdb import Sender, TimestampNanos

from tickstrata.writer.tables import TableColumns, create_table_statements

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


class IlpWriter:
    """Writes table batches with one long-lived sync `Sender`; call `write` from a worker thread only."""

    def __init__(self, http_url: str) -> None:
        self._conf = ilp_conf(http_url)
        self._sender: Any = None

    def write(self, batches: Sequence[TableColumns]) -> None:
        """Send and flush each table's rows as its own transaction; raise on any failure."""
        try:
            if self._sender is None:
                sender: Any = Sender.from_conf(self._conf)
                sender.establish()
                self._sender = sender
            for batch in batches:
                for symbols, columns, ts_ns in batch.rows():
                    self._sender.row(batch.table, symbols=symbols, columns=columns, at=TimestampNanos(ts_ns))
                self._sender.flush(transactional=True)
        except Exception:
            # A failed flush clears the buffer; a fresh sender also drops a connection left in a bad state.
            self.close()
            raise

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
