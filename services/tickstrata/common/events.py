"""The normalized event model every service speaks: exact, typed, immutable.

Conventions (fixed here, relied on everywhere):

- Timestamps are integer nanoseconds since the Unix epoch and carry ``_ns`` in their names
  (``ts_event_ns``: the exchange's time, ``ts_recv_ns``: our receipt). The suffix costs nothing on the
  wire (entries are array-like, field names are never encoded) and makes the venue unit conversions
  (Binance ms, Kraken float seconds, Coinbase ISO strings) visible at the one line where they happen;
  a factor-of-1000 slip is the most common timestamp bug in market data. Durations follow suit (``interval_secs``).
- Prices, sizes and rates are ``Decimal`` from the parse boundary on and are kept exactly as the venue
  wrote them, trailing zeros included (``Decimal("64123.45000000")`` stays ``"64123.45000000"``): the
  string carries the instrument's precision, which the storage tiers use to prove an exact round trip.
- Constructors fail loudly: a non-``Decimal`` price (a float slipping through) or a NaN/infinity raises
  ``TypeError``/``ValueError``; so do malformed exchange ids and symbols and out-of-range timestamps.
  The same checks run when an entry is decoded, so a bad event can never enter a service through Redis.
  Domain rules (non-positive prices, future timestamps, …) belong to the collector, which quarantines.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Final, TypeAlias

import msgspec


class DataType(StrEnum):
    """A market-data type; the value is the suffix of its stream name (``md:<exchange>:<value>``)."""

    TRADES = "trades"
    CANDLES = "candles"
    QUOTES = "quotes"
    BOOKS = "books"
    FUNDING = "funding"
    INSTRUMENTS = "instruments"
    """Not market data but its key: each instrument's precision as the collector loaded it (``InstrumentSpec``)."""


class Side(StrEnum):
    """The taker (aggressor) side of a trade."""

    BUY = "buy"
    SELL = "sell"


class CandleSource(StrEnum):
    """Where a candle came from: the venue's stream, its REST history, or built by us from trades."""

    WS = "ws"
    REST = "rest"
    BUILT = "built"


class GapKind(StrEnum):
    """Why continuity was lost.

    Adding a member is a schema change: an older reader cannot decode it, so bump ``SCHEMA_VERSION``.
    """

    DISCONNECT = "disconnect"  # the socket closed or was closed by the watchdog
    SEQUENCE = "sequence"  # a book/update sequence number jumped
    TRADE_ID = "trade_id"  # consecutive trade ids skipped values
    CHECKSUM = "checksum"  # a local book failed the venue's checksum and was rebuilt
    STALE = "stale"  # no message within the watchdog timeout while the socket stayed open
    RESTART = "restart"  # the collector process restarted
    # Schema version 2:
    STREAM_LOSS = "stream_loss"  # a stream entry was deleted before every consumer group had acknowledged it
    BACKPRESSURE = "backpressure"  # a collector could not publish in time and dropped events (quotes, books)


# Lower-case ASCII with single inner hyphens: the id also appears in Kubernetes object names and labels.
_EXCHANGE_RE: Final = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_EXCHANGE_MAX_LENGTH: Final = 32
# BASE-QUOTE, or BASE-QUOTE-PERP for perpetuals; digits allowed (1000PEPE-USDT); "BTC-PERP" is refused because
# it would read as a spot pair quoted in "PERP".
_SYMBOL_RE: Final = re.compile(r"[A-Z0-9]{1,24}-(?!PERP$)[A-Z0-9]{1,24}(?:-PERP)?")
# Ids seen valid once skip the regex on the hot decode path. Bounded so hostile input cannot grow it.
_VALID_CACHE_LIMIT: Final = 4096
_valid_exchanges: set[str] = set()
_valid_symbols: set[str] = set()
_INT64_LIMIT: Final = 2**63  # storage columns are signed 64-bit nanoseconds
QUARANTINE_RAW_LIMIT_BYTES: Final = 64 * 1024
MAX_DECIMALS: Final = 18
"""The most decimals a price or size may carry: 18 decimals of a value below 1e20 still fit a scaled int128, and
every venue we know writes at most 8 (a scaled int64 holds them up to 9.2e10)."""


