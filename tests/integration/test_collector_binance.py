"""The Binance collectors end to end: simulator → collector process → real Redis, with every fault kind."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import redis

from tests.integration.collector_harness import (
    CollectorProcess,
    Published,
    faults,
    post_fault,
    running_collector,
    simulator_state,
    wait_until,
)
from tests.integration.servers.simulator_fixtures import SimulatorEndpoints, start_simulator
from tickstrata.backfill.v1 import backfill_service_pb2 as backfill_pb
from tickstrata.backfill.v1 import backfill_service_pb2_grpc as backfill_grpc
from tickstrata.collector.instruments import decimals_of
from tickstrata.common.clock import MARKET_CLOCK_ENV, ScaledClock
from tickstrata.common.events import BookSnapshot, Candle, DataType, Funding, GapKind, InstrumentSpec, Quote, Trade
from tickstrata.common.streams import (
    GAP_STREAM,
    collector_stats_key,
    decode_entry,
    decode_latest_price,
    latest_price_key,
)
from tickstrata.localstack.redis import RedisServer
from tickstrata.marketdata.v1 import market_data_pb2

pytestmark = pytest.mark.integration

SPOT_SYMBOLS = [
    f"{base}-USDT"
    for base in (
        "BTC", "ETH", "BNB", "SOL", "XRP", "ADA", "DOGE", "AVAX", "DOT", "LINK",
        "LTC", "TRX", "ATOM", "UNI", "ETC", "XLM", "NEAR", "APT", "FIL", "ARB",
    )
]  # fmt: skip
PERP_SYMBOLS = [f"{symbol}-PERP" for symbol in SPOT_SYMBOLS]
CLOCK_RELATIVE_CASES = {"trade_time_in_future", "candle_open_in_future", "event_before_listing"}
MINUTE_NS = 60_000_000_000
HOSTILE_CORPUS = Path(__file__).parents[1] / "data" / "exchanges" / "binance" / "hostile.jsonl"


@pytest.fixture
def fresh_simulator(tmp_path: Path) -> Iterator[SimulatorEndpoints]:
    """A simulator of this test's own: faults change its state."""
    process, endpoints = start_simulator(
        tmp_path,
        trades_per_sec="15",
        book_updates_per_sec="10",
        # Venue keepalives at test speed: pings every 0.5 s, so the tests can assert the collector answers them
        # (assert_pings_answered). The pong deadline tolerates a start-up stall of a few seconds on a loaded 2-core
        # machine (two collectors and the simulator share it); a collector that never answered would still be cut
        # within 5.5 s and leave a gap in the trade ids.
        spot_ping_interval_secs="0.5",
        spot_pong_timeout_secs="5",
        usdm_ping_interval_secs="0.5",
        usdm_pong_timeout_secs="5",
    )
    try:
        yield endpoints
    finally:
        process.stop()


FAST_MARKET_SPEED = 10.0


@pytest.fixture
def fast_market(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SimulatorEndpoints, ScaledClock]]:
    """A simulator, and the collectors a test starts after it (they inherit the environment), on one market clock
    ten times the wall clock: a minute that must close (a candle, evidence) takes 6 s rather than 60. The market
    starts an hour back so nothing is stamped ahead of the wall clock."""
    wall_ms = time.time_ns() // 1_000_000
    clock = ScaledClock(anchor_wall_ms=wall_ms, start_ms=wall_ms - 3_600_000, speed=FAST_MARKET_SPEED)
    monkeypatch.setenv(MARKET_CLOCK_ENV, clock.env_value())
    process, endpoints = start_simulator(tmp_path, trades_per_sec="3", book_updates_per_sec="0")
    try:
        yield endpoints, clock
    finally:
        process.stop()


def sleep_until_market(clock: ScaledClock, market_ns: int) -> None:
    time.sleep(max(0.0, (market_ns - clock.now_ns()) / 1e9 / clock.speed))


@pytest.fixture
def published(redis_client: redis.Redis) -> Published:
    # The session's Redis may still hold another test's streams (a test that used only `redis_server` cleans up
    # nothing): this test's assertions read whole streams, so they start empty.
    redis_client.flushall()
    return Published(redis_client)


