"""Binance REST, spot and USD-M: request builders (path, params, weight) and pure response parsers.

A mixin of ``BinanceAdapter``: the class attributes it reads (paths, weight tables, page limits) are declared by
the two market subclasses in ``binance``. Builders take normalized symbols and raise ``ValueError``/``KeyError``
for requests the venue would refuse (a configuration or caller bug); parsers raise ``InvalidPayloadError``
(reason + detail) on the first bad row, so the REST client can quarantine the body and retry or give up as a
unit. No I/O: the REST client makes the calls, tracks weights from headers and hands the bodies back here.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar, Final

import msgspec

from tickstrata.collector.instruments import Instrument, InstrumentRegistry
from tickstrata.collector.validation import (
    InvalidPayloadError,
    Reason,
    check_candle,
    check_id,
    check_levels,
    check_listing,
    check_price,
    check_signed,
    classify_decode_error,
    event_time_ns,
    fail,
    is_positive,
    schedule_time_ns,
)
from tickstrata.collector.venues.base import DepthSnapshot, InstrumentList, PriceLevels, RestRequest, SkippedInstrument
from tickstrata.collector.venues.binance_parsers import (
    KLINE_INTERVAL_SECS,
    AggTradeRow,
    VenueErrorBody,
    check_kline_window,
    parse_agg_trade,
)
from tickstrata.common.events import Candle, CandleSource, Funding, Trade, validate_symbol

# REST kline row: [openTime, open, high, low, close, volume, closeTime, quoteVolume, trades, takerBuyBase,
# takerBuyQuote, ignore]. A fixed-length tuple decodes in one pass; a 13th column would be refused (wrong_type)
# rather than silently misread, and Binance has kept these 12 since 2017.
KlineRow = tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal, int, Decimal, int, Decimal, Decimal, msgspec.Raw]


def parse_kline_row(
    row: KlineRow, instrument: Instrument, interval_secs: int, ts_recv_ns: int, *, now_ms: int, future_tolerance_ns: int
) -> Candle:
    """One row of REST ``klines``, oldest first:

    ``[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100","148976.11427815",1499644799999,
    "2434.19055334",308,"1756.87402397","28.46694368","0"]``

    The candle is closed once ``now_ms`` is past its close time; the still-open last minute comes back with
    ``closed=False`` (its close is the last price so far). ``ts_event_ns`` is the end of the bucket for a
    closed candle and ``now_ms`` for an open one: the venue states no update time in REST rows.
    """
    open_ms, open_, high, low, close, volume, close_ms, quote_volume, trade_count = row[:9]
    now_ns = now_ms * 1_000_000
    open_time_ns = event_time_ns("openTime", open_ms, now_ns, future_tolerance_ns)
    check_kline_window(open_ms, close_ms, interval_secs)
    check_candle(open_=open_, high=high, low=low, close=close, volume=volume, quote_volume=quote_volume)
    closed = now_ms > close_ms
    ts_event_ns = schedule_time_ns("closeTime", close_ms + 1) if closed else now_ns
    check_listing("closeTime", ts_event_ns, instrument.listed_ns)
    return Candle(
        exchange=instrument.exchange,
        symbol=instrument.symbol,
        interval_secs=interval_secs,
        open_time_ns=open_time_ns,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        quote_volume=quote_volume,
        trade_count=check_id("trades", trade_count),
        closed=closed,
        source=CandleSource.REST,
        ts_event_ns=ts_event_ns,
        ts_recv_ns=ts_recv_ns,
    )


class DepthSnapshotBody(msgspec.Struct, rename="camel"):
    last_update_id: int
    bids: PriceLevels
    asks: PriceLevels


class PremiumIndexBody(msgspec.Struct, rename="camel"):
    """REST ``GET /fapi/v1/premiumIndex?symbol=BTCUSDT``."""

    symbol: str
    mark_price: Decimal
    index_price: Decimal
    last_funding_rate: Decimal
    next_funding_time: int
    time: int


def premium_index_to_funding(
    body: PremiumIndexBody, instrument: Instrument, ts_recv_ns: int, future_tolerance_ns: int
) -> Funding:
    """``{"symbol":"BTCUSDT","markPrice":"11793.63104562","indexPrice":"11781.80495970",
    "estimatedSettlePrice":"11781.16138815","lastFundingRate":"0.00038246","interestRate":"0.00010000",
    "nextFundingTime":1597392000000,"time":1597370495002}``
    """
    ts_event_ns = event_time_ns("time", body.time, ts_recv_ns, future_tolerance_ns)
    return Funding(
        exchange=instrument.exchange,
        symbol=instrument.symbol,
        rate=check_signed("lastFundingRate", body.last_funding_rate),
        mark_price=check_price("markPrice", body.mark_price),
        index_price=check_price("indexPrice", body.index_price),
        next_funding_time_ns=schedule_time_ns("nextFundingTime", body.next_funding_time),
        ts_event_ns=ts_event_ns,
        ts_recv_ns=ts_recv_ns,
    )


def _weight(table: Sequence[tuple[int, int]], limit: int, what: str) -> int:
    """Weight for ``limit`` from ``(largest limit, weight)`` rows in ascending order."""
    for largest, weight in table:
        if limit <= largest:
            return weight
    raise ValueError(f"{what} limit {limit} is above the maximum {table[-1][0]}")


def decode_body(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    """Decode a REST body, naming the venue's own error object when that is what came back."""
    try:
        return decoder.decode(body)
    except _DECODE_ERRORS as error:
        problem = classify_decode_error(error)
        if problem.reason in (Reason.WRONG_TYPE, Reason.MISSING_FIELD):
            try:
                venue_error = _ERROR.decode(body)
            except _DECODE_ERRORS:
                raise problem from None
            raise InvalidPayloadError(Reason.VENUE_ERROR, f"code {venue_error.code}: {venue_error.msg}") from None
        raise problem from None