def validate_exchange(exchange: str) -> str:
    """Return ``exchange`` if it is a valid exchange id (``binance``, ``binance-usdm``); raise ``ValueError``."""
    if exchange in _valid_exchanges:
        return exchange
    if not isinstance(exchange, str):
        raise TypeError(f"exchange id must be str, got {type(exchange).__name__}")
    if len(exchange) > _EXCHANGE_MAX_LENGTH or _EXCHANGE_RE.fullmatch(exchange) is None:
        raise ValueError(
            f"invalid exchange id {exchange!r}: expected lower-case letters and digits with single inner "
            f"hyphens, at most {_EXCHANGE_MAX_LENGTH} characters (e.g. 'binance-usdm')"
        )
    if len(_valid_exchanges) < _VALID_CACHE_LIMIT:
        _valid_exchanges.add(exchange)
    return exchange


def validate_symbol(symbol: str) -> str:
    """Return ``symbol`` if it is a normalized symbol (``BTC-USDT``, ``BTC-USDT-PERP``); raise ``ValueError``."""
    if symbol in _valid_symbols:
        return symbol
    if not isinstance(symbol, str):
        raise TypeError(f"symbol must be str, got {type(symbol).__name__}")
    if _SYMBOL_RE.fullmatch(symbol) is None:
        raise ValueError(
            f"invalid symbol {symbol!r}: expected normalized upper-case BASE-QUOTE or BASE-QUOTE-PERP "
            "(e.g. 'BTC-USDT', 'BTC-USDT-PERP'); venue spellings stay inside their adapter"
        )
    if len(_valid_symbols) < _VALID_CACHE_LIMIT:
        _valid_symbols.add(symbol)
    return symbol


def _check_decimal(name: str, value: object) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__} {value!r}")
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite Decimal, got {value}")


def _check_optional_decimal(name: str, value: object) -> None:
    if value is not None:
        _check_decimal(name, value)


def _check_enum(name: str, value: object, enum: type[StrEnum]) -> None:
    # A bare string would encode fine but a misspelt one would only fail in the reader, as a poison entry.
    if not isinstance(value, enum):
        raise TypeError(f"{name} must be a {enum.__name__} member, got {value!r}")


def _check_uint(name: str, value: object) -> None:
    # `type() is int` rather than isinstance: bool is an int subclass and never a count or a timestamp.
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if not 0 <= value < _INT64_LIMIT:
        raise ValueError(f"{name} must be within [0, 2**63), got {value}")


def check_decimals(name: str, value: object) -> None:
    """Refuse a precision (decimals a venue writes) that is not an int in [0, MAX_DECIMALS]."""
    if type(value) is not int or not 0 <= value <= MAX_DECIMALS:
        raise ValueError(f"{name} must be an int in [0, {MAX_DECIMALS}], got {value!r}")


def _check_optional_uint(name: str, value: object) -> None:
    if value is not None:
        _check_uint(name, value)


class _Struct(msgspec.Struct, frozen=True, array_like=True, gc=False):
    # Subclasses repeat frozen=True only for mypy's dataclass_transform; msgspec inherits it anyway.
    # array_like: fields travel positionally, so an entry carries no field names (about half of a JSON
    # object's bytes). New fields may only be appended with a default; older readers ignore the tail.
    # gc=False: frozen events hold no reference cycles, and skipping GC tracking makes allocation cheaper.
    pass


class BookLevel(_Struct, frozen=True):
    """One price level of an order book."""

    price: Decimal
    size: Decimal

    def __post_init__(self) -> None:
        price, size = self.price, self.size
        if type(price) is type(size) is Decimal and price.is_finite() and size.is_finite():
            return  # the hot path: see Trade.__post_init__
        _check_decimal("price", price)
        _check_decimal("size", size)