def backfill(
    collector: CollectorProcess,
    symbol: str,
    data_type: market_data_pb2.DataType.ValueType,
    start_ns: int,
    end_ns: int,
    *,
    reason: str,
    request_id: str = "",
) -> backfill_pb.BackfillResponse:
    """Call the collector's BackfillService and wait for the job to finish."""
    request = backfill_pb.BackfillRequest(
        exchange="binance",
        symbol=symbol,
        data_type=data_type,
        start_ns=start_ns,
        end_ns=end_ns,
        reason=reason,
        request_id=request_id,
        wait=True,
    )
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        reply: backfill_pb.BackfillResponse = backfill_grpc.BackfillServiceStub(channel).Backfill(request, timeout=30)
    return reply


def evidence(reply: backfill_pb.BackfillResponse) -> list[tuple[int, int, int, int]]:
    """The job's evidence runs as (start_ns, end_ns, finding, rows)."""
    return [(run.start_ns, run.end_ns, run.finding, run.rows) for run in reply.job.buckets]


def assert_trade_ids_consecutive(trades: list[Trade], published: Published | None = None) -> None:
    ids = sorted({int(trade.trade_id) for trade in trades})
    skipped = [(before, after) for before, after in itertools.pairwise(ids) if after != before + 1]
    # The published gap events say why (a disconnect, a stale connection), which the ids alone cannot.
    gaps = published.events(GAP_STREAM) if published is not None and skipped else []
    assert not skipped, f"trade ids skipped values (last seen, next seen): {skipped[:5]}; gap events: {gaps}"


def assert_pings_answered(endpoints: SimulatorEndpoints, exchange: str) -> None:
    """Every connection the collector holds has answered the venue's pings (Binance cuts those that do not)."""
    connections = simulator_state(endpoints, exchange)["connections"]
    assert connections, f"no {exchange} connection open"
    for connection in connections:
        assert connection["pings_sent"] >= 2, connection
        assert connection["pongs_received"] >= 1, f"pings left unanswered: {connection}"


def test_spot_and_usdm_publish_every_channel_for_20_symbols(
    tmp_path: Path, fresh_simulator: SimulatorEndpoints, redis_server: RedisServer, published: Published
) -> None:
    with (
        running_collector(tmp_path, fresh_simulator, redis_server.url, exchange="binance", symbols=SPOT_SYMBOLS),
        running_collector(tmp_path, fresh_simulator, redis_server.url, exchange="binance-usdm", symbols=PERP_SYMBOLS),
    ):
        wait_until(
            lambda: len(published.trades("binance")) == 20 and len(published.trades("binance-usdm")) == 20,
            timeout_secs=30,
            what="trades of all 40 instruments",
        )
        time.sleep(3)  # a few book samples and a funding update per symbol
        assert_pings_answered(fresh_simulator, "binance")
        assert_pings_answered(fresh_simulator, "binance-usdm")
    for exchange, symbols in (("binance", SPOT_SYMBOLS), ("binance-usdm", PERP_SYMBOLS)):
        trades = published.trades(exchange)
        assert sorted(trades) == sorted(symbols)
        for symbol, symbol_trades in trades.items():
            assert_trade_ids_consecutive(symbol_trades, published)
            raw = published.client.get(latest_price_key(exchange, symbol))
            assert isinstance(raw, bytes)
            cached = decode_latest_price(raw)
            last = max(symbol_trades, key=lambda trade: int(trade.trade_id))
            assert (cached.price, cached.ts_event_ns) == (last.price, last.ts_event_ns)
        books = [e for e in published.events(f"md:{exchange}:books") if isinstance(e, BookSnapshot)]
        assert {book.symbol for book in books} == set(symbols)
        for book in books:
            assert book.bids
            assert book.asks
            assert book.bids[0].price < book.asks[0].price, f"crossed book {book}"
            assert [level.price for level in book.bids] == sorted((level.price for level in book.bids), reverse=True)
        quotes = [e for e in published.events(f"md:{exchange}:quotes") if isinstance(e, Quote)]
        assert {quote.symbol for quote in quotes} == set(symbols)
        assert all(quote.bid_price < quote.ask_price for quote in quotes)
        candles = [e for e in published.events(f"md:{exchange}:candles") if isinstance(e, Candle)]
        assert {candle.symbol for candle in candles} == set(symbols)
        assert all(candle.low <= min(candle.open, candle.close) for candle in candles)
    # Every entry carries the W3C trace context of the publish span that wrote it.
    for _entry_id, fields in published.client.xrange("md:binance:trades", count=20) or []:
        assert fields is not None
        traceparent = decode_entry(fields).traceparent
        assert traceparent is not None
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", traceparent)
    # Each collector recorded the precision of what it collects, once, before its data: spot writes 8 decimals,
    # USD-M as many as the tick has.
    for exchange, symbols in (("binance", SPOT_SYMBOLS), ("binance-usdm", PERP_SYMBOLS)):
        specs = [e for e in published.events(f"md:{exchange}:instruments") if isinstance(e, InstrumentSpec)]
        assert sorted(spec.symbol for spec in specs) == sorted(symbols)
        first_trade_ns = min(t.ts_recv_ns for trades in published.trades(exchange).values() for t in trades)
        for spec in specs:
            assert spec.ts_event_ns <= first_trade_ns
            expected = (8, 8) if exchange == "binance" else (decimals_of(spec.tick_size), decimals_of(spec.lot_size))
            assert (spec.price_decimals, spec.size_decimals) == expected
    funding = [e for e in published.events("md:binance-usdm:funding") if isinstance(e, Funding)]
    assert {event.symbol for event in funding} == set(PERP_SYMBOLS)
    assert published.gaps() == []
    assert published.quarantined() == []
    # Each collector's totals (the operator's events/s column): every event it published, and the newest one's time.
    for exchange in ("binance", "binance-usdm"):
        stats = published.client.hgetall(collector_stats_key(exchange))
        streams = [f"md:{exchange}:{kind}" for kind in DataType]
        published_events = [event for stream in streams for event in published.events(stream)]
        assert int(stats[b"events"]) == len(published_events)
        assert int(stats[b"last_recv_ns"]) == max(event.ts_recv_ns for event in published_events)


