"""The validator end to end: real Redis, QuestDB, simulator and collector; every bucket accounted for, with evidence.

Backdated minutes are published as the live stream would have carried them (taken from the simulator's history),
with a hole nobody reported and a reported disconnect. The validator must classify every minute — present,
backfilled (through the collector's BackfillService) or exchange_empty (the venue's REST confirms nothing traded)
— leave 0 missing, resolve every gap, and come back with the same ledger after a restart.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import redis

from tests.integration.collector_harness import running_collector, wait_until
from tests.integration.validator_harness import history_candles, history_trades, publish, validator_process
from tickstrata.common.completeness import BucketCounts, completeness_key
from tickstrata.common.events import DataType, Gap, GapKind
from tickstrata.common.streams import GAP_STREAM, market_data_stream
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer
from tickstrata.localstack.simulator import SimulatorEndpoints, start_simulator
from tickstrata.quality.v1 import quality_service_pb2 as pb
from tickstrata.quality.v1 import quality_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000
NS_PER_MS = 1_000_000
SYMBOL = "BTC-USDT"
MINUTES = 16  # backdated minutes judged: [first, first + MINUTES)
HOLE = range(4, 7)  # minutes with no data and no report (a collector killed with open windows)
DISCONNECT_MINUTE = 9  # a reported disconnect inside this minute: its live data may be incomplete


@pytest.fixture
def history_simulator(tmp_path: Path) -> Iterator[SimulatorEndpoints]:
    # A thin history (1.2 trades a minute on average): some minutes have no trade at all, which the venue's REST
    # must confirm before they count as accounted for.
    process, endpoints = start_simulator(tmp_path, trades_per_sec="2", history_trades_per_sec="0.02")
    try:
        yield endpoints
    finally:
        process.stop()


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def completeness(address: str, start_ns: int, end_ns: int) -> pb.GetCompletenessResponse:
    with grpc.insecure_channel(address) as channel:
        reply: pb.GetCompletenessResponse = pb_grpc.QualityServiceStub(channel).GetCompleteness(
            pb.GetCompletenessRequest(exchange="binance", symbol=SYMBOL, start_ns=start_ns, end_ns=end_ns), timeout=10
        )
    return reply


def gaps(address: str, start_ns: int, end_ns: int) -> list[pb.Gap]:
    with grpc.insecure_channel(address) as channel:
        reply: pb.ListGapsResponse = pb_grpc.QualityServiceStub(channel).ListGaps(
            pb.ListGapsRequest(exchange="binance", start_ns=start_ns, end_ns=end_ns, page_size=1000), timeout=10
        )
    return list(reply.gaps)


def minute_states(address: str, start_ns: int, end_ns: int) -> list[str]:
    """Each minute's state, in order (for failure messages)."""
    with grpc.insecure_channel(address) as channel:
        reply: pb.ListBucketsResponse = pb_grpc.QualityServiceStub(channel).ListBuckets(
            pb.ListBucketsRequest(exchange="binance", symbols=[SYMBOL], start_ns=start_ns, end_ns=end_ns), timeout=10
        )
    states = {row.hour_start_ns + i * 60 * 10**9: state for row in reply.rows for i, state in enumerate(row.states)}
    return [
        pb.BucketState.Name(pb.BucketState.ValueType(states[m])).removeprefix("BUCKET_STATE_")
        for m in range(start_ns, end_ns, 60 * 10**9)
    ]