# Tags are single letters because each is repeated in every encoded event; they are the union's wire names.
class Trade(_Struct, frozen=True, tag="t"):
    """One executed trade, identified by the venue's trade id."""

    exchange: str
    symbol: str
    trade_id: str
    price: Decimal
    size: Decimal
    side: Side
    ts_event_ns: int
    ts_recv_ns: int
    backfilled: bool = False
    """True when fetched from the venue's REST history to fill a gap rather than received live."""

    def __post_init__(self) -> None:
        # Every consumer decodes every trade, and validation was over half of the decode time, so the common
        # case is one inlined expression (a third cheaper than the helper calls); the helpers below run only
        # when it fails, to name the bad field. A Decimal subclass or an id not cached yet merely takes them.
        price, size, ts_event_ns, ts_recv_ns = self.price, self.size, self.ts_event_ns, self.ts_recv_ns
        if (
            self.exchange in _valid_exchanges
            and self.symbol in _valid_symbols
            and type(self.trade_id) is str
            and self.trade_id
            and type(price) is type(size) is Decimal
            and price.is_finite()
            and size.is_finite()
            and type(self.side) is Side
            and type(ts_event_ns) is type(ts_recv_ns) is int
            and 0 <= ts_event_ns < _INT64_LIMIT
            and 0 <= ts_recv_ns < _INT64_LIMIT
        ):
            return
        validate_exchange(self.exchange)
        validate_symbol(self.symbol)
        if not isinstance(self.trade_id, str) or not self.trade_id:
            raise ValueError(f"trade_id must be a non-empty str, got {self.trade_id!r}")
        _check_decimal("price", self.price)
        _check_decimal("size", self.size)
        _check_enum("side", self.side, Side)
        _check_uint("ts_event_ns", self.ts_event_ns)
        _check_uint("ts_recv_ns", self.ts_recv_ns)


class Candle(_Struct, frozen=True, tag="c"):
    """An OHLCV candle keyed by ``(exchange, symbol, interval_secs, open_time_ns)``.

    ``ts_event_ns`` is the venue's time of this update (or the last trade for built candles); an open
    candle is updated until one with ``closed=True`` supersedes it.
    """

    exchange: str
    symbol: str
    interval_secs: int
    open_time_ns: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal | None  # Kraken and Coinbase candles do not report it
    trade_count: int | None  # nor this
    closed: bool
    source: CandleSource
    ts_event_ns: int
    ts_recv_ns: int

    def __post_init__(self) -> None:
        validate_exchange(self.exchange)
        validate_symbol(self.symbol)
        if type(self.interval_secs) is not int or self.interval_secs <= 0:
            raise ValueError(f"interval_secs must be a positive int, got {self.interval_secs!r}")
        _check_uint("open_time_ns", self.open_time_ns)
        for name in ("open", "high", "low", "close", "volume"):
            _check_decimal(name, getattr(self, name))
        _check_optional_decimal("quote_volume", self.quote_volume)
        _check_optional_uint("trade_count", self.trade_count)
        if type(self.closed) is not bool:
            raise TypeError(f"closed must be bool, got {self.closed!r}")
        _check_enum("source", self.source, CandleSource)
        _check_uint("ts_event_ns", self.ts_event_ns)
        _check_uint("ts_recv_ns", self.ts_recv_ns)

    @property
    def close_time_ns(self) -> int:
        """The exclusive end of the candle's interval."""
        return self.open_time_ns + self.interval_secs * 1_000_000_000


class Quote(_Struct, frozen=True, tag="q"):
    """Best bid and offer with their sizes."""

    exchange: str
    symbol: str
    bid_price: Decimal
    bid_size: Decimal
    ask_price: Decimal
    ask_size: Decimal
    ts_event_ns: int
    ts_recv_ns: int

    def __post_init__(self) -> None:
        bid_price, bid_size, ask_price, ask_size = self.bid_price, self.bid_size, self.ask_price, self.ask_size
        ts_event_ns, ts_recv_ns = self.ts_event_ns, self.ts_recv_ns
        if (  # the hot path: see Trade.__post_init__
            self.exchange in _valid_exchanges
            and self.symbol in _valid_symbols
            and type(bid_price) is type(bid_size) is type(ask_price) is type(ask_size) is Decimal
            and bid_price.is_finite()
            and bid_size.is_finite()
            and ask_price.is_finite()
            and ask_size.is_finite()
            and type(ts_event_ns) is type(ts_recv_ns) is int
            and 0 <= ts_event_ns < _INT64_LIMIT
            and 0 <= ts_recv_ns < _INT64_LIMIT
        ):
            return
        validate_exchange(self.exchange)
        validate_symbol(self.symbol)
        _check_decimal("bid_price", self.bid_price)
        _check_decimal("bid_size", self.bid_size)
        _check_decimal("ask_price", self.ask_price)
        _check_decimal("ask_size", self.ask_size)
        _check_uint("ts_event_ns", self.ts_event_ns)
        _check_uint("ts_recv_ns", self.ts_recv_ns)


