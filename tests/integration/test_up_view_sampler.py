"""What `tickstrata up` samples from a real Redis: per stream and consumer group the pending entries, the entries
not yet delivered and the oldest pending id; stream-loss gaps per stream; Redis memory against its maxmemory."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, cast

import pytest
import redis

from tickstrata.cli.up_view import GroupLag, Sampler, render
from tickstrata.common.events import DataType, Gap, GapKind, Side, Trade
from tickstrata.common.streams import xadd_args
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer

pytestmark = pytest.mark.integration

STREAM = "md:binance:trades"


class _NoQuestDB:
    """The view's QuestDB side is not under test here: it answers like a QuestDB that is not up yet."""

    def exec_sql(self, sql: str, *, timeout_secs: float) -> Any:
        raise OSError("not started")


def _trade(trade_id: int, ts_ms: int) -> Trade:
    return Trade("binance", "BTC-USDT", str(trade_id), Decimal("50000.5"), Decimal("0.1"), Side.BUY,
                 ts_ms * 1_000_000, ts_ms * 1_000_000)  # fmt: skip


def _gap(kind: GapKind, data_type: DataType, at_ms: int) -> Gap:
    ns = at_ms * 1_000_000
    return Gap("binance", data_type, None, kind, ns - 1_000_000_000, ns, "test", ns)


def test_the_sampler_reads_each_groups_lag_the_stream_losses_and_redis_memory(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    first_ms = time.time_ns() // 1_000_000 - 60_000  # a minute old: the oldest pending entry's id clock
    for offset in range(5):
        name, fields = xadd_args([_trade(offset, first_ms + offset)])
        redis_client.xadd(name, fields, id=f"{first_ms + offset}-0")
    redis_client.xgroup_create(STREAM, "writer", id="0")
    redis_client.xgroup_create(STREAM, "validator", id="0")
    redis_client.xreadgroup("writer", "w-1", {STREAM: ">"}, count=2)
    for kind, data_type in (
        (GapKind.STREAM_LOSS, DataType.TRADES),
        (GapKind.STREAM_LOSS, DataType.TRADES),
        (GapKind.DISCONNECT, DataType.TRADES),
        (GapKind.STREAM_LOSS, DataType.QUOTES),
    ):
        name, fields = xadd_args([_gap(kind, data_type, first_ms)])
        redis_client.xadd(name, fields)

    sample = Sampler(redis_client, cast("QuestDBServer", _NoQuestDB())).sample()

    [feed] = sample.feeds
    assert sorted(feed.groups, key=lambda g: g.group) == [
        GroupLag("validator", pending=0, behind=5, oldest_pending_ms=None),
        GroupLag("writer", pending=2, behind=3, oldest_pending_ms=first_ms),
    ]
    assert sample.stream_losses == {("binance", "trades"): 2, ("binance", "quotes"): 1}
    assert sample.gaps_by_exchange == {"binance": 4}
    assert sample.redis_memory is not None
    assert sample.redis_memory.max_bytes == redis_server.maxmemory_bytes
    assert 0 < sample.redis_memory.used_bytes < sample.redis_memory.max_bytes
    [writer_row] = [line for line in render(sample, None) if line.endswith("writer")]
    age, unit = writer_row.split()[-3:-1]
    assert unit == "s"
    assert 60 <= int(age) < 600  # a minute old when written, plus however long this machine took


def test_an_acknowledged_group_has_nothing_pending_and_no_oldest_entry(redis_client: redis.Redis) -> None:
    now_ms = time.time_ns() // 1_000_000
    name, fields = xadd_args([_trade(1, now_ms)])
    entry_id = redis_client.xadd(name, fields)
    redis_client.xgroup_create(STREAM, "writer", id="0")
    redis_client.xreadgroup("writer", "w-1", {STREAM: ">"}, count=10)
    redis_client.xack(STREAM, "writer", entry_id)

    [feed] = Sampler(redis_client, cast("QuestDBServer", _NoQuestDB())).sample().feeds

    assert feed.groups == (GroupLag("writer", pending=0, behind=0, oldest_pending_ms=None),)