def test_dropped_trades_become_one_exact_trade_id_gap(
    tmp_path: Path, fresh_simulator: SimulatorEndpoints, redis_server: RedisServer, published: Published
) -> None:
    with running_collector(
        tmp_path, fresh_simulator, redis_server.url, exchange="binance", symbols=["BTC-USDT"], channels=["trades"]
    ):
        wait_until(lambda: len(published.trades("binance")) == 1, timeout_secs=20, what="first trades")
        record = post_fault(fresh_simulator, "binance", {"kind": "drop", "stream": "btcusdt@aggTrade", "count": 3})
        wait_until(lambda: len(published.gaps()) == 1, timeout_secs=20, what="the trade-id gap")
        time.sleep(0.5)
    dropped = [entry for entry in simulator_faults_effects(fresh_simulator, record["id"]) if "first_id" in entry]
    assert len(dropped) == 3
    first_missing, last_missing = dropped[0]["first_id"], dropped[-1]["last_id"]
    (gap,) = published.gaps()
    trades = {int(trade.trade_id): trade for trade in published.trades("binance")["BTC-USDT"]}
    assert gap.kind is GapKind.TRADE_ID
    assert gap.symbol == "BTC-USDT"
    assert gap.cause.startswith(f"trade ids {first_missing}..{last_missing} missing")
    assert gap.start_ns == trades[first_missing - 1].ts_event_ns
    assert gap.end_ns == trades[last_missing + 1].ts_event_ns + 1  # half-open: the first good stamp is inside
    assert not set(range(first_missing, last_missing + 1)) & set(trades)


def simulator_faults_effects(endpoints: SimulatorEndpoints, record_id: int) -> list[dict[str, int]]:
    (record,) = [r for r in faults(endpoints, "binance") if r["id"] == record_id]
    dropped: list[dict[str, int]] = record["effects"].get("dropped", [])
    return dropped


def test_depth_gap_resyncs_the_book_and_reports_a_sequence_gap(
    tmp_path: Path, fresh_simulator: SimulatorEndpoints, redis_server: RedisServer, published: Published
) -> None:
    with running_collector(
        tmp_path, fresh_simulator, redis_server.url, exchange="binance", symbols=["ETH-USDT"], channels=["books"]
    ) as collector:
        wait_until(lambda: "book synced" in collector.log(), timeout_secs=20, what="the first book sync")
        post_fault(fresh_simulator, "binance", {"kind": "depth_gap", "symbol": "ETHUSDT", "count": 2})
        wait_until(lambda: collector.log().count("book synced") >= 2, timeout_secs=20, what="the resync")
        time.sleep(1)
    gaps = published.gaps()
    assert [(gap.kind, gap.data_type, gap.symbol) for gap in gaps] == [(GapKind.SEQUENCE, "books", "ETH-USDT")]
    assert gaps[0].start_ns < gaps[0].end_ns
    books = [e for e in published.events("md:binance:books") if isinstance(e, BookSnapshot)]
    assert all(book.bids[0].price < book.asks[0].price for book in books)
    assert any(book.ts_recv_ns > gaps[0].ts_recv_ns for book in books), "no book published after the resync"