def test_every_backdated_minute_is_accounted_for_with_evidence_and_survives_a_restart(
    tmp_path: Path,
    history_simulator: SimulatorEndpoints,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    questdb_server: QuestDBServer,
) -> None:
    redis_client.flushall()  # another test's streams would be read first and move the ledger's first minute
    rest = history_simulator.rest_url("binance")
    now_ms = int(time.time() * 1000)
    # The ledger judges from the minute after its first observation, so the data starts one minute early.
    first_ms = (now_ms // MINUTE_MS - MINUTES - 3) * MINUTE_MS
    seen_from_ms = first_ms - MINUTE_MS
    end_ms = first_ms + MINUTES * MINUTE_MS
    trades = history_trades(rest, SYMBOL, seen_from_ms, end_ms)
    candles = history_candles(rest, SYMBOL, seen_from_ms, end_ms)
    assert len(candles) == MINUTES + 1, "the simulator prints a candle for every minute (flat when empty)"

    def minute_index(ts_ns: int) -> int:
        return (ts_ns // NS_PER_MS - first_ms) // MINUTE_MS

    traded = {minute_index(t.ts_event_ns) for t in trades}
    live_trades = [t for t in trades if minute_index(t.ts_event_ns) not in HOLE]
    live_candles = [c for c in candles if minute_index(c.open_time_ns) not in HOLE]
    publish(redis_client, market_data_stream("binance", DataType.TRADES), live_trades)
    publish(redis_client, market_data_stream("binance", DataType.CANDLES), live_candles)
    disconnect_ns = (first_ms + DISCONNECT_MINUTE * MINUTE_MS + 20_000) * NS_PER_MS
    reported = Gap(
        exchange="binance",
        data_type=DataType.TRADES,
        symbol=None,  # a dropped connection: every symbol of the feed
        kind=GapKind.DISCONNECT,
        start_ns=disconnect_ns,
        end_ns=disconnect_ns + 5_000 * NS_PER_MS,
        cause="close code 1006",
        ts_recv_ns=disconnect_ns + 6_000 * NS_PER_MS,
    )
    publish(redis_client, GAP_STREAM, [reported])

    # The live trade ids jump across the hole: the validator sees the jump (sequential ids) and treats its window,
    # from the last trade before the hole to the first after it, as a gap: the minutes it touches are re-fetched.
    before = max(minute_index(t.ts_event_ns) for t in live_trades if minute_index(t.ts_event_ns) < HOLE.start)
    after = min(minute_index(t.ts_event_ns) for t in live_trades if minute_index(t.ts_event_ns) >= HOLE.stop)
    # The same holds after the last published trade: the collector started below streams today's trades, whose ids
    # jump past everything between, so the minute of the last backdated trade is re-fetched too.
    last = max(minute_index(t.ts_event_ns) for t in live_trades)
    # Only a hole that held trades makes the ids jump: the venue's history is sparse, and when no minute of the hole
    # traded (CI saw it), the ids run on across it and nothing around it is re-fetched (its minutes are empty).
    id_window = set(range(before, after + 1)) if traded & set(HOLE) else set()
    expected_backfilled = (id_window & traded) | ({DISCONNECT_MINUTE, last} & traded)
    expected_empty = {i for i in range(MINUTES) if i not in traded}
    expected = BucketCounts(
        present=MINUTES - len(expected_backfilled) - len(expected_empty),
        backfilled=len(expected_backfilled),
        exchange_empty=len(expected_empty),
    )
    start_ns, end_ns = first_ms * NS_PER_MS, end_ms * NS_PER_MS

    with running_collector(
        tmp_path, history_simulator, redis_server.url, exchange="binance", symbols=[SYMBOL]
    ) as collector:
        settings = {
            "backfill_addresses": f"binance=127.0.0.1:{collector.grpc_port}",
            "grace_secs": "2",
            "flush_interval_secs": "0.3",
            "backfill_poll_secs": "0.2",
        }
        with validator_process(tmp_path / "validator.log", redis_server.url, questdb_server.http_url, **settings) as v:

            def settled() -> bool:
                try:
                    counts = completeness(v.address, start_ns, end_ns).counts
                except grpc.RpcError as error:
                    # Ready before its consumer has read the first entry: the instrument is not known yet.
                    if error.code() is grpc.StatusCode.NOT_FOUND:
                        return False
                    raise
                return counts.missing == 0 and counts.pending == 0

            wait_until(settled, timeout_secs=90, what="every backdated minute classified with evidence")
            reply = completeness(v.address, start_ns, end_ns)
            got = BucketCounts(
                reply.counts.present,
                reply.counts.backfilled,
                reply.counts.exchange_empty,
                reply.counts.missing,
                reply.counts.pending,
            )

            def listed_now(address: str) -> list[pb.Gap]:
                return gaps(address, start_ns, end_ns)

            assert got == expected, (
                f"per minute: {minute_states(v.address, start_ns, end_ns)}; expected backfilled "
                f"{sorted(expected_backfilled)}, empty {sorted(expected_empty)}; gaps "
                f"{[(g.kind, minute_index(g.start_ns), minute_index(g.end_ns - 1)) for g in listed_now(v.address)]}"
            )
            assert reply.completeness_percent == "100.000000"
            listed = gaps(v.address, start_ns, end_ns)
            assert listed, "the hole and the disconnect are listed"
            # The hole nobody reported is found by its trade ids (Binance's are sequential): a trade_id gap.
            assert {g.kind for g in listed} >= {pb.GAP_KIND_DISCONNECT, pb.GAP_KIND_TRADE_ID}
            wait_until(
                lambda: all(g.state == pb.GAP_STATE_RESOLVED for g in gaps(v.address, start_ns, end_ns)),
                # The gap to today's live trades ends in the minute in progress: it resolves once that minute is
                # judged (a minute and the grace) and repaired.
                timeout_secs=120,
                what="every gap resolved",
            )
            wait_until(
                lambda: redis_client.hget(completeness_key("binance"), SYMBOL) is not None,
                timeout_secs=10,
                what="the completeness hash",
            )
            # What a person runs: the terminal report, and the HTML one.
            html = tmp_path / "quality.html"
            shown = subprocess.run(
                [sys.executable, "-m", "tickstrata", "quality", "--address", v.address, "--symbols", SYMBOL,
                 "--from", iso(start_ns), "--to", iso(end_ns), "--html", str(html)],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert shown.returncode == 0, shown.stderr
            assert "100.000000" in shown.stdout, shown.stdout
            assert "binance" in shown.stdout
            assert html.stat().st_size > 100_000
            assert "plotly" in html.read_text()

        # A restart reads its ledger back from QuestDB: once it has caught up with the streams, the same states.
        with validator_process(tmp_path / "validator.log", redis_server.url, questdb_server.http_url, **settings) as v:
            wait_until(settled, timeout_secs=60, what="the restarted validator caught up")
            again = completeness(v.address, start_ns, end_ns)
            assert (again.counts.present, again.counts.backfilled, again.counts.exchange_empty) == (
                expected.present,
                expected.backfilled,
                expected.exchange_empty,
            ), v.log()[-4000:]
