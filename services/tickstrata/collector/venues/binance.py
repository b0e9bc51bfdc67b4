"""Binance spot (``binance``) and USD-M futures (``binance-usdm``): two declarative adapters on one shared base.

Everything a market differs in is a class attribute (endpoints, limits, stream suffixes, USD-M's ``/public`` and
``/market`` routing, REST paths and weights); the message parsers are shared (``binance_parsers``).

Parsing is built for speed on the common case: a combined-stream frame starts with ``{"stream":"<name>"``, so
the stream name is read straight from the bytes and the whole frame is decoded in one pass into the typed
shape of that stream. Anything else (raw ``/ws`` frames, control replies, reordered keys, garbage) takes a
slower general path that probes the frame first. Neither path raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import msgspec

from tickstrata.collector.instruments import Instrument, InstrumentKind, InstrumentRegistry, decimals_of
from tickstrata.collector.validation import (
    DEFAULT_FUTURE_TOLERANCE_NS,
    MAX_FRAME_BYTES,
    InvalidPayloadError,
    Reason,
    check_frame,
    classify_decode_error,
    fail,
)
from tickstrata.collector.venues import binance_parsers as bp
from tickstrata.collector.venues.base import (
    Channel,
    ConnectionSpec,
    ControlMessage,
    DepthDiff,
    ParseResult,
    RestRequest,
    VenueAdapter,
    VenueEvent,
)
from tickstrata.collector.venues.binance_rest import (
    PREMIUM_INDEX_DECODER,
    BinanceRest,
    PremiumIndexBody,
    SymbolInfo,
    decode_body,
    premium_index_to_funding,
)
from tickstrata.common.events import Funding, Quarantine, validate_symbol


@dataclass(frozen=True, slots=True)
class _Route:
    """How to decode and parse one kind of message."""

    channel: Channel
    envelope: msgspec.json.Decoder[Any]  # the whole combined-stream frame, data typed: one decoding pass
    bare: msgspec.json.Decoder[Any]  # the data object alone (raw frames, and the general path)
    parser: Callable[[Any, Instrument, int, int], VenueEvent | DepthDiff]


def _route(
    channel: Channel, shape: type, parser: Callable[[Any, Instrument, int, int], VenueEvent | DepthDiff]
) -> _Route:
    envelope = bp.Envelope[shape]  # type: ignore[valid-type]  # a runtime generic alias, checked by msgspec
    return _Route(channel, msgspec.json.Decoder(envelope), msgspec.json.Decoder(shape), parser)


_ROUTES: Final = {
    Channel.TRADES: _route(Channel.TRADES, bp.AggTradeEvent, bp.parse_agg_trade),
    Channel.CANDLES: _route(Channel.CANDLES, bp.KlineEvent, bp.parse_kline),
    Channel.QUOTES: _route(Channel.QUOTES, bp.BookTickerEvent, bp.parse_book_ticker),
    Channel.BOOKS: _route(Channel.BOOKS, bp.DepthUpdateEvent, bp.parse_depth_update),
    Channel.FUNDING: _route(Channel.FUNDING, bp.MarkPriceEvent, bp.parse_mark_price),
}
_PROBE: Final = msgspec.json.Decoder(bp.FrameProbe)
_KEYS: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_COMBINED_PREFIX: Final = b'{"stream":"'
_STREAM_CACHE_LIMIT: Final = 65_536  # bounded: hostile frames may invent stream names with a known suffix
_DECODE_ERRORS: Final = (msgspec.MsgspecError, RecursionError, UnicodeError)
_KLINE_STREAMS: Final = {f"kline_{interval}": Channel.CANDLES for interval in bp.KLINE_INTERVAL_SECS}


class BinanceAdapter(BinanceRest, VenueAdapter):
    """What Binance spot and USD-M share: combined streams, the message shapes, the REST shapes."""

    max_streams_per_connection = 1024
    agg_trades_page_limit = 1000
    max_url_path_bytes: ClassVar[int] = 4096
    """Streams go in the URL (``/stream?streams=a/b``), so subscribing costs no messages against the rate limit;
    the path is kept under common server request-line limits (aiohttp's is 8190 bytes), ~200 streams."""
    stream_kinds: ClassVar[Mapping[str, Channel]]
    """Stream suffix (after ``<symbol>@``) → channel, for every variant this adapter parses."""
    event_kinds: ClassVar[Mapping[str, Channel]]
    """Payload event type ``e`` → channel, for raw (non-combined) frames."""
    stream_routes: ClassVar[Mapping[Channel, str]]
    """Channel → URL path prefix of the connection that carries it."""

    def __init__(self, registry: InstrumentRegistry, *, future_tolerance_ns: int = DEFAULT_FUTURE_TOLERANCE_NS) -> None:
        super().__init__(registry, future_tolerance_ns=future_tolerance_ns)
        routes = {suffix: _ROUTES[channel] for suffix, channel in self.stream_kinds.items()}
        self._routes_by_suffix = routes
        self._routes_by_suffix_bytes = {suffix.encode(): route for suffix, route in routes.items()}
        self._routes_by_event = {event: _ROUTES[channel] for event, channel in self.event_kinds.items()}
        # Whole stream names seen so far (b"btcusdt@aggTrade"): one dict lookup instead of a split per frame.
        self._routes_by_stream: dict[bytes, _Route] = {}

    # ---- WebSocket ------------------------------------------------------------------------------------------

    def connection_plan(self, symbols: Sequence[str], channels: Iterable[Channel]) -> list[ConnectionSpec]:
        """Combined-stream connections for ``symbols`` x ``channels``, split by route, stream cap and URL size.

        A symbol's streams stay next to each other, so a split rarely separates them. Raises ``ValueError`` for
        a channel the venue lacks and ``KeyError`` for a symbol missing from the registry (configuration errors).
        """
        wanted = list(dict.fromkeys(Channel(channel) for channel in channels))
        unsupported = [channel.value for channel in wanted if channel not in self.channel_streams]
        if unsupported:
            raise ValueError(f"{self.exchange} has no channel {', '.join(unsupported)}")
        by_prefix: dict[str, list[str]] = {}
        for symbol in dict.fromkeys(symbols):
            venue_symbol = self.registry.require(symbol).venue_symbol.lower()
            for channel in wanted:
                stream = f"{venue_symbol}@{self.channel_streams[channel]}"
                by_prefix.setdefault(self.stream_routes[channel], []).append(stream)
        plan: list[ConnectionSpec] = []
        for prefix, streams in by_prefix.items():
            base = f"{prefix}/stream?streams="
            chunk: list[str] = []
            length = len(base)
            for stream in streams:
                extra = len(stream) + (1 if chunk else 0)  # the "/" separator
                if chunk and (
                    len(chunk) >= self.max_streams_per_connection or length + extra > self.max_url_path_bytes
                ):
                    plan.append(ConnectionSpec(base + "/".join(chunk), tuple(chunk)))
                    chunk, length, extra = [], len(base), len(stream)
                chunk.append(stream)
                length += extra
            if chunk:
                plan.append(ConnectionSpec(base + "/".join(chunk), tuple(chunk)))
        return plan

    def _request(self, method: str, streams: Sequence[str] | None, request_id: int) -> bytes:
        if streams is not None and not 0 < len(streams) <= self.max_streams_per_connection:
            raise ValueError(f"{len(streams)} streams; a request carries 1..{self.max_streams_per_connection}")
        message: dict[str, object] = {"method": method, "id": request_id}
        if streams is not None:
            message["params"] = list(streams)
        return msgspec.json.encode(message)

    def subscribe_message(self, streams: Sequence[str], request_id: int) -> bytes:
        """``{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}``; the reply is ``{"result":null,"id":1}``."""
        return self._request("SUBSCRIBE", streams, request_id)

    def unsubscribe_message(self, streams: Sequence[str], request_id: int) -> bytes:
        return self._request("UNSUBSCRIBE", streams, request_id)

    def list_subscriptions_message(self, request_id: int) -> bytes:
        return self._request("LIST_SUBSCRIPTIONS", None, request_id)

    def parse(self, raw: bytes | str, ts_recv_ns: int) -> ParseResult:
        """Turn one received text frame into a ``ParseResult``. Never raises."""
        frame = raw if type(raw) is bytes else _as_bytes(raw)
        try:
            if not (len(frame) < MAX_FRAME_BYTES and frame.isascii()):  # the common case skips a call
                problem = check_frame(frame)
                if problem is not None:
                    return self._reject(frame, ts_recv_ns, problem)
            if frame.startswith(_COMBINED_PREFIX):
                stream = frame[11 : frame.find(b'"', 11)]
                route = self._routes_by_stream.get(stream)
                if route is None:
                    route = self._routes_by_suffix_bytes.get(stream[stream.find(b"@") + 1 :])
                    if route is not None and len(self._routes_by_stream) < _STREAM_CACHE_LIMIT:
                        self._routes_by_stream[stream] = route
                if route is not None:
                    try:
                        msg = route.envelope.decode(frame).data
                    except _DECODE_ERRORS as error:
                        return self._reject(frame, ts_recv_ns, classify_decode_error(error), route.channel)
                    return self._apply(route, msg, frame, ts_recv_ns)
            return self._parse_general(frame, ts_recv_ns)
        except Exception as error:  # the contract is "never raises"; PARSER_ERROR flags our bug
            return self._reject(frame, ts_recv_ns, classify_decode_error(error))

    def _apply(self, route: _Route, msg: Any, frame: bytes, ts_recv_ns: int) -> ParseResult:
        instrument = self.registry.by_venue_symbol(msg.venue_symbol)
        if instrument is None:
            problem = InvalidPayloadError(
                Reason.UNKNOWN_SYMBOL, f"{msg.venue_symbol!r} is not a {self.exchange} symbol"
            )
            return self._reject(frame, ts_recv_ns, problem, route.channel)
        try:
            item = route.parser(msg, instrument, ts_recv_ns, self.future_tolerance_ns)
        except Exception as error:  # InvalidPayloadError, or an event constructor refusing a value
            return self._reject(frame, ts_recv_ns, classify_decode_error(error), route.channel, instrument.symbol)
        if isinstance(item, DepthDiff):
            return ParseResult(depth=(item,))
        return ParseResult(events=(item,))

    def _parse_general(self, frame: bytes, ts_recv_ns: int) -> ParseResult:
        if not frame.strip():
            return self._reject(frame, ts_recv_ns, InvalidPayloadError(Reason.EMPTY_MESSAGE, "empty frame"))
        try:
            probe = _PROBE.decode(frame)
        except _DECODE_ERRORS as error:
            return self._reject(frame, ts_recv_ns, classify_decode_error(error))
        routed = self._route_probe(probe, frame)
        if not isinstance(routed, tuple):
            if isinstance(routed, ControlMessage):
                return ParseResult(control=routed)
            return self._reject(frame, ts_recv_ns, routed)
        route, body = routed
        try:
            msg = route.bare.decode(body)
        except _DECODE_ERRORS as error:
            return self._reject(frame, ts_recv_ns, classify_decode_error(error), route.channel)
        return self._apply(route, msg, frame, ts_recv_ns)

    def _route_probe(
        self, probe: bp.FrameProbe, frame: bytes
    ) -> tuple[_Route, bytes | msgspec.Raw] | ControlMessage | InvalidPayloadError:
        """Decide what a probed frame is: data to parse (route and body), a control message, or a problem."""
        if not isinstance(probe.stream, msgspec.UnsetType):
            return self._route_stream(probe.stream, probe.data)
        if not isinstance(probe.event_type, msgspec.UnsetType):
            if probe.event_type == "serverShutdown":
                return ControlMessage("server_shutdown", None, frame.decode()[: bp.DETAIL_LIMIT])
            route = self._routes_by_event.get(probe.event_type)
            return InvalidPayloadError(Reason.UNKNOWN_EVENT, probe.event_type) if route is None else (route, frame)
        reply = bp.parse_reply(probe, frame)
        if reply is not None:
            return reply
        if not isinstance(probe.update_id, msgspec.UnsetType) and Channel.QUOTES in self.channel_streams:
            return _ROUTES[Channel.QUOTES], frame  # a raw spot bookTicker: the only payload without an event type
        reason = Reason.UNKNOWN_EVENT if _KEYS.decode(frame) else Reason.EMPTY_MESSAGE
        return InvalidPayloadError(reason, "no stream, event type or reply")

    def _route_stream(
        self, stream: str, data: msgspec.Raw | msgspec.UnsetType
    ) -> tuple[_Route, msgspec.Raw] | InvalidPayloadError:
        route = self._routes_by_suffix.get(stream.partition("@")[2])
        if route is None:
            return InvalidPayloadError(Reason.UNKNOWN_STREAM, stream)
        if isinstance(data, msgspec.UnsetType):
            return InvalidPayloadError(Reason.MISSING_FIELD, "combined-stream frame without `data`")
        return route, data

    def _reject(
        self,
        frame: bytes,
        ts_recv_ns: int,
        problem: InvalidPayloadError,
        channel: Channel | None = None,
        symbol: str | None = None,
    ) -> ParseResult:
        quarantine = Quarantine.capture(
            frame,
            exchange=self.exchange,
            reason=problem.reason.value,
            detail=problem.detail[: bp.DETAIL_LIMIT],
            ts_recv_ns=ts_recv_ns,
            data_type=None if channel is None else channel.data_type,
            symbol=symbol,
        )
        return ParseResult(quarantined=(quarantine,))


def _as_bytes(raw: bytes | str | bytearray | memoryview) -> bytes:
    # surrogatepass never fails: a lone surrogate becomes bytes that check_frame then reports as invalid UTF-8.
    return raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)