@pytest.mark.parametrize(("fault", "kind"), [("abrupt_close", GapKind.DISCONNECT), ("silent", GapKind.STALE)])
def test_lost_connection_is_replaced_and_every_window_is_reported(
    tmp_path: Path,
    fresh_simulator: SimulatorEndpoints,
    redis_server: RedisServer,
    published: Published,
    fault: str,
    kind: GapKind,
) -> None:
    symbols = ["BTC-USDT", "ETH-USDT"]
    with running_collector(
        tmp_path,
        fresh_simulator,
        redis_server.url,
        exchange="binance",
        symbols=symbols,
        channels=["trades", "quotes"],
        watchdog_timeout_secs="1.0",
    ) as collector:
        wait_until(lambda: len(published.trades("binance")) == 2, timeout_secs=20, what="trades of both symbols")
        post_fault(fresh_simulator, "binance", {"kind": fault})
        wait_until(
            lambda: (
                {(g.symbol, g.data_type) for g in published.gaps() if g.kind is kind}
                >= {(s, t) for s in symbols for t in ("trades", "quotes")}
            ),
            timeout_secs=30,
            what=f"{kind} gaps for every subscription",
        )
        reconnected_at = time.time_ns()
        wait_until(
            lambda: all(
                max(t.ts_recv_ns for t in trades) > reconnected_at for trades in published.trades("binance").values()
            ),
            timeout_secs=20,
            what="trades after the reconnect",
        )
        assert "reconnecting" in collector.log()
    trades = published.trades("binance")
    for gap in (g for g in published.gaps() if g.kind is kind and g.data_type == "trades"):
        assert gap.symbol is not None
        times = sorted(trade.ts_event_ns for trade in trades[gap.symbol])
        # The window is bounded by real events: the last one before the loss and the first one after it (the
        # half-open end is one nanosecond past it, so events sharing its stamp are inside).
        assert gap.start_ns in times
        assert gap.end_ns - 1 in times
        assert gap.start_ns < gap.end_ns
    # Trades lost while disconnected are named exactly by a trade-id gap inside the disconnect window.
    for symbol, symbol_trades in trades.items():
        ids = sorted(int(t.trade_id) for t in symbol_trades)
        missing = sorted(set(range(ids[0], ids[-1] + 1)) - set(ids))
        id_gaps = [g for g in published.gaps() if g.kind is GapKind.TRADE_ID and g.symbol == symbol]
        if missing:
            assert len(id_gaps) == 1
            assert id_gaps[0].cause.startswith(f"trade ids {missing[0]}..{missing[-1]} missing")
        else:
            assert id_gaps == []


def test_aging_connection_is_replaced_before_the_venue_cut_without_a_gap(
    tmp_path: Path, fresh_simulator: SimulatorEndpoints, redis_server: RedisServer, published: Published
) -> None:
    with running_collector(
        tmp_path,
        fresh_simulator,
        redis_server.url,
        exchange="binance",
        symbols=["BTC-USDT"],
        channels=["trades"],
        connection_max_age_secs="1.5",
    ) as collector:
        wait_until(
            lambda: collector.log().count("replaced an aging connection") >= 3, timeout_secs=30, what="3 switches"
        )
    assert published.gaps() == []
    assert_trade_ids_consecutive(published.trades("binance")["BTC-USDT"])


def test_venue_shutdown_announcement_reconnects_and_resumes(
    tmp_path: Path, fresh_simulator: SimulatorEndpoints, redis_server: RedisServer, published: Published
) -> None:
    with running_collector(
        tmp_path, fresh_simulator, redis_server.url, exchange="binance", symbols=["BTC-USDT"], channels=["trades"]
    ) as collector:
        wait_until(lambda: len(published.trades("binance")) == 1, timeout_secs=20, what="first trades")
        post_fault(fresh_simulator, "binance", {"kind": "server_shutdown", "send_event": True})
        wait_until(lambda: "venue announced a server shutdown" in collector.log(), timeout_secs=10, what="the event")
        before = len(published.trades("binance")["BTC-USDT"])
        wait_until(
            lambda: len(published.trades("binance")["BTC-USDT"]) > before + 5, timeout_secs=20, what="resumed trades"
        )
    assert {gap.kind for gap in published.gaps()} <= {GapKind.DISCONNECT, GapKind.TRADE_ID}


