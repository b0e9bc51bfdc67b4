"""The local QuestDB behaves as the hot tier needs: schema by SQL, ILP/HTTP writes, exact reads, DEDUP upserts.

WAL apply is asynchronous: a flushed ILP request is committed to the WAL but not yet visible, so every read below
first waits until `wal_tables()` shows the table's writer caught up with its sequencer, and fails at once if the
table is suspended (a suspended table accepts writes and silently hides them).
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import pytest
from questdb import Sender, TimestampNanos

from tickstrata.localstack.paths import ToolNotInstalledError, java_bin, questdb_jar
from tickstrata.localstack.process import ServerStartError
from tickstrata.localstack.questdb import QuestDBServer, QuestDBSqlError

pytestmark = pytest.mark.integration
# SQL is built with f-strings below (S608): the only interpolated names come from the `questdb_table` fixture.

WAL_APPLY_TIMEOUT_SECS = 30.0
DAY_BOUNDARY_NS = 1_710_028_800_000_000_000  # 2024-03-10T00:00:00Z


class Trade(NamedTuple):
    ts_ns: int
    symbol: str
    trade_id: int
    price: float
    size: float


# Nanosecond digits, two daily partitions, a shared (ts, trade_id) across symbols, and prices whose decimal
# spelling is not exactly representable in binary: each must come back as the same float.
TRADES = (
    Trade(DAY_BOUNDARY_NS - 1, "BTC-USDT", 1001, 64123.45, 0.00123),
    Trade(DAY_BOUNDARY_NS + 1, "BTC-USDT", 1002, 64123.46, 1.5),
    Trade(DAY_BOUNDARY_NS + 1, "ETH-USDT", 1002, 3456.78, 12.3456789),
    Trade(DAY_BOUNDARY_NS + 123_456_789, "SHIB-USDT", 1003, 0.00001234, 15_000_000.0),
    Trade(DAY_BOUNDARY_NS + 1_000_000_000, "BTC-USDT", 1004, 64000.0, 0.1),
    Trade(DAY_BOUNDARY_NS + 86_399_999_999_999, "PEPE-USDT", 1005, 0.00000089, 123456789.12345678),
)


def _rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    names = [column["name"] for column in payload["columns"]]
    return [dict(zip(names, row, strict=True)) for row in payload["dataset"]]


def _create_trades_table(server: QuestDBServer, table: str) -> None:
    server.exec_sql(
        f"CREATE TABLE {table} ("
        " ts TIMESTAMP_NS, symbol SYMBOL, trade_id LONG, price DOUBLE, size DOUBLE"
        ") TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, symbol, trade_id)"
    )


def _wal_status(server: QuestDBServer, table: str) -> dict[str, Any]:
    (status,) = _rows(server.exec_sql(f"SELECT * FROM wal_tables() WHERE name = '{table}'"))
    return status


def _wait_wal_applied(server: QuestDBServer, table: str, *, min_txn: int) -> int:
    """Wait until the table's writer has applied every WAL transaction up to at least `min_txn`."""
    deadline = time.monotonic() + WAL_APPLY_TIMEOUT_SECS
    while True:
        status = _wal_status(server, table)
        assert not status["suspended"], f"WAL apply suspended: {status['errorTag']} {status['errorMessage']}"
        if status["sequencerTxn"] >= min_txn and status["writerTxn"] == status["sequencerTxn"]:
            return int(status["writerTxn"])
        assert time.monotonic() < deadline, f"WAL not applied within {WAL_APPLY_TIMEOUT_SECS} s: {status}"
        time.sleep(0.05)


def _write(server: QuestDBServer, table: str, trades: tuple[Trade, ...]) -> None:
    with Sender.from_conf(server.ilp_http_conf) as sender:
        for trade in trades:
            sender.row(
                table,
                symbols={"symbol": trade.symbol},
                columns={"trade_id": trade.trade_id, "price": trade.price, "size": trade.size},
                at=TimestampNanos(trade.ts_ns),
            )
        sender.flush()  # one HTTP request for one table: one transaction


def _read_pg(server: QuestDBServer, table: str, *, binary: bool) -> list[Trade]:
    # `ts::long` keeps the nanoseconds: psycopg maps TIMESTAMP_NS to datetime, which stops at microseconds.
    sql = f"SELECT ts::long, symbol, trade_id, price, size FROM {table} ORDER BY ts, symbol"
    with psycopg.connect(server.pg_dsn, autocommit=True) as conn, conn.cursor(binary=binary) as cursor:
        cursor.execute(sql)
        return [Trade(*row) for row in cursor.fetchall()]