class _Filter(msgspec.Struct, rename="camel"):
    filter_type: str
    tick_size: Decimal | None = None
    step_size: Decimal | None = None


class SymbolInfo(msgspec.Struct, rename="camel"):
    """One ``exchangeInfo`` symbol entry (the fields we use; both markets)."""

    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    filters: list[_Filter] = []
    contract_type: str | None = None  # USD-M only
    onboard_date: int | None = None  # USD-M only, ms


class _ExchangeInfo(msgspec.Struct):
    symbols: list[msgspec.Raw]  # decoded one by one: a malformed entry costs that instrument, not the list


class _EntryName(msgspec.Struct, rename="camel"):
    """Just enough of an entry to name it in a warning when the entry as a whole does not decode."""

    symbol: str = "?"
    base_asset: str = ""
    quote_asset: str = ""


_EXCHANGE_INFO: Final = msgspec.json.Decoder(_ExchangeInfo)
_SYMBOL_INFO: Final = msgspec.json.Decoder(SymbolInfo)
_ENTRY_NAME: Final = msgspec.json.Decoder(_EntryName)


_ERROR: Final = msgspec.json.Decoder(VenueErrorBody)
_DEPTH_SNAPSHOT: Final = msgspec.json.Decoder(DepthSnapshotBody)
_KLINE_ROWS: Final = msgspec.json.Decoder(list[KlineRow])
_AGG_TRADE_ROWS: Final = msgspec.json.Decoder(list[AggTradeRow])
PREMIUM_INDEX_DECODER: Final = msgspec.json.Decoder(PremiumIndexBody)
_DECODE_ERRORS: Final = (msgspec.MsgspecError, RecursionError, UnicodeError)
_INTERVALS_SECS: Final = frozenset(KLINE_INTERVAL_SECS.values())
_MAX_AGG_TRADES_WINDOW_MS: Final = 3_600_000  # "startTime and endTime must be less than 1 hour" apart