def test_rest_429_is_honoured_and_never_escalates_to_a_ban(
    tmp_path: Path, fresh_simulator: SimulatorEndpoints, redis_server: RedisServer, published: Published
) -> None:
    post_fault(fresh_simulator, "binance", {"kind": "rest_429", "count": 2, "retry_after_secs": 1})
    started = time.monotonic()
    with running_collector(
        tmp_path, fresh_simulator, redis_server.url, exchange="binance", symbols=["BTC-USDT"], channels=["books"]
    ) as collector:
        wait_until(lambda: "book synced" in collector.log(), timeout_secs=30, what="a book despite the 429s")
    assert time.monotonic() - started >= 1.0  # the Retry-After was waited out
    responses = simulator_state(fresh_simulator, "binance")["rest"]["responses"]
    assert responses.get("429", 0) >= 1
    assert responses.get("418", 0) == 0


def test_backfill_rpc_publishes_exactly_the_missing_trades(
    tmp_path: Path, fresh_simulator: SimulatorEndpoints, redis_server: RedisServer, published: Published
) -> None:
    with running_collector(
        tmp_path, fresh_simulator, redis_server.url, exchange="binance", symbols=["BTC-USDT"], channels=["trades"]
    ) as collector:
        wait_until(lambda: len(published.trades("binance")) == 1, timeout_secs=20, what="first trades")
        post_fault(fresh_simulator, "binance", {"kind": "drop", "stream": "btcusdt@aggTrade", "count": 5})
        wait_until(lambda: len(published.gaps()) == 1, timeout_secs=20, what="the trade-id gap")
        (gap,) = published.gaps()
        reply = backfill(
            collector,
            "BTC-USDT",
            market_data_pb2.DATA_TYPE_TRADES,
            gap.start_ns,
            gap.end_ns,
            reason="test",
            request_id="gap-1",
        )
        assert reply.job.status == backfill_pb.BACKFILL_STATUS_SUCCEEDED, reply.job.error_message
        time.sleep(0.5)
    trades = published.trades("binance")["BTC-USDT"]
    backfilled = [trade for trade in trades if trade.backfilled]
    assert reply.job.rows_published == len(backfilled) > 0
    assert all(gap.start_ns <= trade.ts_event_ns < gap.end_ns for trade in backfilled)  # half-open, exactly
    live = {trade.trade_id: trade for trade in trades if not trade.backfilled}
    for trade in backfilled:  # history agrees with the stream wherever both have the trade
        if trade.trade_id in live:
            assert (live[trade.trade_id].price, live[trade.trade_id].size) == (trade.price, trade.size)
    assert_trade_ids_consecutive(trades)  # live + backfilled: the hole is filled
    assert all(isinstance(trade.price, Decimal) for trade in backfilled)


def test_hostile_frames_are_quarantined_with_their_reason_and_good_traffic_continues(
    tmp_path: Path, fresh_simulator: SimulatorEndpoints, redis_server: RedisServer, published: Published
) -> None:
    corpus = [
        case
        for case in (json.loads(line) for line in HOSTILE_CORPUS.read_text().splitlines() if line.strip())
        # These are relative to the corpus's recorded clock (or to a USD-M listing): rebuilt for now below.
        if case["case"] not in CLOCK_RELATIVE_CASES
    ]
    future_ms = time.time_ns() // 1_000_000 + 60_000
    trade = {"e": "aggTrade", "E": future_ms, "s": "BTCUSDT", "a": 1, "p": "64000.00000000", "q": "0.00100000"}
    trade |= {"f": 1, "l": 1, "T": future_ms, "m": True, "M": True}
    future_frame = json.dumps({"stream": "btcusdt@aggTrade", "data": trade}, separators=(",", ":"))
    corpus.append({"case": "trade_a_minute_ahead", "reason": "future_timestamp", "frame": future_frame})
    with running_collector(
        tmp_path,
        fresh_simulator,
        redis_server.url,
        exchange="binance",
        symbols=["BTC-USDT"],
        channels=["trades", "candles", "quotes"],
    ):
        wait_until(lambda: len(published.trades("binance")) == 1, timeout_secs=20, what="first trades")
        post_fault(fresh_simulator, "binance", {"kind": "inject", "frames": [case["frame"] for case in corpus]})
        wait_until(lambda: len(published.quarantined()) >= len(corpus), timeout_secs=20, what="every quarantine")
        injected_at = time.time_ns()
        wait_until(
            lambda: any(t.ts_recv_ns > injected_at for t in published.trades("binance")["BTC-USDT"]),
            timeout_secs=20,
            what="good trades after the hostile frames",
        )
    quarantined = published.quarantined()
    assert len(quarantined) == len(corpus)
    by_raw = {q.raw: q for q in quarantined}
    for case in corpus:
        entry = by_raw[case["frame"].encode()]
        assert entry.reason == case["reason"], case["case"]
        assert entry.exchange == "binance"
    assert published.gaps() == []
    assert_trade_ids_consecutive(published.trades("binance")["BTC-USDT"])


