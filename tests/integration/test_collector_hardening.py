"""No single venue answer stops the collector, and no hostile answer grows its memory or Redis past a bound.

Real simulator, real Redis, a real collector process; the simulator's `bad_rest` and `garbage` faults serve the
hostile answers through the real protocol.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.collector_harness import (
    CollectorProcess,
    Published,
    faults,
    post_fault,
    running_collector,
    wait_until,
)
from tests.integration.servers.otlp_fixtures import Receiver, attributes
from tests.integration.servers.simulator_fixtures import SimulatorEndpoints, start_simulator
from tickstrata.common.events import BookSnapshot, GapKind
from tickstrata.common.streams import QUARANTINE_STREAM
from tickstrata.localstack.redis import RedisServer

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
CAP_BYTES = 8 * MiB
RETRY_SETTINGS = {"snapshot_retry_initial_secs": "0.2", "snapshot_retry_max_secs": "1"}


@pytest.fixture
def fresh_simulator(tmp_path: Path) -> Iterator[SimulatorEndpoints]:
    """A simulator of this test's own: faults change its state."""
    process, endpoints = start_simulator(tmp_path, trades_per_sec="15", book_updates_per_sec="10")
    try:
        yield endpoints
    finally:
        process.stop()


@pytest.fixture
def published(redis_client: redis.Redis) -> Published:
    return Published(redis_client)


def fault_record(endpoints: SimulatorEndpoints, record_id: int) -> dict[str, object]:
    (record,) = [r for r in faults(endpoints, "binance") if r["id"] == record_id]
    return record


def served(endpoints: SimulatorEndpoints, record_id: int) -> int:
    effects = fault_record(endpoints, record_id)["effects"]
    assert isinstance(effects, dict)
    return int(effects["served"])


def books_after(published: Published, ts_ns: int) -> list[BookSnapshot]:
    return [
        event
        for event in published.events("md:binance:books")
        if isinstance(event, BookSnapshot) and event.ts_recv_ns > ts_ns
    ]


def memory_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.mark.parametrize(("body", "reason"), [("crossed", "crossed_quote"), ("html", "malformed_json")])
def test_a_bad_depth_snapshot_is_quarantined_and_the_book_resyncs(
    tmp_path: Path,
    fresh_simulator: SimulatorEndpoints,
    redis_server: RedisServer,
    published: Published,
    body: str,
    reason: str,
) -> None:
    # The first three snapshots the collector asks for are bad: its books start on a venue answering that way.
    record = post_fault(fresh_simulator, "binance", {"kind": "bad_rest", "body": body, "count": 3})
    with running_collector(
        tmp_path,
        fresh_simulator,
        redis_server.url,
        exchange="binance",
        symbols=["ETH-USDT"],
        channels=["books"],
        **RETRY_SETTINGS,
    ) as collector:
        wait_until(lambda: served(fresh_simulator, record["id"]) == 3, timeout_secs=30, what="three bad snapshots")
        wait_until(lambda: "book synced" in collector.log(), timeout_secs=30, what="the resync once the fault ended")
        synced_ns = time.time_ns()
        wait_until(lambda: books_after(published, synced_ns) != [], timeout_secs=20, what="books after the resync")
        assert collector.readyz() == 200
        assert collector.log().count("depth snapshot failed; retrying") == 3
    quarantined = published.quarantined()
    assert [(q.reason, q.data_type, q.symbol) for q in quarantined] == [(reason, "books", "ETH-USDT")] * 3
    assert all(q.detail.startswith("depth snapshot:") and q.raw for q in quarantined)
    if body == "html":
        assert all(b"502 Bad Gateway" in q.raw for q in quarantined)
        assert all("text/html" in q.detail for q in quarantined)
    books = [event for event in published.events("md:binance:books") if isinstance(event, BookSnapshot)]
    assert books
    assert all(book.bids[0].price < book.asks[0].price for book in books)


