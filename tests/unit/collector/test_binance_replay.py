"""Replay recorded Binance frames and REST bodies through the adapters: counts and exact values per kind.

The recordings under ``tests/data/exchanges/<exchange>/`` are built from the venue's documented examples with
realistic values (2026-01-01, BTC around 87,650): one JSON text frame per line in ``*.jsonl``, one REST body
per ``*.json``. The instrument registry itself comes from the recorded ``exchange_info.json``.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Final

import pytest

from tickstrata.collector.instruments import InstrumentKind, InstrumentRegistry
from tickstrata.collector.venues import (
    BinanceAdapter,
    BinanceSpotAdapter,
    BinanceUsdmAdapter,
    ControlMessage,
    DepthDiff,
    ParseResult,
)
from tickstrata.common.events import Candle, CandleSource, Funding, Quote, Side, Trade

DATA: Final = Path(__file__).resolve().parents[2] / "data" / "exchanges"
T0_MS: Final = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE_MS: Final = T0_MS + 5 * 60_000  # the minute the recorded klines describe
RECV_NS: Final = (MINUTE_MS + 120_000) * 1_000_000  # "now" for the replay: two minutes after that minute opened
MS: Final = 1_000_000


def adapter(exchange: str) -> BinanceAdapter:
    """An adapter whose registry is built from the recorded ``exchangeInfo`` of ``exchange``."""
    cls: type[BinanceAdapter] = BinanceSpotAdapter if exchange == "binance" else BinanceUsdmAdapter
    registry = InstrumentRegistry(exchange)
    venue = cls(registry)
    registry.replace(venue.parse_exchange_info((DATA / exchange / "exchange_info.json").read_bytes()))
    return venue


def frames(exchange: str, name: str) -> list[bytes]:
    return (DATA / exchange / f"{name}.jsonl").read_bytes().splitlines()


def body(exchange: str, name: str) -> bytes:
    return (DATA / exchange / f"{name}.json").read_bytes()


def replay(venue: BinanceAdapter, lines: list[bytes]) -> list[ParseResult]:
    results = [venue.parse(line, RECV_NS) for line in lines]
    for result in results:
        assert result.quarantined == (), result.quarantined
    return results


def events(results: list[ParseResult]) -> list[object]:
    return [event for result in results for event in result.events]


# ---- spot ---------------------------------------------------------------------------------------------------


def test_spot_agg_trades() -> None:
    trades = events(replay(adapter("binance"), frames("binance", "agg_trade")))
    assert len(trades) == 5
    assert all(type(trade) is Trade for trade in trades)
    assert trades[0] == Trade(
        exchange="binance",
        symbol="BTC-USDT",
        trade_id="3400000001",
        price=Decimal("87654.32000000"),
        size=Decimal("0.00120000"),
        side=Side.SELL,  # "m": true, the buyer was the maker: the taker sold
        ts_event_ns=(MINUTE_MS + 1_234) * MS,
        ts_recv_ns=RECV_NS,
    )
    assert str(trades[0].price) == "87654.32000000"  # the venue's digits, trailing zeros included
    assert [t.side for t in trades] == [Side.SELL, Side.BUY, Side.BUY, Side.SELL, Side.SELL]  # type: ignore[attr-defined]
    assert [t.symbol for t in trades].count("ETH-USDT") == 1  # type: ignore[attr-defined]


def test_spot_klines_emit_partial_and_closed_candles() -> None:
    candles = events(replay(adapter("binance"), frames("binance", "kline_1m")))
    assert len(candles) == 4
    assert all(type(candle) is Candle for candle in candles)
    assert [c.closed for c in candles] == [False, False, True, True]  # type: ignore[attr-defined]
    final = candles[2]
    assert final == Candle(
        exchange="binance",
        symbol="BTC-USDT",
        interval_secs=60,
        open_time_ns=MINUTE_MS * MS,
        open=Decimal("87650.01000000"),
        high=Decimal("87660.10000000"),
        low=Decimal("87640.00000000"),
        close=Decimal("87650.00000000"),
        volume=Decimal("8.12345678"),
        quote_volume=Decimal("712063.44870000"),
        trade_count=311,
        closed=True,
        source=CandleSource.WS,
        ts_event_ns=(MINUTE_MS + 60_000) * MS,
        ts_recv_ns=RECV_NS,
    )
    empty = candles[3]  # a minute without trades: present, zero volume, zero count
    assert isinstance(empty, Candle)
    assert (empty.symbol, empty.volume, empty.trade_count) == ("ETH-USDT", Decimal("0E-8"), 0)


def test_spot_book_ticker_has_no_venue_time() -> None:
    quotes = events(replay(adapter("binance"), frames("binance", "book_ticker")))
    assert len(quotes) == 3
    first = quotes[0]
    assert first == Quote(
        exchange="binance",
        symbol="BTC-USDT",
        bid_price=Decimal("87654.32000000"),
        bid_size=Decimal("1.53200000"),
        ask_price=Decimal("87654.33000000"),
        ask_size=Decimal("0.27100000"),
        ts_event_ns=RECV_NS,  # spot bookTicker carries no timestamp
        ts_recv_ns=RECV_NS,
    )


def test_spot_depth_diffs() -> None:
    results = replay(adapter("binance"), frames("binance", "depth"))
    diffs = [diff for result in results for diff in result.depth]
    assert len(diffs) == 3
    assert [(d.first_update_id, d.final_update_id) for d in diffs] == [
        (71234567801, 71234567860),
        (71234567861, 71234567890),
        (71234567891, 71234567891),
    ]
    assert all(d.prev_final_update_id is None for d in diffs)
    assert diffs[0].bids == (
        (Decimal("87654.32000000"), Decimal("1.53200000")),
        (Decimal("87654.00000000"), Decimal("0.00000000")),  # size 0 removes the level
    )
    assert diffs[1].bids == ()
    assert diffs[0].ts_event_ns == (MINUTE_MS + 100) * MS
    assert diffs[0].symbol == "BTC-USDT"


def test_spot_control_messages() -> None:
    controls = [result.control for result in replay(adapter("binance"), frames("binance", "control"))]
    assert controls == [
        ControlMessage("subscribe_ack", 1),
        ControlMessage("list_subscriptions", 2, streams=("btcusdt@aggTrade", "btcusdt@depth@100ms")),
        ControlMessage("error", 3, '{"code":2,"msg":"Invalid request: unknown variant `SUBSCRIBEE`"}'),
        ControlMessage("server_shutdown", None, f'{{"e":"serverShutdown","E":{MINUTE_MS + 30_000}}}'),
    ]


def test_spot_raw_frames_parse_like_combined_ones() -> None:
    results = replay(adapter("binance"), frames("binance", "raw_frames"))
    kinds = [type(result.events[0] if result.events else result.depth[0]).__name__ for result in results]
    assert kinds == ["Trade", "Quote", "Candle", "DepthDiff"]
    trade = results[0].events[0]
    assert isinstance(trade, Trade)
    assert (trade.trade_id, trade.side, trade.price) == ("3400000005", Side.BUY, Decimal("87651.00000000"))


def test_combined_frame_with_reordered_keys_takes_the_general_path() -> None:
    venue = adapter("binance")
    line = frames("binance", "agg_trade")[0]
    reordered = b'{"data":' + line[line.index(b'"data":') + 7 : -1] + b',"stream":"btcusdt@aggTrade"}'
    assert venue.parse(reordered, RECV_NS) == venue.parse(line, RECV_NS)


# ---- USD-M --------------------------------------------------------------------------------------------------


def test_usdm_agg_trades() -> None:
    trades = events(replay(adapter("binance-usdm"), frames("binance-usdm", "agg_trade")))
    assert len(trades) == 3
    assert trades[1] == Trade(
        exchange="binance-usdm",
        symbol="BTC-USDT-PERP",
        trade_id="2891234502",
        price=Decimal("87701.4"),
        size=Decimal("0.500"),
        side=Side.SELL,
        ts_event_ns=(MINUTE_MS + 1_180) * MS,
        ts_recv_ns=RECV_NS,
    )


def test_usdm_klines() -> None:
    candles = events(replay(adapter("binance-usdm"), frames("binance-usdm", "kline_1m")))
    assert len(candles) == 2
    partial, final = candles
    assert isinstance(partial, Candle)
    assert isinstance(final, Candle)
    assert (partial.closed, final.closed) == (False, True)
    assert (final.open, final.high, final.low, final.close) == (
        Decimal("87700.0"),
        Decimal("87710.3"),
        Decimal("87690.0"),
        Decimal("87695.2"),
    )
    assert (final.volume, final.quote_volume, final.trade_count) == (Decimal("215.742"), Decimal("18920123.45"), 4012)


def test_usdm_book_ticker_uses_transaction_time() -> None:
    quotes = events(replay(adapter("binance-usdm"), frames("binance-usdm", "book_ticker")))
    assert len(quotes) == 2
    first = quotes[0]
    assert isinstance(first, Quote)
    assert first.ts_event_ns == (MINUTE_MS + 1_200) * MS  # T, not E
    assert (first.bid_price, first.ask_size) == (Decimal("87701.4"), Decimal("0.004"))


def test_usdm_depth_diffs_carry_pu() -> None:
    diffs = [d for result in replay(adapter("binance-usdm"), frames("binance-usdm", "depth")) for d in result.depth]
    assert len(diffs) == 2
    assert [(d.first_update_id, d.final_update_id, d.prev_final_update_id) for d in diffs] == [
        (9123456789001, 9123456789030, 9123456788990),
        (9123456789031, 9123456789044, 9123456789030),
    ]
    assert diffs[0].ts_event_ns == (MINUTE_MS + 1_299) * MS
    assert diffs[0].bids[1] == (Decimal("87690.0"), Decimal("0"))


def test_usdm_mark_price_becomes_funding() -> None:
    fundings = events(replay(adapter("binance-usdm"), frames("binance-usdm", "mark_price")))
    assert len(fundings) == 2
    assert fundings[0] == Funding(
        exchange="binance-usdm",
        symbol="BTC-USDT-PERP",
        rate=Decimal("0.00010000"),
        mark_price=Decimal("87699.80000000"),
        index_price=Decimal("87690.12345652"),
        next_funding_time_ns=(T0_MS + 8 * 3_600_000) * MS,
        ts_event_ns=(MINUTE_MS + 1_000) * MS,
        ts_recv_ns=RECV_NS,
    )
    assert isinstance(fundings[1], Funding)
    assert fundings[1].rate == Decimal("-0.00002150")  # negative funding is valid


def test_usdm_control_messages() -> None:
    controls = [result.control for result in replay(adapter("binance-usdm"), frames("binance-usdm", "control"))]
    assert [c.kind for c in controls if c is not None] == [
        "subscribe_ack",
        "list_subscriptions",
        "error",
        "server_shutdown",
    ]
    assert [c.request_id for c in controls if c is not None] == [7, 8, 9, None]


def test_spot_adapter_refuses_usdm_only_streams() -> None:
    result = adapter("binance").parse(frames("binance-usdm", "mark_price")[0], RECV_NS)
    assert [q.reason for q in result.quarantined] == ["unknown_stream"]


# ---- REST ---------------------------------------------------------------------------------------------------


def test_spot_exchange_info() -> None:
    venue = adapter("binance")
    by_symbol = {instrument.symbol: instrument for instrument in venue.registry}
    assert sorted(by_symbol) == ["1000SATS-USDT", "BTC-USDT", "ETH-USDT", "LUNA-USDT"]  # the CJK ticker is skipped
    btc = by_symbol["BTC-USDT"]
    assert (btc.venue_symbol, btc.base, btc.quote, btc.kind) == ("BTCUSDT", "BTC", "USDT", InstrumentKind.SPOT)
    assert (btc.tick_size, btc.lot_size) == (Decimal("0.01000000"), Decimal("0.00001000"))
    assert (btc.price_decimals, btc.size_decimals, btc.status, btc.listed_ns) == (8, 8, "TRADING", None)
    assert not by_symbol["LUNA-USDT"].is_trading


def test_usdm_exchange_info_keeps_perpetuals_only() -> None:
    venue = adapter("binance-usdm")
    by_symbol = {instrument.symbol: instrument for instrument in venue.registry}
    assert sorted(by_symbol) == ["1000PEPE-USDT-PERP", "BTC-USDT-PERP", "ETH-USDT-PERP", "NEW-USDT-PERP"]
    btc = by_symbol["BTC-USDT-PERP"]
    assert (btc.kind, btc.tick_size, btc.price_decimals, btc.size_decimals) == (
        InstrumentKind.PERPETUAL,
        Decimal("0.10"),
        2,
        3,
    )
    assert btc.listed_ns == 1_569_398_400_000 * MS
    assert by_symbol["1000PEPE-USDT-PERP"].price_decimals == 7


@pytest.mark.parametrize(
    ("exchange", "symbol", "last_update_id", "best_bid", "best_ask"),
    [
        ("binance", "BTC-USDT", 71234567850, ("87654.32000000", "1.50000000"), ("87654.33000000", "0.25000000")),
        ("binance-usdm", "BTC-USDT-PERP", 9123456789010, ("87701.4", "7.500"), ("87701.5", "1.000")),
    ],
)
def test_depth_snapshot(
    exchange: str, symbol: str, last_update_id: int, best_bid: tuple[str, str], best_ask: tuple[str, str]
) -> None:
    snapshot = adapter(exchange).parse_depth_snapshot(body(exchange, "depth_snapshot"), symbol, RECV_NS)
    assert (snapshot.symbol, snapshot.last_update_id, snapshot.ts_recv_ns) == (symbol, last_update_id, RECV_NS)
    assert snapshot.bids[0] == tuple(Decimal(v) for v in best_bid)
    assert snapshot.asks[0] == tuple(Decimal(v) for v in best_ask)


def test_spot_rest_klines_mark_the_open_minute() -> None:
    now_ms = MINUTE_MS + 62_000  # one minute and two seconds in: the third row is still open
    candles = adapter("binance").parse_klines(body("binance", "klines"), "BTC-USDT", RECV_NS, now_ms=now_ms)
    assert len(candles) == 3
    assert [c.closed for c in candles] == [True, True, False]
    assert all(c.source is CandleSource.REST for c in candles)
    assert candles[1].open_time_ns == MINUTE_MS * MS
    assert candles[1].ts_event_ns == (MINUTE_MS + 60_000) * MS  # the end of a closed bucket
    assert candles[2].ts_event_ns == now_ms * MS  # an open one is as of now
    assert (candles[1].close, candles[1].volume, candles[1].trade_count) == (
        Decimal("87650.00000000"),
        Decimal("8.12345678"),
        311,
    )


def test_rest_kline_matches_the_closed_ws_kline() -> None:
    """The REST row of a minute and its closed WebSocket kline agree on every OHLCV value."""
    venue = adapter("binance")
    rest = venue.parse_klines(body("binance", "klines"), "BTC-USDT", RECV_NS, now_ms=MINUTE_MS + 62_000)[1]
    ws = events(replay(venue, frames("binance", "kline_1m")))[2]
    assert isinstance(ws, Candle)
    fields = ("open_time_ns", "open", "high", "low", "close", "volume", "quote_volume", "trade_count", "closed")
    assert [getattr(rest, f) for f in fields] == [getattr(ws, f) for f in fields]


def test_usdm_rest_klines() -> None:
    candles = adapter("binance-usdm").parse_klines(
        body("binance-usdm", "klines"), "BTC-USDT-PERP", RECV_NS, now_ms=MINUTE_MS + 180_000
    )
    assert [(c.closed, c.close) for c in candles] == [(True, Decimal("87695.2")), (True, Decimal("87698.0"))]


@pytest.mark.parametrize(("exchange", "symbol"), [("binance", "BTC-USDT"), ("binance-usdm", "BTC-USDT-PERP")])
def test_backfilled_trades_dedup_exactly_against_live_ones(exchange: str, symbol: str) -> None:
    venue = adapter(exchange)
    backfilled = venue.parse_agg_trades(body(exchange, "agg_trades"), symbol, RECV_NS)
    live = [t for t in events(replay(venue, frames(exchange, "agg_trade"))) if isinstance(t, Trade)]
    live = [t for t in live if t.symbol == symbol]
    assert all(t.backfilled for t in backfilled)
    key = ("trade_id", "price", "size", "side", "ts_event_ns")
    assert [tuple(getattr(t, f) for f in key) for t in backfilled] == [tuple(getattr(t, f) for f in key) for t in live]


def test_usdm_premium_index() -> None:
    usdm = adapter("binance-usdm")
    assert isinstance(usdm, BinanceUsdmAdapter)
    funding = usdm.parse_premium_index(body("binance-usdm", "premium_index"), "BTC-USDT-PERP", RECV_NS)
    assert funding == Funding(
        exchange="binance-usdm",
        symbol="BTC-USDT-PERP",
        rate=Decimal("0.00010000"),
        mark_price=Decimal("87699.80000000"),
        index_price=Decimal("87690.12345652"),
        next_funding_time_ns=(T0_MS + 8 * 3_600_000) * MS,
        ts_event_ns=(MINUTE_MS + 1_000) * MS,
        ts_recv_ns=RECV_NS,
    )


def test_depth_diff_is_a_frozen_record() -> None:
    diff = next(d for r in replay(adapter("binance"), frames("binance", "depth")) for d in r.depth)
    assert isinstance(diff, DepthDiff)
    with pytest.raises(AttributeError):
        diff.final_update_id = 0  # type: ignore[misc]