class BinanceSpotAdapter(BinanceAdapter):
    """Binance spot. Streams: ``wss://stream.binance.com:9443/stream?streams=btcusdt@aggTrade/...``."""

    exchange = "binance"
    default_ws_url = "wss://stream.binance.com:9443"
    default_rest_url = "https://api.binance.com"
    max_incoming_messages_per_sec = 5
    rest_weight_limit_per_min = 6000
    kline_page_limit = 1000
    channel_streams: ClassVar[Mapping[Channel, str]] = {
        Channel.TRADES: "aggTrade",
        Channel.CANDLES: "kline_1m",
        Channel.QUOTES: "bookTicker",
        Channel.BOOKS: "depth@100ms",
    }
    stream_kinds: ClassVar[Mapping[str, Channel]] = {
        "aggTrade": Channel.TRADES,
        **_KLINE_STREAMS,
        "bookTicker": Channel.QUOTES,
        "depth": Channel.BOOKS,
        "depth@100ms": Channel.BOOKS,
    }
    event_kinds: ClassVar[Mapping[str, Channel]] = {
        "aggTrade": Channel.TRADES,
        "kline": Channel.CANDLES,
        "depthUpdate": Channel.BOOKS,
    }
    stream_routes: ClassVar[Mapping[Channel, str]] = dict.fromkeys(Channel, "")
    exchange_info_path = "/api/v3/exchangeInfo"
    exchange_info_weight = 20
    depth_path = "/api/v3/depth"
    depth_weights = ((100, 5), (500, 25), (1000, 50), (5000, 250))
    depth_limits = None
    klines_path = "/api/v3/klines"
    kline_weights = ((1000, 2),)
    agg_trades_path = "/api/v3/aggTrades"
    agg_trades_weight = 4

    # Spot market data writes every price and size with 8 decimals ("64123.45000000") whatever the tick size.
    string_decimals: ClassVar[int] = 8

    def _instrument(self, entry: SymbolInfo) -> Instrument | None:
        symbol = self.normalized_symbol(entry.base_asset, entry.quote_asset)
        try:
            validate_symbol(symbol)
        except (TypeError, ValueError):
            return None
        tick, step = self._filters(entry)
        return Instrument(
            exchange=self.exchange,
            symbol=symbol,
            venue_symbol=entry.symbol,
            base=entry.base_asset,
            quote=entry.quote_asset,
            kind=InstrumentKind.SPOT,
            tick_size=tick,
            lot_size=step,
            price_decimals=self.string_decimals,
            size_decimals=self.string_decimals,
            status=entry.status,
        )