@pytest.mark.parametrize(("body", "size_bytes"), [("huge", 50 * MiB), ("gzip_bomb", 200 * MiB)])
def test_a_huge_or_bomb_body_is_refused_without_growing_the_collector(
    tmp_path: Path,
    fresh_simulator: SimulatorEndpoints,
    redis_server: RedisServer,
    published: Published,
    body: str,
    size_bytes: int,
) -> None:
    with running_collector(
        tmp_path,
        fresh_simulator,
        redis_server.url,
        exchange="binance",
        symbols=["ETH-USDT"],
        channels=["books"],
        # What is read before a body is refused stays in memory until then: growth is bounded by the cap (the
        # default, 16 MiB, plus buffers would sit right at the 20 MiB bound). Unbounded, growth is the body.
        rest_max_body_bytes=str(CAP_BYTES),
        **RETRY_SETTINGS,
    ) as collector:
        pid = collector.process.pid
        assert pid is not None
        wait_until(lambda: "book synced" in collector.log(), timeout_secs=30, what="the first book sync")
        peak_before_kib = memory_kib(pid, "VmHWM")
        record = post_fault(
            fresh_simulator, "binance", {"kind": "bad_rest", "body": body, "size_bytes": size_bytes, "count": 2}
        )
        # A lost connection resets its books: the resync asks for a snapshot, deterministically (a depth_gap right
        # after a sync may drop a diff the snapshot already covered, and then nothing needs resyncing).
        post_fault(fresh_simulator, "binance", {"kind": "abrupt_close"})
        wait_until(lambda: served(fresh_simulator, record["id"]) == 2, timeout_secs=60, what="both bad bodies")
        wait_until(lambda: collector.log().count("book synced") >= 2, timeout_secs=60, what="the resync")
        growth_mib = (memory_kib(pid, "VmHWM") - peak_before_kib) / 1024
        rss_mib = memory_kib(pid, "VmRSS") / 1024
        assert collector.readyz() == 200
    print(f"{body} of {size_bytes // MiB} MiB: peak RSS grew {growth_mib:.1f} MiB (RSS now {rss_mib:.0f} MiB)")
    assert growth_mib < 20
    assert collector.log().count("refused the body of GET /api/v3/depth") == 2
    quarantined = published.quarantined()
    assert [(q.reason, q.symbol) for q in quarantined] == [("oversized_frame", "ETH-USDT")] * 2
    assert all(f"{CAP_BYTES} bytes" in q.detail for q in quarantined)
    assert all(len(q.raw) <= 64 * 1024 for q in quarantined)


def counter_total(receiver: Receiver, name: str, **match: str) -> int:
    """The latest cumulative value of a collector counter, summed over the points whose attributes match."""
    latest = 0
    for request in receiver.metrics:
        for resource_metrics in request.resource_metrics:
            if attributes(resource_metrics.resource.attributes).get("service.name") != "collector":
                continue
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        points = [
                            point.as_int
                            for point in metric.sum.data_points
                            if match.items() <= attributes(point.attributes).items()
                        ]
                        latest = max(latest, sum(points))
    return latest


