"""QuestDB stopped for 30 s while events flow: the writer waits with flat memory, then drains the backlog exactly.

While QuestDB is away the stream is the buffer: the writer keeps retrying the one batch it holds, reads nothing
new, acknowledges nothing, reports not-ready, and its memory stays flat while the backlog grows in Redis. When
QuestDB returns (same data directory, same ports) the backlog drains: every event exactly once, nothing pending.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.test_writer_kill import EVENTS_PER_ENTRY, _Publisher, _trades, _WriterProcess, readyz
from tests.integration.writer_harness import drained, pending, select, text, wal_applied
from tickstrata.common.streams import WRITER_GROUP, dead_letter_stream, xadd_args
from tickstrata.localstack.process import ManagedServer
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer

pytestmark = pytest.mark.integration

OUTAGE_SECS = 30.0
EVENTS = 400_000  # 10k events/s for 40 s: about 300k of them arrive during the outage
PUBLISH_SECS = 40.0
RSS_GROWTH_LIMIT_KIB = 64 * 1024
WAIT_SECS = 300.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _group(client: redis.Redis, stream: str) -> dict[str, Any]:
    groups: Any = client.xinfo_groups(stream)
    [group] = [g for g in groups if text(g["name"]) == WRITER_GROUP]
    return dict(group)


def _wait(condition: Any, what: str, process: ManagedServer) -> None:
    deadline = time.monotonic() + WAIT_SECS
    while not condition():
        assert not process.exited(), f"writer exited while waiting for {what}:\n{process.log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_questdb_outage_of_30_s_loses_nothing_and_memory_stays_flat(tmp_path: Path, own_redis: RedisServer) -> None:
    questdb = QuestDBServer(tmp_path / "questdb")
    questdb.start()
    writer_process: ManagedServer | None = None
    try:
        exchange = "o" + uuid.uuid4().hex[:10]
        stream = f"md:{exchange}:trades"
        trades = _trades(exchange, EVENTS)
        entries = [xadd_args(trades[i : i + EVENTS_PER_ENTRY]) for i in range(0, len(trades), EVENTS_PER_ENTRY)]
        client = redis.Redis.from_url(own_redis.url)
        writers = _WriterProcess(tmp_path, own_redis.url, questdb.http_url)
        writer_process = writers.start("writer-outage")
        health_port = writers.health_port
        _wait(lambda: readyz(health_port) == 200, "the writer to be ready", writer_process)

        publisher = _Publisher(own_redis.url, entries, entries_per_sec=len(entries) / PUBLISH_SECS)
        publisher.start()
        # A few seconds of steady flow first, so the baseline includes the writer's warmed-up working set.
        _wait(lambda: publisher.published > 100, "a few seconds of flow", writer_process)
        _wait(lambda: select(questdb, f"SELECT count() FROM trades WHERE exchange = '{exchange}'")[0][0] > 0,
              "rows visible", writer_process)  # fmt: skip
        pid = writer_process.pid or 0
        rss_before_kib = _rss_kib(pid)

        ports = questdb.ports
        questdb.stop()
        outage_started = time.monotonic()
        _wait(lambda: readyz(health_port) == 503, "the writer to report not ready", writer_process)
        entries_read_at_outage = int(_group(client, stream)["entries-read"] or 0)
        rss_samples_kib = [rss_before_kib]
        while time.monotonic() - outage_started < OUTAGE_SECS:
            rss_samples_kib.append(_rss_kib(pid))
            assert not writer_process.exited(), writer_process.log_path.read_text()[-3000:]
            time.sleep(1.0)
        group = _group(client, stream)
        backlog = client.xlen(stream) - int(group["entries-read"] or 0)
        # Reads stop with the batch in hand: at most one more read (batch_entries) after the outage began.
        assert int(group["entries-read"] or 0) - entries_read_at_outage <= 500
        assert backlog > 200, f"the backlog should have grown in Redis during the outage (backlog {backlog})"
        growth_kib = max(rss_samples_kib) - rss_before_kib
        assert growth_kib < RSS_GROWTH_LIMIT_KIB, f"writer RSS grew {growth_kib} KiB: {rss_samples_kib}"
        print(f"outage: backlog {backlog} entries in Redis, writer RSS growth {growth_kib} KiB ({rss_samples_kib})")

        questdb = QuestDBServer(tmp_path / "questdb", ports=ports)
        questdb.start()
        publisher.join(timeout=WAIT_SECS)
        assert publisher.error is None, repr(publisher.error)
        assert publisher.published == len(entries)
        _wait(lambda: drained(client, stream), "the backlog to drain", writer_process)
        _wait(lambda: wal_applied(questdb, "trades"), "the WAL apply", writer_process)
        _wait(lambda: readyz(health_port) == 200, "the writer to be ready again", writer_process)

        [[rows, distinct_ids, min_id, max_id]] = select(
            questdb,
            "SELECT count(), count_distinct(trade_id), min(cast(trade_id AS LONG)), max(cast(trade_id AS LONG)) "
            f"FROM trades WHERE exchange = '{exchange}'",
        )
        assert (rows, distinct_ids, min_id, max_id) == (EVENTS, EVENTS, 0, EVENTS - 1)
        assert pending(client, stream) == 0
        assert client.xlen(dead_letter_stream(WRITER_GROUP)) == 0
        client.close()
    finally:
        if writer_process is not None:
            code = writer_process.stop(timeout_secs=30)
            assert code == 0, writer_process.log_path.read_text()[-3000:]
        questdb.stop()