class BinanceUsdmAdapter(BinanceAdapter):
    """Binance USD-M perpetuals. High-frequency streams on ``/public``, the rest on ``/market``.

    An unrouted URL only delivers ``/public`` streams: ``…/ws/btcusdt@markPrice`` silently gets nothing.
    """

    exchange = "binance-usdm"
    symbol_suffix = "-PERP"
    default_ws_url = "wss://fstream.binance.com"
    default_rest_url = "https://fapi.binance.com"
    max_incoming_messages_per_sec = 10
    rest_weight_limit_per_min = 2400
    kline_page_limit = 1500
    channel_streams: ClassVar[Mapping[Channel, str]] = {
        Channel.TRADES: "aggTrade",
        Channel.CANDLES: "kline_1m",
        Channel.QUOTES: "bookTicker",
        Channel.BOOKS: "depth@100ms",
        Channel.FUNDING: "markPrice@1s",
    }
    stream_kinds: ClassVar[Mapping[str, Channel]] = {
        "aggTrade": Channel.TRADES,
        **_KLINE_STREAMS,
        "bookTicker": Channel.QUOTES,
        "depth": Channel.BOOKS,
        "depth@100ms": Channel.BOOKS,
        "depth@250ms": Channel.BOOKS,
        "depth@500ms": Channel.BOOKS,
        "markPrice": Channel.FUNDING,
        "markPrice@1s": Channel.FUNDING,
    }
    event_kinds: ClassVar[Mapping[str, Channel]] = {
        "aggTrade": Channel.TRADES,
        "kline": Channel.CANDLES,
        "bookTicker": Channel.QUOTES,
        "depthUpdate": Channel.BOOKS,
        "markPriceUpdate": Channel.FUNDING,
    }
    # kline on /market is inferred from tardis-node's routing table (reference/exchanges.md §2.2, question 2).
    stream_routes: ClassVar[Mapping[Channel, str]] = {
        Channel.QUOTES: "/public",
        Channel.BOOKS: "/public",
        Channel.TRADES: "/market",
        Channel.CANDLES: "/market",
        Channel.FUNDING: "/market",
    }
    exchange_info_path = "/fapi/v1/exchangeInfo"
    exchange_info_weight = 1
    depth_path = "/fapi/v1/depth"
    depth_weights = ((50, 2), (100, 5), (500, 10), (1000, 20))
    depth_limits = frozenset({5, 10, 20, 50, 100, 500, 1000})
    klines_path = "/fapi/v1/klines"
    kline_weights = ((99, 1), (499, 2), (1000, 5), (1500, 10))
    agg_trades_path = "/fapi/v1/aggTrades"
    agg_trades_weight = 20
    premium_index_path: ClassVar[str] = "/fapi/v1/premiumIndex"

    def _instrument(self, entry: SymbolInfo) -> Instrument | None:
        if entry.contract_type != "PERPETUAL":  # dated futures (BTCUSDT_250926) have no normalized form yet
            return None
        symbol = self.normalized_symbol(entry.base_asset, entry.quote_asset)
        try:
            validate_symbol(symbol)
        except (TypeError, ValueError):
            return None
        tick, step = self._filters(entry)
        listed_ns = entry.onboard_date * 1_000_000 if entry.onboard_date and entry.onboard_date > 0 else None
        return Instrument(
            exchange=self.exchange,
            symbol=symbol,
            venue_symbol=entry.symbol,
            base=entry.base_asset,
            quote=entry.quote_asset,
            kind=InstrumentKind.PERPETUAL,
            tick_size=tick,
            lot_size=step,
            price_decimals=decimals_of(tick),  # USD-M writes prices with the tick's decimals ("0.10" → "87701.40")
            size_decimals=decimals_of(step),
            status=entry.status,
            listed_ns=listed_ns,
        )

    def premium_index_request(self, symbol: str) -> RestRequest:
        """Mark price, index price and funding for one perpetual (weight 1)."""
        return RestRequest(self.premium_index_path, {"symbol": self._venue_symbol(symbol)}, 1)

    def parse_premium_index(self, body: bytes, symbol: str, ts_recv_ns: int) -> Funding:
        premium: PremiumIndexBody = decode_body(PREMIUM_INDEX_DECODER, body)
        instrument = self.registry.require(symbol)
        if premium.symbol != instrument.venue_symbol:
            fail(Reason.UNKNOWN_SYMBOL, f"asked for {instrument.venue_symbol}, got {premium.symbol}")
        return premium_index_to_funding(premium, instrument, ts_recv_ns, self.future_tolerance_ns)