@pytest.fixture
def exported_metrics(otlp_receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    """The collector exports its metrics every 0.5 s to a real OTLP receiver (the harness copies the env)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{otlp_receiver.port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "500")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    return otlp_receiver


def redis_used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def test_a_flood_of_garbage_frames_keeps_redis_within_the_quarantine_budget(
    tmp_path: Path,
    fresh_simulator: SimulatorEndpoints,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    published: Published,
    exported_metrics: Receiver,
) -> None:
    # The case is 60 s of 1 MiB frames against the 1 MiB/s default budget. Scaled to run in ~15 s: 300
    # frames of 1 MiB at 20 a second, against a 128 KiB/s budget. Unbudgeted they would put 300 x 64 KiB =
    # 18.75 MiB into qa:quarantine; the budget admits 15 s x 128 KiB/s + a 128 KiB burst = 2 MiB of records.
    frames, per_sec, budget_bytes_per_sec = 300, 20, 128 * 1024
    redis_budget_bytes = 6 * MiB  # the 2 MiB of records, Redis's per-entry overhead and 15 s of trades, with room
    with running_collector(
        tmp_path,
        fresh_simulator,
        redis_server.url,
        exchange="binance",
        symbols=["BTC-USDT"],
        channels=["trades"],
        quarantine_max_bytes_per_sec=str(budget_bytes_per_sec),
    ) as collector:
        wait_until(lambda: len(published.trades("binance")) == 1, timeout_secs=20, what="first trades")
        used_before = redis_used_memory(redis_client)
        post_fault(
            fresh_simulator,
            "binance",
            {"kind": "garbage", "size_bytes": MiB, "count": frames, "frames_per_sec": per_sec},
        )
        used_peak = used_before
        deadline = time.monotonic() + 90
        while counter_total(exported_metrics, "tickstrata.collector.quarantined", reason="oversized_frame") < frames:
            used_peak = max(used_peak, redis_used_memory(redis_client))
            assert time.monotonic() < deadline, "the collector did not refuse every garbage frame within 90 s"
            time.sleep(0.2)
        used_peak = max(used_peak, redis_used_memory(redis_client))
        flood_over_ns = time.time_ns()
        wait_until(
            lambda: any(t.ts_recv_ns > flood_over_ns for t in published.trades("binance")["BTC-USDT"]),
            timeout_secs=20,
            what="trades after the flood",
        )
        assert collector.readyz() == 200
        wait_until(
            lambda: counter_total(exported_metrics, "tickstrata.collector.quarantine.cut_bytes") > 0,
            timeout_secs=10,
            what="the budget's loss counter",
        )
        cut_bytes = counter_total(exported_metrics, "tickstrata.collector.quarantine.cut_bytes")
    stored = published.quarantined()
    stored_bytes = sum(len(q.raw) for q in stored)
    growth = used_peak - used_before
    print(
        f"{frames} garbage frames of 1 MiB: Redis used_memory grew {growth / MiB:.2f} MiB (budget "
        f"{redis_budget_bytes / MiB:.0f} MiB); {len(stored)} records with {stored_bytes / MiB:.2f} MiB of payload "
        f"kept, {cut_bytes / MiB:.2f} MiB cut by the quarantine budget"
    )
    assert growth < redis_budget_bytes
    assert all(q.reason == "oversized_frame" and q.raw_size_bytes == MiB for q in stored)
    # What the budget let through plus what it cut is every payload byte the frames brought.
    assert stored_bytes + cut_bytes == frames * 64 * 1024
    assert cut_bytes > frames * 64 * 1024 - 2 * 20 * budget_bytes_per_sec  # most was cut: the flood lasted >= 15 s
    assert "quarantine over its byte budget" in collector.log()
    assert published.client.xlen(QUARANTINE_STREAM) > 0


def test_a_frame_over_the_cap_closes_the_connection_with_a_gap_and_a_quarantine_record(
    tmp_path: Path, fresh_simulator: SimulatorEndpoints, redis_server: RedisServer, published: Published
) -> None:
    with running_collector(
        tmp_path, fresh_simulator, redis_server.url, exchange="binance", symbols=["BTC-USDT"], channels=["trades"]
    ) as collector:
        wait_until(lambda: len(published.trades("binance")) == 1, timeout_secs=20, what="first trades")
        post_fault(fresh_simulator, "binance", {"kind": "garbage", "size_bytes": 2 * MiB, "count": 1})
        wait_until(lambda: published.quarantined() != [], timeout_secs=20, what="the quarantine record")
        wait_until(lambda: published.gaps() != [], timeout_secs=20, what="the gap of the lost connection")
        reconnected_ns = time.time_ns()
        wait_until(
            lambda: any(t.ts_recv_ns > reconnected_ns for t in published.trades("binance")["BTC-USDT"]),
            timeout_secs=20,
            what="trades on the replacement connection",
        )
        wait_until(lambda: collector.readyz() == 200, timeout_secs=20, what="ready again")
        assert_one_reconnect(collector)
    (quarantined,) = published.quarantined()
    assert (quarantined.reason, quarantined.raw) == ("oversized_frame", b"")
    assert "1009" in quarantined.detail
    # The window of the lost connection (trades missed while reconnecting also show as a trade-id gap).
    disconnects = [gap for gap in published.gaps() if gap.kind is GapKind.DISCONNECT]
    assert [(gap.data_type, gap.symbol, gap.cause) for gap in disconnects] == [
        ("trades", "BTC-USDT", "oversized_frame")
    ]


def assert_one_reconnect(collector: CollectorProcess) -> None:
    log = collector.log()
    assert log.count('"cause":"oversized_frame"') == 1, log[-3000:]