class BookSnapshot(_Struct, frozen=True, tag="b"):
    """The top N levels of a local order book (best first), sampled at an interval.

    ``sequence`` is the venue's update id the book reflects; ``None`` where the venue validates books by
    checksum only (Kraken).
    """

    exchange: str
    symbol: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    sequence: int | None
    ts_event_ns: int
    ts_recv_ns: int

    def __post_init__(self) -> None:
        validate_exchange(self.exchange)
        validate_symbol(self.symbol)
        # Levels validate themselves; a list would make the frozen event mutable through its contents.
        if type(self.bids) is not tuple or type(self.asks) is not tuple:
            raise TypeError("bids and asks must be tuples of BookLevel")
        for levels in (self.bids, self.asks):
            for level in levels:
                if type(level) is not BookLevel:
                    raise TypeError(f"book levels must be BookLevel, got {type(level).__name__}")
        _check_optional_uint("sequence", self.sequence)
        _check_uint("ts_event_ns", self.ts_event_ns)
        _check_uint("ts_recv_ns", self.ts_recv_ns)


class Funding(_Struct, frozen=True, tag="f"):
    """A perpetual's funding rate, with mark and index price where the venue sends them in the same message."""

    exchange: str
    symbol: str
    rate: Decimal
    mark_price: Decimal | None  # OKX publishes mark price on a separate channel
    index_price: Decimal | None
    next_funding_time_ns: int
    ts_event_ns: int
    ts_recv_ns: int

    def __post_init__(self) -> None:
        validate_exchange(self.exchange)
        validate_symbol(self.symbol)
        _check_decimal("rate", self.rate)
        _check_optional_decimal("mark_price", self.mark_price)
        _check_optional_decimal("index_price", self.index_price)
        _check_uint("next_funding_time_ns", self.next_funding_time_ns)
        _check_uint("ts_event_ns", self.ts_event_ns)
        _check_uint("ts_recv_ns", self.ts_recv_ns)


class InstrumentSpec(_Struct, frozen=True, tag="i"):
    """An instrument's precision as the collector loaded it from the venue, valid from ``ts_event_ns`` on.

    The hot tier keeps prices as doubles, which forget how many decimals the venue wrote; this event records them,
    so the warm and cold tiers can store prices and sizes as exact scaled integers (``price * 10**price_decimals``)
    and every value formats back to the venue's string. ``ts_event_ns`` is when the collector loaded the list: a
    reader takes, per instrument, the newest spec at or before a row's time (the oldest one for older rows, which
    were written with the precision the venue had then as far as we know). ``tick_size`` and ``lot_size`` are the
    venue's increments, as it wrote them.
    """

    exchange: str
    symbol: str
    price_decimals: int
    size_decimals: int
    tick_size: Decimal
    lot_size: Decimal
    ts_event_ns: int
    ts_recv_ns: int

    def __post_init__(self) -> None:
        validate_exchange(self.exchange)
        validate_symbol(self.symbol)
        check_decimals("price_decimals", self.price_decimals)
        check_decimals("size_decimals", self.size_decimals)
        for name in ("tick_size", "lot_size"):
            _check_decimal(name, getattr(self, name))
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        _check_uint("ts_event_ns", self.ts_event_ns)
        _check_uint("ts_recv_ns", self.ts_recv_ns)


class Gap(_Struct, frozen=True, tag="g"):
    """A loss of continuity: events of ``data_type`` with ``start_ns <= ts_event_ns < end_ns`` may be missing.

    The window is half-open, like every time window in tickstrata (docs/architecture.md, "Time windows").
    ``symbol`` is ``None`` when the whole feed is affected (a dropped connection carries every symbol).
    ``start_ns`` is the last moment known good (the last event received), inclusive; ``end_ns`` is the first
    known-good-again event time **plus 1 ns**, exclusive. Venues stamp in milliseconds and several events share
    one stamp, so events stamped exactly at either bound may be among the missing: the +1 keeps the first good
    stamp inside the window, and a backfill of the window de-duplicates by id. Always ``end_ns > start_ns``.
    Entries of schema version 2 or older carried a closed end; they decode with ``end_ns + 1``
    (``tickstrata.common.streams``). ``cause`` is a human-readable detail for the gap list.
    """

    exchange: str
    data_type: DataType
    symbol: str | None
    kind: GapKind
    start_ns: int
    end_ns: int
    cause: str
    ts_recv_ns: int

    def __post_init__(self) -> None:
        validate_exchange(self.exchange)
        _check_enum("data_type", self.data_type, DataType)
        if self.symbol is not None:
            validate_symbol(self.symbol)
        _check_enum("kind", self.kind, GapKind)
        _check_uint("start_ns", self.start_ns)
        _check_uint("end_ns", self.end_ns)
        if self.end_ns <= self.start_ns:
            raise ValueError(f"gap window is empty or inverted: [{self.start_ns}, {self.end_ns})")
        if not isinstance(self.cause, str):
            raise TypeError(f"cause must be str, got {type(self.cause).__name__}")
        _check_uint("ts_recv_ns", self.ts_recv_ns)


