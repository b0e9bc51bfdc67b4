"""QuestDB for every service that uses it: SQL over REST `/exec`, readiness over `/ping`, the ILP client settings.

The writer creates the market-data tables and checks WAL health through it; the validator creates and reads its
ledger. Rows go over ILP, not here (`/exec` answers in JSON: fine for DDL and small reads, not for bulk).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import aiohttp

REST_TIMEOUT_SECS: Final = 10.0
EXPORT_TIMEOUT_SECS: Final = 600.0  # one day of one feed's trades as Parquet: tens of MB, seconds on a busy server

# Retries belong to the consumer loop (the stream is the buffer); the client's own 10 s retry would only hide
# an outage inside one call and delay a stop request.
ILP_RETRY_TIMEOUT_MS: Final = 0
ILP_REQUEST_TIMEOUT_MS: Final = 30_000


def ilp_conf(http_url: str) -> str:
    """`http://host:port` → the `questdb` client's configuration string, auto-flush off (we flush per table)."""
    scheme, _, address = http_url.partition("://")
    protocol = "https" if scheme == "https" else "http"
    return (
        f"{protocol}::addr={address.rstrip('/')};auto_flush=off;retry_timeout={ILP_RETRY_TIMEOUT_MS};"
        f"request_timeout={ILP_REQUEST_TIMEOUT_MS};"
    )


def sql_text(value: str) -> str:
    """A SQL string literal: single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


class QuestDBError(RuntimeError):
    """QuestDB refused a statement or a table is not healthy; the batch must not be acknowledged."""


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

    async def export_parquet(self, sql: str) -> bytes:
        """The result of ``sql`` as one Parquet file (``/exp?fmt=parquet``: QuestDB's bulk path, columnar, typed).

        QuestDB 9.3.4 exports VARCHAR columns as nulls when the query reads them straight from the table (the
        partition fast path); a computed column is exported correctly, so callers cast VARCHAR columns
        (``tickstrata.tierer.export``; ``tests/integration/test_tier_moves.py`` pins both behaviours).
        """
        timeout = aiohttp.ClientTimeout(total=EXPORT_TIMEOUT_SECS)
        params = {"query": sql, "fmt": "parquet"}
        async with self._client().get(f"{self._base}/exp", params=params, timeout=timeout) as response:
            body = await response.read()
            if response.status >= 400:
                raise QuestDBError(f"QuestDB refused to export {sql!r} (HTTP {response.status}): {body[:500]!r}")
            return body

    async def create_tables(self, statements: Sequence[str]) -> None:
        """Run DDL statements in order (``CREATE TABLE IF NOT EXISTS``: idempotent)."""
        for statement in statements:
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
