"""The warm schema in the real embedded ClickHouse engine: every table is created with its codecs, takes the rows
`to_warm` builds, gives them back as Arrow, and `from_warm` restores the hot rows exactly; a replayed insert with
the same content token adds nothing."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from tests.unit.common._hot_rows import hot_rows
from tickstrata.common.warm_rows import from_warm, to_warm
from tickstrata.common.warm_schema import DEDUP_WINDOW_INSERTS, WARM_TABLES_BY_NAME, create_warm_statements

pytestmark = pytest.mark.integration


def _normalized(table: pa.Table) -> list[dict[str, Any]]:
    # ClickHouse hands LowCardinality back dictionary-encoded: compare values. Timestamps as integer nanoseconds, so
    # a conversion to microsecond datetimes cannot hide a lost nanosecond.
    ts = table.column("ts").cast(pa.int64())
    rows: list[dict[str, Any]] = table.set_column(0, "ts", ts).to_pylist()
    return rows


def test_every_warm_table_stores_and_returns_its_hot_rows_exactly(chdb_client: Any) -> None:
    database = chdb_client.database
    for statement in create_warm_statements(database):
        chdb_client.command(statement)
    for name, (hot, scales) in hot_rows().items():
        table = WARM_TABLES_BY_NAME[name]
        warm = to_warm(table, hot, scales)
        chdb_client.insert_arrow(f"{database}.{name}", warm)
        columns = ", ".join(column.name for column in table.columns)
        read = chdb_client.query_arrow(f"SELECT {columns} FROM {database}.{name} ORDER BY {', '.join(table.order_by)}")
        assert _normalized(from_warm(table, read)) == _normalized(hot), name
        create = chdb_client.command(f"SHOW CREATE TABLE {database}.{name}")
        assert f"non_replicated_deduplication_window = {DEDUP_WINDOW_INSERTS}" in str(create)


def test_a_replayed_insert_with_the_same_content_token_adds_nothing(chdb_client: Any) -> None:
    database = chdb_client.database
    for statement in create_warm_statements(database):
        chdb_client.command(statement)
    hot, scales = hot_rows()["trades"]
    warm = to_warm(WARM_TABLES_BY_NAME["trades"], hot, scales)
    settings = {"insert_deduplicate": 1, "insert_deduplication_token": "trades/binance/2024-05-29/checksum"}
    for _ in range(3):  # a tierer killed after the insert and re-run
        chdb_client.insert_arrow(f"{database}.trades", warm, settings=settings)
    assert chdb_client.command(f"SELECT count() FROM {database}.trades") == hot.num_rows
