"""Helpers for the tier tests: counts and rows of the hot tier, digests of the warm tier, the catalog."""

from __future__ import annotations

import datetime as dt
import io
import time
import urllib.parse
import urllib.request
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from tickstrata.common.questdb_schema import TABLES_BY_NAME, TIER_CATALOG_TABLE
from tickstrata.common.warm_rows import from_warm
from tickstrata.common.warm_schema import WARM_TABLES_BY_NAME
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.tierer.digest import canonical, digest
from tickstrata.tierer.export import day_bounds_ns
from tickstrata.tierer.warm_store import WarmStore


def wait_for(condition: Callable[[], bool], what: str, timeout_secs: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_secs
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def hot_count(questdb: QuestDBServer, table: str, exchange: str, day: dt.date | None) -> int:
    where = f"exchange = '{exchange}'"
    if day is not None:
        start_ns, end_ns = day_bounds_ns(day)
        where += f" AND ts >= {start_ns}::timestamp_ns AND ts < {end_ns}::timestamp_ns"
    return int(questdb.exec_sql(f"SELECT count() FROM {table} WHERE {where}")["dataset"][0][0])


def hot_rows(questdb: QuestDBServer, table: str, exchange: str, day: dt.date) -> pa.Table:
    """The reference: the day's rows read here, independently of `tierer.export` (whose read is under test)."""
    spec = TABLES_BY_NAME[table]
    start_ns, end_ns = day_bounds_ns(day)
    columns = ", ".join(
        f"cast({c.name} AS STRING) {c.name}" if c.kind.sql_type == "VARCHAR" else c.name for c in spec.columns
    )
    query = (
        f"SELECT {columns} FROM {table} WHERE exchange = '{exchange}' "
        f"AND ts >= {start_ns}::timestamp_ns AND ts < {end_ns}::timestamp_ns"
    )
    url = f"{questdb.http_url}/exp?" + urllib.parse.urlencode({"query": query, "fmt": "parquet"})
    with urllib.request.urlopen(url, timeout=30) as response:
        return pq.read_table(io.BytesIO(response.read()))


def warm_digest(store: WarmStore, table: str, exchange: str, day: dt.date) -> tuple[int, str]:
    warm_table = WARM_TABLES_BY_NAME[table]
    rows = canonical(warm_table.spec, from_warm(warm_table, store.read_day(warm_table, exchange, (), day)))
    return rows.num_rows, digest(rows)


def catalog_rows(questdb: QuestDBServer, exchange: str) -> dict[tuple[str, dt.date, str], tuple[int, str]]:
    """(table, day, symbol) → (rows, digest) of the exchange's warm catalog entries."""
    payload = questdb.exec_sql(
        f"SELECT data_table, cast(ts AS LONG), symbol, rows, digest FROM {TIER_CATALOG_TABLE} "
        f"WHERE exchange = '{exchange}' AND tier = 'warm'"
    )
    found = {}
    for table, day_ns, symbol, rows, row_digest in payload["dataset"]:
        day = dt.datetime.fromtimestamp(int(day_ns) // 1_000_000_000, dt.UTC).date()
        found[(str(table), day, str(symbol))] = (int(rows), str(row_digest))
    return found
