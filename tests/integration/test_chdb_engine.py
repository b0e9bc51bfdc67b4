"""The embedded ClickHouse engine (chDB through clickhouse-connect) does what the warm tier relies on."""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import ProgrammingError

from tests.integration.servers.chdb_fixtures import open_chdb, unique_database_name

pytestmark = pytest.mark.integration

DAY_NS = 86_400 * 10**9
T0_NS = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z: nanoseconds must survive, not just µs

TRADES_DDL = """
CREATE TABLE {table} (
    ts DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD),
    exchange LowCardinality(String),
    symbol LowCardinality(String),
    trade_id UInt64,
    price Int64 CODEC(Delta, ZSTD),
    size Int64 CODEC(Delta, ZSTD)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (exchange, symbol, ts, trade_id)
{settings}
"""
TRADE_COLUMNS = ["ts", "exchange", "symbol", "trade_id", "price", "size"]
# Reading `ts` as a Python datetime would truncate to microseconds; compare the raw nanosecond ticks.
SELECT_TRADES = (
    "SELECT toUnixTimestamp64Nano(ts), exchange, symbol, trade_id, price, size FROM {table} "
    "ORDER BY exchange, symbol, ts, trade_id"
)
DEDUP_WINDOW = 1000


def create_trades(client: Any, table: str, *, dedup_window: int | None = None) -> None:
    settings = "" if dedup_window is None else f"SETTINGS non_replicated_deduplication_window = {dedup_window}"
    client.command(TRADES_DDL.format(table=table, settings=settings))


def trade_rows(first_id: int, count: int, *, start_ns: int = T0_NS) -> list[list[Any]]:
    # Prices and sizes are scaled int64 (scale 8): 42000.12345678 is 4_200_012_345_678.
    return [
        [start_ns + i * 1_000_001, "binance", "BTC-USDT", first_id + i, 4_200_012_345_678 + 7 * i, 10_000 + i]
        for i in range(count)
    ]


def batch_token(table: str, rows: list[list[Any]]) -> str:
    """Derive the deduplication token from the batch itself: the engine silently drops any later insert that
    reuses a token, so a token naming anything but the exact content would lose a different batch."""
    canonical = json.dumps([table, TRADE_COLUMNS, rows], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def insert_idempotent(client: Any, table: str, rows: list[list[Any]]) -> None:
    client.insert(
        table,
        rows,
        column_names=TRADE_COLUMNS,
        settings={"insert_deduplicate": 1, "insert_deduplication_token": batch_token(table, rows)},
    )


def count_rows(client: Any, table: str) -> int:
    return int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])


def dedup_window_of(client: Any, table: str) -> int:
    """The table-level window as the engine reports it (0, the default, when the table does not set it)."""
    engine_full = client.query(
        "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
        parameters={"t": table},
    ).result_rows[0][0]
    match = re.search(r"non_replicated_deduplication_window = (\d+)", engine_full)
    return int(match.group(1)) if match else 0


def test_mergetree_with_codecs_round_trips_exact_values(chdb_client: Any) -> None:
    create_trades(chdb_client, "trades")
    day_one = trade_rows(1, 3)
    day_two = trade_rows(100, 2, start_ns=T0_NS + DAY_NS)
    chdb_client.insert("trades", day_one + day_two, column_names=TRADE_COLUMNS)

    assert chdb_client.query(SELECT_TRADES.format(table="trades")).result_rows == [
        (T0_NS, "binance", "BTC-USDT", 1, 4_200_012_345_678, 10_000),
        (T0_NS + 1_000_001, "binance", "BTC-USDT", 2, 4_200_012_345_685, 10_001),
        (T0_NS + 2_000_002, "binance", "BTC-USDT", 3, 4_200_012_345_692, 10_002),
        (T0_NS + DAY_NS, "binance", "BTC-USDT", 100, 4_200_012_345_678, 10_000),
        (T0_NS + DAY_NS + 1_000_001, "binance", "BTC-USDT", 101, 4_200_012_345_685, 10_001),
    ]
    columns = chdb_client.query(
        "SELECT name, type, compression_codec FROM system.columns "
        "WHERE database = currentDatabase() AND table = 'trades' ORDER BY position"
    ).result_rows
    assert columns == [
        ("ts", "DateTime64(9, 'UTC')", "CODEC(DoubleDelta, ZSTD(1))"),
        ("exchange", "LowCardinality(String)", ""),
        ("symbol", "LowCardinality(String)", ""),
        ("trade_id", "UInt64", ""),
        ("price", "Int64", "CODEC(Delta(8), ZSTD(1))"),
        ("size", "Int64", "CODEC(Delta(8), ZSTD(1))"),
    ]
    partitions = chdb_client.query(
        "SELECT partition, sum(rows) FROM system.parts WHERE database = currentDatabase() "
        "AND table = 'trades' AND active GROUP BY partition ORDER BY partition"
    ).result_rows
    assert partitions == [("20231114", 3), ("20231115", 2)]


def test_query_arrow_returns_an_arrow_table_with_nanoseconds(chdb_client: Any) -> None:
    create_trades(chdb_client, "trades")
    chdb_client.insert("trades", trade_rows(1, 3), column_names=TRADE_COLUMNS)

    table = chdb_client.query_arrow("SELECT ts, symbol, price FROM trades ORDER BY ts")

    assert isinstance(table, pa.Table)
    assert table.num_rows == 3
    assert table.schema.field("ts").type == pa.timestamp("ns", tz="UTC")
    assert table.schema.field("price").type == pa.int64()
    assert table.column("ts").cast(pa.int64()).to_pylist() == [T0_NS, T0_NS + 1_000_001, T0_NS + 2_000_002]
    assert table.column("price").to_pylist() == [4_200_012_345_678, 4_200_012_345_685, 4_200_012_345_692]
    assert table.column("symbol").cast(pa.string()).to_pylist() == ["BTC-USDT"] * 3