class BinanceRest(abc.ABC):
    """REST request builders and body parsers shared by Binance spot and USD-M."""

    # Provided by VenueAdapter and the market subclasses.
    exchange: ClassVar[str]
    registry: InstrumentRegistry
    future_tolerance_ns: int
    kline_page_limit: ClassVar[int]
    agg_trades_page_limit: ClassVar[int]
    exchange_info_path: ClassVar[str]
    exchange_info_weight: ClassVar[int]
    symbol_suffix: ClassVar[str] = ""
    """Appended to ``BASE-QUOTE`` to make the normalized symbol (``-PERP`` for perpetuals)."""
    depth_path: ClassVar[str]
    depth_weights: ClassVar[tuple[tuple[int, int], ...]]
    """``(largest limit, weight)`` rows, ascending."""
    depth_limits: ClassVar[frozenset[int] | None]
    """The only limits the venue accepts; ``None``: any limit up to the last weight row."""
    klines_path: ClassVar[str]
    kline_weights: ClassVar[tuple[tuple[int, int], ...]]
    agg_trades_path: ClassVar[str]
    agg_trades_weight: ClassVar[int]

    # ---- REST -----------------------------------------------------------------------------------------------

    def _venue_symbol(self, symbol: str) -> str:
        return self.registry.require(symbol).venue_symbol

    def exchange_info_request(self) -> RestRequest:
        return RestRequest(self.exchange_info_path, {}, self.exchange_info_weight)

    def parse_exchange_info(self, body: bytes) -> list[Instrument]:
        """Instruments from ``exchangeInfo``; see ``read_exchange_info`` for what is left out."""
        return list(self.read_exchange_info(body).instruments)

    def read_exchange_info(self, body: bytes) -> InstrumentList:
        """Instruments from ``exchangeInfo``, and the entries skipped with why.

        Names that do not normalize (non-ASCII tickers) and markets we do not serve (dated futures) are left out
        silently: nothing is wrong with them. An entry we cannot represent (an unsupported precision, a filter
        value that is no positive number, a shape that does not decode) is skipped and listed: one odd
        instrument must not stop a collector serving the others. A body that is not an instrument list at all
        raises ``InvalidPayloadError``.
        """
        info: _ExchangeInfo = decode_body(_EXCHANGE_INFO, body)
        instruments: list[Instrument] = []
        skipped: list[SkippedInstrument] = []
        for raw in info.symbols:
            try:
                instrument = self._instrument(_SYMBOL_INFO.decode(raw))
            except _DECODE_ERRORS as error:
                skipped.append(self._skipped(raw, f"shape: {classify_decode_error(error)}"))
            except (ValueError, ArithmeticError) as error:  # Instrument and decimals_of refuse what we cannot format
                skipped.append(self._skipped(raw, f"precision or filter: {error}"))
            else:
                if instrument is not None:
                    instruments.append(instrument)
        return InstrumentList(tuple(instruments), tuple(skipped))

    def normalized_symbol(self, base: str, quote: str) -> str:
        return f"{base}-{quote}{self.symbol_suffix}"

    def _skipped(self, raw: msgspec.Raw, reason: str) -> SkippedInstrument:
        try:
            name = _ENTRY_NAME.decode(raw)
        except _DECODE_ERRORS:
            return SkippedInstrument("?", None, reason)
        symbol = self.normalized_symbol(name.base_asset, name.quote_asset) if name.base_asset else None
        return SkippedInstrument(name.symbol, symbol, reason)

    @abc.abstractmethod
    def _instrument(self, entry: SymbolInfo) -> Instrument | None:
        """The normalized instrument of one ``exchangeInfo`` entry, ``None`` to leave it out, ``ValueError`` if
        the entry is one we cannot represent."""

    @staticmethod
    def _filters(entry: SymbolInfo) -> tuple[Decimal, Decimal]:
        """Tick and step size; 0 when the filter is absent, ``ValueError`` when a value is no usable number."""
        tick = next((f.tick_size for f in entry.filters if f.filter_type == "PRICE_FILTER"), None)
        step = next((f.step_size for f in entry.filters if f.filter_type == "LOT_SIZE"), None)
        for name, value in (("PRICE_FILTER tickSize", tick), ("LOT_SIZE stepSize", step)):
            if value is not None and value and not is_positive(value):
                raise ValueError(f"unsupported {name} {value}")
        return (tick or Decimal(0), step or Decimal(0))

    def depth_request(self, symbol: str, limit: int) -> RestRequest:
        """Order-book snapshot; the weight grows with ``limit`` (a 5000-level spot snapshot costs 250)."""
        if limit < 1 or (self.depth_limits is not None and limit not in self.depth_limits):
            raise ValueError(f"{self.exchange} depth limit {limit} is not one of {sorted(self.depth_limits or ())}")
        weight = _weight(self.depth_weights, limit, "depth")
        return RestRequest(self.depth_path, {"symbol": self._venue_symbol(symbol), "limit": str(limit)}, weight)

    def parse_depth_snapshot(self, body: bytes, symbol: str, ts_recv_ns: int) -> DepthSnapshot:
        """``{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}``
        (USD-M adds ``E`` and ``T``)."""
        snapshot: DepthSnapshotBody = decode_body(_DEPTH_SNAPSHOT, body)
        bids, asks = check_levels("bid", snapshot.bids), check_levels("ask", snapshot.asks)
        if bids and asks and bids[0][0] >= asks[0][0]:
            fail(Reason.CROSSED_QUOTE, f"best bid {bids[0][0]} >= best ask {asks[0][0]}")
        last_update_id = snapshot.last_update_id
        if not 0 <= last_update_id < 2**63:
            fail(Reason.NUMBER_OUT_OF_RANGE, f"lastUpdateId {last_update_id}")
        return DepthSnapshot(validate_symbol(symbol), last_update_id, bids, asks, ts_recv_ns)

    def klines_request(self, symbol: str, start_ms: int, end_ms: int, limit: int) -> RestRequest:
        """1-minute klines from ``start_ms`` to ``end_ms`` inclusive, oldest first, at most ``limit`` rows."""
        if not 1 <= limit <= self.kline_page_limit:
            raise ValueError(f"kline limit {limit} is outside 1..{self.kline_page_limit}")
        if end_ms < start_ms:
            raise ValueError(f"end_ms {end_ms} is before start_ms {start_ms}")
        params = {
            "symbol": self._venue_symbol(symbol),
            "interval": "1m",
            "startTime": str(start_ms),
            "endTime": str(end_ms),
            "limit": str(limit),
        }
        return RestRequest(self.klines_path, params, _weight(self.kline_weights, limit, "kline"))

    def parse_klines(self, body: bytes, symbol: str, ts_recv_ns: int, *, now_ms: int) -> list[Candle]:
        """Candles (source REST) from a ``klines`` body; see ``binance_parsers.parse_kline_row``."""
        instrument = self.registry.require(symbol)
        rows: list[KlineRow] = decode_body(_KLINE_ROWS, body)
        candles: list[Candle] = []
        for row in rows:
            interval_ms = row[6] + 1 - row[0]
            if interval_ms % 1000 or interval_ms // 1000 not in _INTERVALS_SECS:
                fail(Reason.CANDLE_INVARIANT, f"row [{row[0]}, …, {row[6]}] spans {interval_ms} ms")
            candle = parse_kline_row(
                row,
                instrument,
                interval_ms // 1000,
                ts_recv_ns,
                now_ms=now_ms,
                future_tolerance_ns=self.future_tolerance_ns,
            )
            if candles and candle.open_time_ns <= candles[-1].open_time_ns:
                fail(Reason.SEQUENCE_INVARIANT, f"openTime {row[0]} does not follow the previous row")
            candles.append(candle)
        return candles

    def agg_trades_request(self, symbol: str, start_ms: int, end_ms: int, limit: int) -> RestRequest:
        """Aggregate trades in ``[start_ms, end_ms]`` (both inclusive, less than one hour apart)."""
        if not 0 <= end_ms - start_ms < _MAX_AGG_TRADES_WINDOW_MS:
            raise ValueError(f"aggTrades window [{start_ms}, {end_ms}] must be non-empty and shorter than 1 h")
        return self._agg_trades(symbol, limit, startTime=str(start_ms), endTime=str(end_ms))

    def agg_trades_from_id_request(self, symbol: str, from_id: int, limit: int) -> RestRequest:
        """Aggregate trades from id ``from_id`` inclusive: the way to page through a busy hour."""
        return self._agg_trades(symbol, limit, fromId=str(from_id))

    def _agg_trades(self, symbol: str, limit: int, **params: str) -> RestRequest:
        if not 1 <= limit <= self.agg_trades_page_limit:
            raise ValueError(f"aggTrades limit {limit} is outside 1..{self.agg_trades_page_limit}")
        query = {"symbol": self._venue_symbol(symbol), **params, "limit": str(limit)}
        return RestRequest(self.agg_trades_path, query, self.agg_trades_weight)

    def parse_agg_trades(self, body: bytes, symbol: str, ts_recv_ns: int) -> list[Trade]:
        """Trades (``backfilled=True``) from an ``aggTrades`` body; ids must ascend."""
        instrument = self.registry.require(symbol)
        rows: list[AggTradeRow] = decode_body(_AGG_TRADE_ROWS, body)
        trades: list[Trade] = []
        previous_id = -1
        for row in rows:
            if row.agg_trade_id <= previous_id:
                fail(Reason.SEQUENCE_INVARIANT, f"aggregate id {row.agg_trade_id} after {previous_id}")
            previous_id = row.agg_trade_id
            trades.append(parse_agg_trade(row, instrument, ts_recv_ns, self.future_tolerance_ns, backfilled=True))
        return trades