def test_outage_loses_nothing_so_reports_nothing_and_history_is_empty_too(
    tmp_path: Path, fresh_simulator: SimulatorEndpoints, redis_server: RedisServer, published: Published
) -> None:
    with running_collector(
        tmp_path, fresh_simulator, redis_server.url, exchange="binance", symbols=["BTC-USDT"], channels=["trades"]
    ) as collector:
        wait_until(lambda: len(published.trades("binance")) == 1, timeout_secs=20, what="first trades")
        outage = post_fault(fresh_simulator, "binance", {"kind": "outage", "duration_secs": 3})["effects"]
        start_ns, end_ns = outage["start_ms"] * 1_000_000, outage["end_ms"] * 1_000_000
        wait_until(
            lambda: any(t.ts_event_ns > end_ns for t in published.trades("binance")["BTC-USDT"]),
            timeout_secs=30,
            what="trades after the outage",
        )
        reply = backfill(
            collector, "BTC-USDT", market_data_pb2.DATA_TYPE_TRADES, start_ns, end_ns, reason="outage check"
        )
    trades = published.trades("binance")["BTC-USDT"]
    assert not [t for t in trades if start_ns <= t.ts_event_ns < end_ns]
    assert reply.job.status == backfill_pb.BACKFILL_STATUS_SUCCEEDED
    assert reply.job.rows_published == 0  # the venue's own history has nothing there either
    assert published.gaps() == []  # ids run on across the outage: nothing was lost, so nothing is reported
    assert_trade_ids_consecutive(trades)


