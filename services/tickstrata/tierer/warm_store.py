"""The warm tier as the tierer writes it: ClickHouse through clickhouse-connect, embedded (``chdb://``) or a server.

The client is synchronous; the job calls it from a worker thread (``asyncio.to_thread``) so that its stop signal is
still heard. Inserts carry a content-derived deduplication token and every warm table keeps a deduplication window
(``common.warm_schema``), so an insert retried after a crash adds nothing. The embedded engine allows one process
per data directory: the tierer opens it only for the length of a run (docs/architecture.md, "Tiers").
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
import pyarrow as pa

from tickstrata.common.questdb_rest import sql_text
from tickstrata.common.warm_schema import (
    DEDUP_WINDOW_INSERTS,
    WARM_DATABASE,
    WARM_TABLES,
    WarmTable,
    create_warm_statements,
)
from tickstrata.tierer.export import day_bounds_ns


class WarmStoreError(RuntimeError):
    """The warm tier is misconfigured or refused an operation."""


def open_store(dsn: str) -> WarmStore:
    """The warm store at ``chdb:///abs/dir`` (embedded) or ``http(s)://user:pass@host:port[/database]`` (a server;
    the database, ``tickstrata`` by default, is created by ``ensure_tables`` if missing)."""
    parts = urlsplit(dsn)
    if parts.scheme == "chdb":
        if not parts.path.startswith("/"):
            raise WarmStoreError(f"a chdb DSN needs an absolute directory: chdb:///abs/dir, got {dsn!r}")
        return WarmStore(clickhouse_connect.get_client(interface="chdb", path=parts.path))
    if parts.scheme in ("http", "https"):
        database = parts.path.strip("/") or WARM_DATABASE
        server = urlunsplit((parts.scheme, parts.netloc, "", parts.query, ""))  # connect first, create it later
        return WarmStore(clickhouse_connect.get_client(dsn=server), database)
    raise WarmStoreError(f"unsupported warm tier DSN {dsn!r}: use chdb:///abs/dir or http(s)://host:port")


class WarmStore:
    def __init__(self, client: Any, database: str = WARM_DATABASE) -> None:
        self._client = client
        self.database = database

    def ensure_tables(self) -> None:
        for statement in create_warm_statements(self.database):
            self._client.command(statement)
        for table in WARM_TABLES:  # a table created by hand or by an older version may lack it
            create = str(self._client.command(f"SHOW CREATE TABLE {self.database}.{table.name}"))
            if f"non_replicated_deduplication_window = {DEDUP_WINDOW_INSERTS}" not in create:
                raise WarmStoreError(
                    f"{self.database}.{table.name} has no insert deduplication window: "
                    "a retried move could duplicate rows"
                )

    def insert(self, table: WarmTable, rows: pa.Table, *, token: str) -> None:
        if rows.num_rows == 0:
            return
        self._client.insert_arrow(
            f"{self.database}.{table.name}",
            rows,
            settings={"insert_deduplicate": 1, "insert_deduplication_token": token},
        )

    def read_day(self, table: WarmTable, exchange: str, symbols: tuple[str, ...], day: dt.date) -> pa.Table:
        """The warm rows of one exchange's day (optionally some symbols), in the warm columns."""
        start_ns, end_ns = day_bounds_ns(day)
        columns = ", ".join(column.name for column in table.columns)
        where = [
            f"exchange = {sql_text(exchange)}",
            f"ts >= fromUnixTimestamp64Nano({start_ns}, 'UTC') AND ts < fromUnixTimestamp64Nano({end_ns}, 'UTC')",
        ]
        if symbols:
            where.append(f"symbol IN ({', '.join(sql_text(symbol) for symbol in symbols)})")
        result: pa.Table = self._client.query_arrow(
            f"SELECT {columns} FROM {self.database}.{table.name} WHERE {' AND '.join(where)}"  # noqa: S608
        )
        return result

    def delete_day(self, table: WarmTable, exchange: str, symbol: str, day: dt.date) -> None:
        """Remove one instrument's day (a copy cut short or outdated) before it is written again; synchronous, so
        the rows are gone when this returns."""
        start_ns, end_ns = day_bounds_ns(day)
        self._client.command(
            f"DELETE FROM {self.database}.{table.name} WHERE exchange = {sql_text(exchange)} "  # noqa: S608
            f"AND symbol = {sql_text(symbol)} AND ts >= fromUnixTimestamp64Nano({start_ns}, 'UTC') "
            f"AND ts < fromUnixTimestamp64Nano({end_ns}, 'UTC')",
            settings={"lightweight_deletes_sync": 2},
        )

    def close(self) -> None:
        self._client.close()
