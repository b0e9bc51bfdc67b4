"""Pure parsers for Binance spot and USD-M payloads: one typed message shape and one function per message kind.

Each shape is a msgspec Struct decoded straight from the frame's bytes (prices and sizes as exact ``Decimal``,
times as ``int``); unknown fields are ignored, because Binance adds fields (``nq`` on aggTrade, ``ps`` on
markPrice) and a new field must not stop a feed. Each function applies the domain rules of
``tickstrata.collector.validation`` and returns a normalized event or raises ``InvalidPayloadError``.

Shared by both markets: USD-M payloads are spot payloads plus a few fields (``T`` transaction time, ``pu``);
where a market lacks a field it is optional here and the parser falls back documentedly.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final, Generic, TypeVar

import msgspec

from tickstrata.collector.instruments import Instrument
from tickstrata.collector.validation import (
    InvalidPayloadError,
    Reason,
    check_candle,
    check_id,
    check_levels,
    check_listing,
    check_price,
    check_quote,
    check_signed,
    check_size,
    classify_decode_error,
    event_time_ns,
    fail,
    schedule_time_ns,
)
from tickstrata.collector.venues.base import ControlMessage, DepthDiff, PriceLevels
from tickstrata.common.bounds import MAX_ADJUSTED_EXPONENT, MAX_ID, MIN_ADJUSTED_EXPONENT, MIN_PLAUSIBLE_NS, ZERO
from tickstrata.common.events import Candle, CandleSource, Funding, Quote, Side, Trade

_D = TypeVar("_D")
_SELL: Final = Side.SELL  # enum attribute access costs ~90 ns, a module global ~10 ns
_BUY: Final = Side.BUY


class Envelope(msgspec.Struct, Generic[_D]):
    """A combined-stream frame: ``{"stream":"btcusdt@aggTrade","data":{...}}``."""

    stream: str
    data: _D


# ---- trades -------------------------------------------------------------------------------------------------


class AggTradeRow(msgspec.Struct):
    """One aggregate trade as REST ``aggTrades`` returns it (the WebSocket event adds ``e``, ``E``, ``s``)."""

    agg_trade_id: int = msgspec.field(name="a")
    price: Decimal = msgspec.field(name="p")
    size: Decimal = msgspec.field(name="q")
    trade_time_ms: int = msgspec.field(name="T")
    buyer_is_maker: bool = msgspec.field(name="m")


class AggTradeEvent(AggTradeRow):
    venue_symbol: str = msgspec.field(name="s")


def parse_agg_trade(
    msg: AggTradeRow, instrument: Instrument, ts_recv_ns: int, future_tolerance_ns: int, *, backfilled: bool = False
) -> Trade:
    """``<symbol>@aggTrade`` (spot and USD-M), and each row of REST ``aggTrades``.

    ``{"e":"aggTrade","E":1672515782136,"s":"BTCUSDT","a":12345,"p":"64123.45000000","q":"0.00120000",
    "f":100,"l":105,"T":1672515782136,"m":true,"M":true}`` (USD-M adds ``"nq"``; REST rows lack e/E/s).

    Trade id is the aggregate id ``a``: REST ``aggTrades`` uses the same id space, so a backfilled trade
    deduplicates exactly against the live one. ``m`` (buyer is maker) true means the taker sold.
    """
    price, size, agg_trade_id, trade_time_ms = msg.price, msg.size, msg.agg_trade_id, msg.trade_time_ms
    ts_event_ns = trade_time_ms * 1_000_000
    # The hottest path of the collector: the common case is one expression (inlined is_positive), and the
    # check_* calls run only when it fails, to raise with the right reason.
    if not (
        MIN_PLAUSIBLE_NS <= ts_event_ns <= ts_recv_ns + future_tolerance_ns
        and 0 <= agg_trade_id <= MAX_ID
        and price.is_finite()
        and price > ZERO
        and MIN_ADJUSTED_EXPONENT <= price.adjusted() <= MAX_ADJUSTED_EXPONENT
        and size.is_finite()
        and size > ZERO
        and MIN_ADJUSTED_EXPONENT <= size.adjusted() <= MAX_ADJUSTED_EXPONENT
    ):
        event_time_ns("T", trade_time_ms, ts_recv_ns, future_tolerance_ns)
        check_id("a", agg_trade_id)
        check_price("p", price)
        check_size("q", size, allow_zero=False)
    if instrument.listed_ns is not None:
        check_listing("T", ts_event_ns, instrument.listed_ns)
    return Trade(
        exchange=instrument.exchange,
        symbol=instrument.symbol,
        trade_id=str(agg_trade_id),
        price=price,
        size=size,
        side=_SELL if msg.buyer_is_maker else _BUY,
        ts_event_ns=ts_event_ns,
        ts_recv_ns=ts_recv_ns,
        backfilled=backfilled,
    )


# ---- candles ------------------------------------------------------------------------------------------------

KLINE_INTERVAL_SECS: Final[dict[str, int]] = {
    "1s": 1,
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14_400,
    "6h": 21_600,
    "8h": 28_800,
    "12h": 43_200,
    "1d": 86_400,
}
"""Intervals whose buckets are fixed-length and epoch-aligned (3d, 1w, 1M are not, and are not parsed)."""


class KlineBody(msgspec.Struct):
    open_time_ms: int = msgspec.field(name="t")
    close_time_ms: int = msgspec.field(name="T")
    interval: str = msgspec.field(name="i")
    open: Decimal = msgspec.field(name="o")
    close: Decimal = msgspec.field(name="c")
    high: Decimal = msgspec.field(name="h")
    low: Decimal = msgspec.field(name="l")
    volume: Decimal = msgspec.field(name="v")
    trade_count: int = msgspec.field(name="n")
    closed: bool = msgspec.field(name="x")
    quote_volume: Decimal = msgspec.field(name="q")


class KlineEvent(msgspec.Struct):
    event_time_ms: int = msgspec.field(name="E")
    venue_symbol: str = msgspec.field(name="s")
    kline: KlineBody = msgspec.field(name="k")


def check_kline_window(open_time_ms: int, close_time_ms: int, interval_secs: int) -> None:
    """Binance buckets start on a multiple of the interval and close 1 ms before the next one opens."""
    interval_ms = interval_secs * 1000
    if open_time_ms % interval_ms or close_time_ms != open_time_ms + interval_ms - 1:
        fail(
            Reason.CANDLE_INVARIANT,
            f"window [{open_time_ms}, {close_time_ms}] is not one aligned {interval_secs} s bucket",
        )


def parse_kline(msg: KlineEvent, instrument: Instrument, ts_recv_ns: int, future_tolerance_ns: int) -> Candle:
    """``<symbol>@kline_1m`` (spot and USD-M): the current candle, pushed about every 2 s until it closes.

    ``{"e":"kline","E":1672515782136,"s":"BTCUSDT","k":{"t":1672515780000,"T":1672515839999,"s":"BTCUSDT",
    "i":"1m","f":100,"L":200,"o":"64100.00000000","c":"64123.45000000","h":"64150.00000000",
    "l":"64090.00000000","v":"12.50000000","n":101,"x":false,"q":"801234.50000000","V":"6.2","Q":"397000.1",
    "B":"0"}}``

    ``x`` is the closed flag. The partial candle (``x`` false) is emitted too, with ``closed=False``: the live
    cache shows it, and storage keeps only the final one (``closed=True`` supersedes it).
    """
    kline = msg.kline
    interval_secs = KLINE_INTERVAL_SECS.get(kline.interval)
    if interval_secs is None:
        fail(Reason.UNKNOWN_STREAM, f"kline interval {kline.interval!r} is not parsed")
    ts_event_ns = event_time_ns("E", msg.event_time_ms, ts_recv_ns, future_tolerance_ns)
    open_time_ns = event_time_ns("k.t", kline.open_time_ms, ts_recv_ns, future_tolerance_ns)
    check_listing("E", ts_event_ns, instrument.listed_ns)
    check_kline_window(kline.open_time_ms, kline.close_time_ms, interval_secs)
    check_candle(
        open_=kline.open,
        high=kline.high,
        low=kline.low,
        close=kline.close,
        volume=kline.volume,
        quote_volume=kline.quote_volume,
    )
    return Candle(
        exchange=instrument.exchange,
        symbol=instrument.symbol,
        interval_secs=interval_secs,
        open_time_ns=open_time_ns,
        open=kline.open,
        high=kline.high,
        low=kline.low,
        close=kline.close,
        volume=kline.volume,
        quote_volume=kline.quote_volume,
        trade_count=check_id("k.n", kline.trade_count),
        closed=kline.closed,
        source=CandleSource.WS,
        ts_event_ns=ts_event_ns,
        ts_recv_ns=ts_recv_ns,
    )


# ---- best bid/offer -----------------------------------------------------------------------------------------


class BookTickerEvent(msgspec.Struct):
    update_id: int = msgspec.field(name="u")
    venue_symbol: str = msgspec.field(name="s")
    bid_price: Decimal = msgspec.field(name="b")
    bid_size: Decimal = msgspec.field(name="B")
    ask_price: Decimal = msgspec.field(name="a")
    ask_size: Decimal = msgspec.field(name="A")
    transaction_time_ms: int | None = msgspec.field(name="T", default=None)  # USD-M only


def parse_book_ticker(msg: BookTickerEvent, instrument: Instrument, ts_recv_ns: int, future_tolerance_ns: int) -> Quote:
    """``<symbol>@bookTicker``: best bid and ask, pushed on every change.

    Spot: ``{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000",
    "A":"40.66000000"}`` (no event type, no timestamp: ``ts_event_ns`` is our receipt time).
    USD-M: ``{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,"s":"BNBUSDT",
    "b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}`` (``T``, the matching-engine
    time, is the event time).
    """
    check_id("u", msg.update_id)
    if msg.transaction_time_ms is None:
        ts_event_ns = ts_recv_ns
    else:
        ts_event_ns = event_time_ns("T", msg.transaction_time_ms, ts_recv_ns, future_tolerance_ns)
        check_listing("T", ts_event_ns, instrument.listed_ns)
    bid_price = check_price("b", msg.bid_price)
    ask_price = check_price("a", msg.ask_price)
    check_quote(bid_price, ask_price)
    return Quote(
        exchange=instrument.exchange,
        symbol=instrument.symbol,
        bid_price=bid_price,
        bid_size=check_size("B", msg.bid_size, allow_zero=True),
        ask_price=ask_price,
        ask_size=check_size("A", msg.ask_size, allow_zero=True),
        ts_event_ns=ts_event_ns,
        ts_recv_ns=ts_recv_ns,
    )


# ---- order book ---------------------------------------------------------------------------------------------


class DepthUpdateEvent(msgspec.Struct):
    event_time_ms: int = msgspec.field(name="E")
    venue_symbol: str = msgspec.field(name="s")
    first_update_id: int = msgspec.field(name="U")
    final_update_id: int = msgspec.field(name="u")
    bids: PriceLevels = msgspec.field(name="b")
    asks: PriceLevels = msgspec.field(name="a")
    prev_final_update_id: int | None = msgspec.field(name="pu", default=None)  # USD-M only
    transaction_time_ms: int | None = msgspec.field(name="T", default=None)  # USD-M only


def parse_depth_update(
    msg: DepthUpdateEvent, instrument: Instrument, ts_recv_ns: int, future_tolerance_ns: int
) -> DepthDiff:
    """``<symbol>@depth@100ms``: absolute sizes of changed levels; size ``"0"`` removes a level.

    Spot: ``{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],
    "a":[["0.0026","100"]]}``.
    USD-M adds ``"T"`` (transaction time, used as event time) and ``"pu"`` (the previous diff's ``u``):
    ``{"e":"depthUpdate","E":…,"T":…,"s":"BTCUSDT","U":157,"u":160,"pu":149,"b":[…],"a":[…]}``.
    Sequencing itself (gaps, resync) is the local book's job; here only ``U <= u`` is required.
    """
    first = check_id("U", msg.first_update_id)
    final = check_id("u", msg.final_update_id)
    if first > final:
        fail(Reason.SEQUENCE_INVARIANT, f"U {first} > u {final}")
    prev = msg.prev_final_update_id
    if prev is not None and not -1 <= prev <= final:  # -1 marks "no previous" after a venue-side reset
        fail(Reason.SEQUENCE_INVARIANT, f"pu {prev} is not below u {final}")
    time_ms, time_name = (msg.event_time_ms, "E") if msg.transaction_time_ms is None else (msg.transaction_time_ms, "T")
    ts_event_ns = event_time_ns(time_name, time_ms, ts_recv_ns, future_tolerance_ns)
    check_listing(time_name, ts_event_ns, instrument.listed_ns)
    return DepthDiff(
        symbol=instrument.symbol,
        first_update_id=first,
        final_update_id=final,
        prev_final_update_id=prev,
        bids=check_levels("bid", msg.bids),
        asks=check_levels("ask", msg.asks),
        ts_event_ns=ts_event_ns,
        ts_recv_ns=ts_recv_ns,
    )


# ---- funding ------------------------------------------------------------------------------------------------


class MarkPriceEvent(msgspec.Struct):
    event_time_ms: int = msgspec.field(name="E")
    venue_symbol: str = msgspec.field(name="s")
    mark_price: Decimal = msgspec.field(name="p")
    index_price: Decimal = msgspec.field(name="i")
    funding_rate: Decimal = msgspec.field(name="r")
    next_funding_time_ms: int = msgspec.field(name="T")


def parse_mark_price(msg: MarkPriceEvent, instrument: Instrument, ts_recv_ns: int, future_tolerance_ns: int) -> Funding:
    """USD-M ``<symbol>@markPrice@1s``: mark and index price, current funding rate, next funding time.

    ``{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000","ap":"11794.15000000",
    "i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}``

    ``r`` may be negative; ``T`` lies in the future by design, so only its unit is checked.
    """
    ts_event_ns = event_time_ns("E", msg.event_time_ms, ts_recv_ns, future_tolerance_ns)
    check_listing("E", ts_event_ns, instrument.listed_ns)
    return Funding(
        exchange=instrument.exchange,
        symbol=instrument.symbol,
        rate=check_signed("r", msg.funding_rate),
        mark_price=check_price("p", msg.mark_price),
        index_price=check_price("i", msg.index_price),
        next_funding_time_ns=schedule_time_ns("T", msg.next_funding_time_ms),
        ts_event_ns=ts_event_ns,
        ts_recv_ns=ts_recv_ns,
    )


# ---- control and routing ------------------------------------------------------------------------------------


class FrameProbe(msgspec.Struct):
    """Just enough of any frame to route it when the fast path (a known combined stream) does not apply.

    Raw frames (``/ws/<stream>`` connections) carry their kind in ``e``; spot bookTicker carries none and is
    recognized by ``u`` + ``s``. Control replies carry ``result``/``error``/``id``.
    """

    stream: str | msgspec.UnsetType = msgspec.UNSET
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    event_type: str | msgspec.UnsetType = msgspec.field(name="e", default=msgspec.UNSET)
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    error: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    code: int | msgspec.UnsetType = msgspec.UNSET
    msg: str | msgspec.UnsetType = msgspec.UNSET
    request_id: int | str | msgspec.UnsetType | None = msgspec.field(name="id", default=msgspec.UNSET)
    update_id: int | msgspec.UnsetType = msgspec.field(name="u", default=msgspec.UNSET)
    venue_symbol: str | msgspec.UnsetType = msgspec.field(name="s", default=msgspec.UNSET)


class VenueErrorBody(msgspec.Struct):
    """``{"code":2,"msg":"Invalid request: unknown variant"}`` (WebSocket) or ``{"code":-1121,"msg":"Invalid
    symbol."}`` (REST)."""

    code: int
    msg: str


DETAIL_LIMIT: Final = 300
_STREAM_LIST: Final = msgspec.json.Decoder(list[str])
_DECODE_ERRORS: Final = (msgspec.MsgspecError, RecursionError, UnicodeError)


def _parse_result(text: bytes, request_id: int | str | None) -> ControlMessage | InvalidPayloadError:
    if text == b"null":  # SUBSCRIBE / UNSUBSCRIBE succeeded
        return ControlMessage("subscribe_ack", request_id)
    if text.startswith(b"["):
        try:
            streams = tuple(_STREAM_LIST.decode(text))
        except _DECODE_ERRORS as error:
            return classify_decode_error(error)
        return ControlMessage("list_subscriptions", request_id, streams=streams)
    # SET_PROPERTY / GET_PROPERTY answer true/false: a success with something to say.
    return ControlMessage("subscribe_ack", request_id, text.decode()[:DETAIL_LIMIT])


def parse_reply(probe: FrameProbe, frame: bytes) -> ControlMessage | InvalidPayloadError | None:
    """A reply to one of our requests, or ``None`` when the probed frame is not one.

    ``{"result":null,"id":1}`` (SUBSCRIBE/UNSUBSCRIBE done), ``{"result":["btcusdt@aggTrade"],"id":2}``
    (LIST_SUBSCRIPTIONS), ``{"result":true,"id":3}`` (GET_PROPERTY), ``{"error":{"code":2,"msg":"Invalid
    request"},"id":4}`` and the flat ``{"code":2,"msg":"…","id":4}`` form of errors.
    """
    request_id = None if isinstance(probe.request_id, msgspec.UnsetType) else probe.request_id
    if not isinstance(probe.result, msgspec.UnsetType):
        return _parse_result(bytes(probe.result), request_id)
    if not isinstance(probe.error, msgspec.UnsetType):
        return ControlMessage("error", request_id, bytes(probe.error).decode()[:DETAIL_LIMIT])
    if not isinstance(probe.code, msgspec.UnsetType):  # the flat {"code":…,"msg":…,"id":…} form
        return ControlMessage("error", request_id, frame.decode()[:DETAIL_LIMIT])
    return None