def test_candles_empty_minutes_and_revisions(
    tmp_path: Path,
    fast_market: tuple[SimulatorEndpoints, ScaledClock],
    redis_server: RedisServer,
    published: Published,
) -> None:
    """An empty minute streams as a flat zero-volume candle; a REST revision of a closed minute is published."""
    simulator, clock = fast_market
    with running_collector(
        tmp_path,
        simulator,
        redis_server.url,
        exchange="binance",
        symbols=["SOL-USDT"],
        channels=["trades", "candles"],
    ) as collector:
        empty = post_fault(simulator, "binance", {"kind": "empty_interval", "symbol": "SOLUSDT", "minutes": 1})
        empty_open_ns = empty["effects"]["start_ms"] * 1_000_000

        def closed(open_ns: int | None = None) -> list[Candle]:
            return [
                c
                for c in published.events("md:binance:candles")
                if isinstance(c, Candle) and c.closed and c.source == "ws" and open_ns in (None, c.open_time_ns)
            ]

        # Minutes only close on their boundary: the first one within a market minute, the empty one within two.
        wait_until(lambda: bool(closed()), timeout_secs=90, what="a closed streamed candle")
        revised_open_ns = closed()[0].open_time_ns
        fault = {"kind": "candle_revision", "symbol": "SOLUSDT", "open_time_ms": revised_open_ns // 1_000_000}
        assert post_fault(simulator, "binance", fault)["effects"]["open_time_ms"] * 1_000_000 == revised_open_ns
        # The minute gets evidence once it has ended by the collector's clock less its 1 s margin for the venue's.
        sleep_until_market(clock, revised_open_ns + MINUTE_NS + 1_500_000_000)
        reply = backfill(
            collector,
            "SOL-USDT",
            market_data_pb2.DATA_TYPE_CANDLES,
            revised_open_ns,
            revised_open_ns + MINUTE_NS,  # half-open: exactly that minute
            reason="revision check",
        )
        assert reply.job.status == backfill_pb.BACKFILL_STATUS_SUCCEEDED, reply.job.error_message
        assert evidence(reply) == [(revised_open_ns, revised_open_ns + MINUTE_NS, backfill_pb.BUCKET_FINDING_DATA, 1)]
        wait_until(lambda: bool(closed(empty_open_ns)), timeout_secs=150, what="the empty minute's closed candle")
    candles = [c for c in published.events("md:binance:candles") if isinstance(c, Candle)]
    from_rest = [c for c in candles if c.source == "rest" and c.open_time_ns == revised_open_ns]
    last_ws = max(closed(revised_open_ns), key=lambda c: c.ts_recv_ns)
    assert len(from_rest) == 1
    revised = from_rest[0]
    assert (revised.close, revised.volume) != (last_ws.close, last_ws.volume)
    (flat,) = closed(empty_open_ns)[-1:]
    assert flat.volume == 0
    assert flat.trade_count == 0
    assert flat.open == flat.high == flat.low == flat.close
    trades = published.trades("binance")["SOL-USDT"]
    assert not [t for t in trades if empty_open_ns <= t.ts_event_ns < empty_open_ns + 60_000_000_000]
    assert published.gaps() == []  # an empty minute is the venue's truth, not a loss
    assert_trade_ids_consecutive(trades)


def test_backfill_evidence_proves_an_empty_minute_and_an_outage_minute(
    tmp_path: Path, fast_market: tuple[SimulatorEndpoints, ScaledClock], redis_server: RedisServer
) -> None:
    """The venue's REST history as witness: trades in the minute before, none in an empty minute (its candle has
    zero trades: EMPTY), none in an outage minute (no candle at all: NO_RECORD for candles, EMPTY for trades)."""
    simulator, clock = fast_market
    with running_collector(
        tmp_path,
        simulator,
        redis_server.url,
        exchange="binance",
        symbols=["SOL-USDT"],
        channels=["trades"],
        watchdog_timeout_secs="150",  # the outage silences the socket for a market minute: no reconnect noise
    ) as collector:
        empty = post_fault(simulator, "binance", {"kind": "empty_interval", "symbol": "SOLUSDT", "minutes": 1})
        empty_ns = empty["effects"]["start_ms"] * 1_000_000  # the next whole minute
        outage_ns = empty_ns + MINUTE_NS
        outage = post_fault(
            simulator, "binance", {"kind": "outage", "start_ms": outage_ns // 1_000_000, "duration_secs": 60}
        )
        assert outage["effects"]["start_ms"] * 1_000_000 == outage_ns
        before_ns, end_ns = empty_ns - MINUTE_NS, outage_ns + MINUTE_NS
        # Evidence is given for minutes that ended (less a second for the venue's clock) before they were fetched.
        sleep_until_market(clock, end_ns + 2_000_000_000)
        candles = backfill(
            collector,
            "SOL-USDT",
            market_data_pb2.DATA_TYPE_CANDLES,
            before_ns,
            end_ns,
            reason="evidence",
            request_id="c",
        )
        trades = backfill(
            collector,
            "SOL-USDT",
            market_data_pb2.DATA_TYPE_TRADES,
            before_ns,
            end_ns,
            reason="evidence",
            request_id="t",
        )
    assert candles.job.status == backfill_pb.BACKFILL_STATUS_SUCCEEDED, candles.job.error_message
    assert evidence(candles) == [
        (before_ns, empty_ns, backfill_pb.BUCKET_FINDING_DATA, 1),
        (empty_ns, outage_ns, backfill_pb.BUCKET_FINDING_EMPTY, 1),  # the venue's flat zero-trade candle
        (outage_ns, end_ns, backfill_pb.BUCKET_FINDING_NO_RECORD, 0),  # the venue has no candle for it
    ]
    assert candles.job.rows_published == 2
    assert trades.job.status == backfill_pb.BACKFILL_STATUS_SUCCEEDED, trades.job.error_message
    ((start, stop, finding, rows), *rest) = evidence(trades)
    assert (start, stop, finding) == (before_ns, empty_ns, backfill_pb.BUCKET_FINDING_DATA)
    assert rows == trades.job.rows_published > 0  # every trade of the window lies in the minute before
    assert rest == [(empty_ns, end_ns, backfill_pb.BUCKET_FINDING_EMPTY, 0)]  # trades cannot tell an outage apart