def test_table_created_by_sql_is_wal_daily_with_dedup_keys(questdb_server: QuestDBServer, questdb_table: str) -> None:
    _create_trades_table(questdb_server, questdb_table)

    (table,) = _rows(questdb_server.exec_sql(f"SELECT * FROM tables() WHERE table_name = '{questdb_table}'"))
    assert (table["designatedTimestamp"], table["partitionBy"], table["walEnabled"], table["dedup"]) == (
        "ts",
        "DAY",
        True,
        True,
    )
    columns = _rows(questdb_server.exec_sql(f"SELECT * FROM table_columns('{questdb_table}')"))
    assert {c["column"]: (c["type"], c["upsertKey"]) for c in columns} == {
        "ts": ("TIMESTAMP_NS", True),
        "symbol": ("SYMBOL", True),
        "trade_id": ("LONG", True),
        "price": ("DOUBLE", False),
        "size": ("DOUBLE", False),
    }


def test_ilp_rows_read_back_exactly_and_replay_upserts_without_growing(
    questdb_server: QuestDBServer, questdb_table: str
) -> None:
    _create_trades_table(questdb_server, questdb_table)
    start_txn = _wal_status(questdb_server, questdb_table)["sequencerTxn"]

    _write(questdb_server, questdb_table, TRADES)
    first_txn = _wait_wal_applied(questdb_server, questdb_table, min_txn=start_txn + 1)

    expected = sorted(TRADES, key=lambda t: (t.ts_ns, t.symbol))
    assert _read_pg(questdb_server, questdb_table, binary=False) == expected
    assert _read_pg(questdb_server, questdb_table, binary=True) == expected
    # The decimal spelling survives too, not merely "close enough": repr() of the float read back.
    by_id = {(t.symbol, t.trade_id): t for t in _read_pg(questdb_server, questdb_table, binary=False)}
    assert Decimal(repr(by_id["BTC-USDT", 1001].price)) == Decimal("64123.45")
    assert Decimal(repr(by_id["SHIB-USDT", 1003].price)) == Decimal("0.00001234")
    partitions = _rows(questdb_server.exec_sql(f"SHOW PARTITIONS FROM {questdb_table}"))
    assert [(p["name"], p["numRows"]) for p in partitions] == [("2024-03-09", 1), ("2024-03-10", 5)]

    # Replay the whole batch (a retry after a lost ack), one key with a revised price: upsert, no growth.
    revised = TRADES[1]._replace(price=64123.47)
    _write(questdb_server, questdb_table, (*TRADES[:1], revised, *TRADES[2:]))
    _wait_wal_applied(questdb_server, questdb_table, min_txn=first_txn + 1)

    expected_after = sorted((revised, *TRADES[:1], *TRADES[2:]), key=lambda t: (t.ts_ns, t.symbol))
    assert _read_pg(questdb_server, questdb_table, binary=False) == expected_after
    (count,) = _rows(questdb_server.exec_sql(f"SELECT count() AS n FROM {questdb_table}"))
    assert count == {"n": len(TRADES)}


def test_exec_sql_raises_questdb_error_with_position(questdb_server: QuestDBServer) -> None:
    with pytest.raises(QuestDBSqlError, match=r"table does not exist \[table=no_such_table\]") as caught:
        questdb_server.exec_sql("SELECT * FROM no_such_table")

    assert (caught.value.position, caught.value.http_status) == (14, 400)


def test_start_with_invalid_conf_raises_with_questdb_message(tmp_path: Path) -> None:
    try:
        java_bin(), questdb_jar()
    except ToolNotInstalledError as exc:
        pytest.skip(str(exc))
    server = QuestDBServer(tmp_path / "qdb", extra_conf={"shared.worker.count": "lots"})

    with pytest.raises(ServerStartError) as caught:
        server.start()

    # The cause is pulled out of the Java stack trace into its own section, whatever the log tail holds.
    _, errors = str(caught.value).split("--- error lines in ", 1)
    assert "ServerConfigurationException: invalid configuration value [key=shared.worker.count, value=lots]" in errors

    assert not server.running