def test_insert_deduplication_needs_the_window_and_a_content_token(chdb_client: Any) -> None:
    create_trades(chdb_client, "deduped", dedup_window=DEDUP_WINDOW)
    create_trades(chdb_client, "plain")
    assert dedup_window_of(chdb_client, "deduped") == DEDUP_WINDOW
    assert dedup_window_of(chdb_client, "plain") == 0
    assert chdb_client.query(
        "SELECT value FROM system.merge_tree_settings WHERE name = 'non_replicated_deduplication_window'"
    ).result_rows == [("0",)]

    batch = trade_rows(1, 4)
    insert_idempotent(chdb_client, "deduped", batch)
    insert_idempotent(chdb_client, "deduped", batch)  # a replay after a crash before the ack
    assert count_rows(chdb_client, "deduped") == 4

    # The same token does nothing on a MergeTree without the window: the replay doubles the rows.
    insert_idempotent(chdb_client, "plain", batch)
    insert_idempotent(chdb_client, "plain", batch)
    assert count_rows(chdb_client, "plain") == 8

    # The hazard a content-derived token avoids: a different batch under a reused token vanishes silently.
    other = trade_rows(5, 2)
    chdb_client.insert(
        "deduped",
        other,
        column_names=TRADE_COLUMNS,
        settings={"insert_deduplicate": 1, "insert_deduplication_token": batch_token("deduped", batch)},
    )
    assert count_rows(chdb_client, "deduped") == 4
    insert_idempotent(chdb_client, "deduped", other)
    assert count_rows(chdb_client, "deduped") == 6
    ids = chdb_client.query("SELECT trade_id FROM deduped ORDER BY trade_id").result_rows
    assert ids == [(1,), (2,), (3,), (4,), (5,), (6,)]


def test_one_engine_directory_at_a_time_per_process(chdb_client: Any, tmp_path: Path) -> None:
    with pytest.raises(ProgrammingError, match="already initialized"):
        open_chdb(tmp_path / "second-engine")
    assert chdb_client.query("SELECT 1").result_rows == [(1,)]  # the running engine is unharmed


def test_rows_and_dedup_log_survive_an_engine_restart(chdb_path: Path) -> None:
    database = unique_database_name("restart")
    table = f"{database}.trades"
    batch = trade_rows(1, 3)
    client = open_chdb(chdb_path)
    try:
        client.command(f"CREATE DATABASE {database}")
        create_trades(client, table, dedup_window=DEDUP_WINDOW)
        insert_idempotent(client, table, batch)
    finally:
        client.close()
    # The engine removes its status file when the last client closes: this was a real shutdown, so the
    # rows below come back from disk, not from a still-running engine.
    assert not (chdb_path / "status").exists(), "another chdb client in this process is still open"

    client = open_chdb(chdb_path)
    try:
        assert client.query(SELECT_TRADES.format(table=table)).result_rows == [tuple(r) for r in batch]
        # The deduplication log is on disk too: a replay after a restart is still absorbed.
        insert_idempotent(client, table, batch)
        assert count_rows(client, table) == 3
        client.command(f"DROP DATABASE {database} SYNC")
    finally:
        client.close()


# Runs in a fresh interpreter: argv = path, database, mode (probe | write | read), rows as JSON.
CHILD_SCRIPT = """
import json, sys
import clickhouse_connect
path, database, mode, rows = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
client = clickhouse_connect.get_client(interface="chdb", path=path)
try:
    if mode == "write":
        client.command(f"CREATE DATABASE {database}")
        client.command(
            f"CREATE TABLE {database}.candles (ts DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD), "
            "close Int64 CODEC(Delta, ZSTD)) ENGINE = MergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY ts"
        )
        client.insert(f"{database}.candles", rows, column_names=["ts", "close"])
    elif mode == "read":
        result = client.query(f"SELECT toUnixTimestamp64Nano(ts), close FROM {database}.candles ORDER BY ts")
        print(json.dumps([list(row) for row in result.result_rows]))
finally:
    client.close()
"""


def run_child(path: Path, database: str, mode: str, rows: list[list[int]]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD_SCRIPT, str(path), database, mode, json.dumps(rows)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_engine_directory_is_locked_while_open_and_persists_across_processes(chdb_path: Path) -> None:
    database = unique_database_name("xproc")
    candles = [[T0_NS + minute * 60 * 10**9, 4_200_012_345_678 + minute] for minute in range(5)]

    holder = open_chdb(chdb_path)
    try:
        # The running engine holds an exclusive flock on <dir>/status; a second open file description, even
        # in this process, cannot take it.
        with (chdb_path / "status").open("rb") as status, pytest.raises(BlockingIOError):
            fcntl.flock(status, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = run_child(chdb_path, database, "probe", [])
        assert refused.returncode != 0
        assert "Unable to open the chdb engine" in refused.stderr
    finally:
        holder.close()

    written = run_child(chdb_path, database, "write", candles)
    assert written.returncode == 0, written.stderr
    read = run_child(chdb_path, database, "read", [])
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == candles

    client = open_chdb(chdb_path)
    try:
        rows = client.query(f"SELECT toUnixTimestamp64Nano(ts), close FROM {database}.candles ORDER BY ts")
        assert [list(row) for row in rows.result_rows] == candles
        client.command(f"DROP DATABASE {database} SYNC")
    finally:
        client.close()