_REASON_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Quarantine(_Struct, frozen=True, tag="x"):
    """Input the collector refused, kept with a reason instead of being dropped silently.

    ``reason`` is a stable snake_case code (``non_finite_price``, ``future_timestamp``) to count by;
    ``detail`` says what exactly was wrong. ``raw`` holds at most ``QUARANTINE_RAW_LIMIT_BYTES`` of the venue
    payload (use ``Quarantine.capture``); ``raw_size_bytes`` is the payload's full size.
    """

    exchange: str
    data_type: DataType | None  # None when the payload could not even be routed to a channel
    symbol: str | None  # the normalized symbol when known; the venue spelling is in ``raw``
    reason: str
    detail: str
    raw: bytes
    raw_size_bytes: int
    ts_recv_ns: int

    def __post_init__(self) -> None:
        validate_exchange(self.exchange)
        if self.data_type is not None:
            _check_enum("data_type", self.data_type, DataType)
        if self.symbol is not None:
            validate_symbol(self.symbol)
        if not isinstance(self.reason, str) or _REASON_RE.fullmatch(self.reason) is None:
            raise ValueError(f"quarantine reason must be a snake_case code, got {self.reason!r}")
        if not isinstance(self.detail, str):
            raise TypeError(f"detail must be str, got {type(self.detail).__name__}")
        if not isinstance(self.raw, bytes):
            raise TypeError(f"raw must be bytes, got {type(self.raw).__name__}")
        if len(self.raw) > QUARANTINE_RAW_LIMIT_BYTES:
            raise ValueError(f"raw holds {len(self.raw)} bytes, over the {QUARANTINE_RAW_LIMIT_BYTES}-byte limit")
        _check_uint("raw_size_bytes", self.raw_size_bytes)
        if self.raw_size_bytes < len(self.raw):
            raise ValueError(f"raw_size_bytes {self.raw_size_bytes} is below the {len(self.raw)} bytes kept")
        _check_uint("ts_recv_ns", self.ts_recv_ns)

    @classmethod
    def capture(
        cls,
        raw: bytes | str,
        *,
        exchange: str,
        reason: str,
        detail: str,
        ts_recv_ns: int,
        data_type: DataType | None = None,
        symbol: str | None = None,
    ) -> Quarantine:
        """Build a quarantine event, truncating an oversized payload (a 1 MiB frame must not bloat Redis)."""
        # surrogateescape keeps invalid UTF-8 that arrived as text byte-for-byte.
        payload = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
        return cls(
            exchange=exchange,
            data_type=data_type,
            symbol=symbol,
            reason=reason,
            detail=detail,
            raw=payload[:QUARANTINE_RAW_LIMIT_BYTES],
            raw_size_bytes=len(payload),
            ts_recv_ns=ts_recv_ns,
        )


MarketDataEvent: TypeAlias = Trade | Candle | Quote | BookSnapshot | Funding | InstrumentSpec
Event: TypeAlias = Trade | Candle | Quote | BookSnapshot | Funding | InstrumentSpec | Gap | Quarantine
EVENT_TYPES: Final = (Trade, Candle, Quote, BookSnapshot, Funding, InstrumentSpec, Gap, Quarantine)

_DATA_TYPE_BY_CLASS: Final[dict[type, DataType]] = {
    Trade: DataType.TRADES,
    Candle: DataType.CANDLES,
    Quote: DataType.QUOTES,
    BookSnapshot: DataType.BOOKS,
    Funding: DataType.FUNDING,
    InstrumentSpec: DataType.INSTRUMENTS,
}


def data_type_of(event: MarketDataEvent) -> DataType:
    """Return the data type (and so the stream) a market-data event belongs to."""
    try:
        return _DATA_TYPE_BY_CLASS[type(event)]
    except KeyError:
        raise TypeError(f"{type(event).__name__} is not a market-data event") from None
