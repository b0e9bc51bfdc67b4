"""`MarketDataClient`: a small synchronous client of the query service's MarketDataService.

    with MarketDataClient("127.0.0.1:50055") as client:
        for row in client.latest("BTC-USDT"):
            print(row.exchange, row.price, row.age_ms, row.stale)

Staleness is judged here, against this machine's clock: a price is stale when tickstrata received it more than
`stale_after_ms` ago (the contract carries ``ts_recv_ns`` for exactly this).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Final

import grpc
import pandas as pd
import pyarrow as pa
from opentelemetry import propagate

from tickstrata.client.timeargs import TimeArg, interval_secs, to_ns
from tickstrata.marketdata.v1 import market_data_pb2
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.marketdata.v1 import market_data_service_pb2_grpc as pb_grpc

DEFAULT_ADDRESS: Final = "127.0.0.1:50055"
DEFAULT_TIMEOUT_SECS: Final = 5.0
DEFAULT_STALE_AFTER_MS: Final = 5000
MAX_RECEIVE_MESSAGE_BYTES: Final = 256 * 1024 * 1024
_NS_PER_MS: Final = 1_000_000


class QueryError(Exception):
    """A MarketDataService call failed; `code` is the gRPC status."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


class QueryServiceUnavailableError(QueryError, ConnectionError):
    """The query service (or the store behind it) could not be reached."""


class InvalidQueryError(QueryError, ValueError):
    """The service refused the request as malformed (INVALID_ARGUMENT); the message names the field."""


class NotFoundError(QueryError, LookupError):
    """tickstrata holds no data for the exchange or symbol asked for (NOT_FOUND)."""


NUMERIC_ENCODINGS: Final[dict[str, market_data_pb2.NumericEncoding.ValueType]] = {
    "decimal": market_data_pb2.NUMERIC_ENCODING_DECIMAL,
    "float": market_data_pb2.NUMERIC_ENCODING_FLOAT64,
    "string": market_data_pb2.NUMERIC_ENCODING_STRING,
}
DEFAULT_BULK_TIMEOUT_SECS: Final = 300.0
Progress = Callable[[int], None]
"""Called with the rows received so far after each streamed batch."""


def read_batches(responses: Iterable[Any], progress: Progress | None = None) -> pa.Table:
    """Concatenate the streamed Arrow IPC slices into one table (dictionaries unified across slices)."""
    tables: list[pa.Table] = []
    rows = 0
    for response in responses:
        table = pa.ipc.open_stream(response.arrow_ipc).read_all()
        tables.append(table)
        rows += table.num_rows
        if progress is not None:
            progress(rows)
    if not tables:
        raise QueryError("the query service answered with no Arrow data", grpc.StatusCode.INTERNAL)
    return pa.concat_tables(tables).unify_dictionaries().combine_chunks()


def trace_metadata() -> tuple[tuple[str, str | bytes], ...]:
    """The caller's OpenTelemetry context as gRPC metadata, so the query service continues the same trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple(carrier.items())


@dataclass(frozen=True, slots=True)
class LatestPriceRow:
    """The latest price of one symbol on one exchange."""

    exchange: str
    symbol: str
    price: Decimal
    ts_event_ns: int
    """Exchange time of the last trade, ns since the epoch."""
    ts_recv_ns: int
    """When tickstrata received it, ns since the epoch."""
    age_ms: float
    """Milliseconds between ts_recv_ns and the client's clock when the answer arrived."""
    stale: bool
    """True when age_ms exceeds the client's `stale_after_ms`."""
    size: Decimal | None = None
    """Size of the last trade, when the venue reports it."""


@dataclass(frozen=True, slots=True)
class LatestPrices:
    """A GetLatestPrice answer: rows (request order, else by exchange) and named exchanges without a price."""

    symbol: str
    rows: tuple[LatestPriceRow, ...]
    missing_exchanges: tuple[str, ...]


def row_from_message(message: market_data_pb2.LatestPrice, *, now_ns: int, stale_after_ms: float) -> LatestPriceRow:
    """Convert one `LatestPrice` message; raise `ValueError` if its price is not an exact finite decimal."""
    try:
        price = Decimal(message.price)
    except InvalidOperation:
        raise ValueError(f"{message.exchange} {message.symbol}: price {message.price!r} is not a decimal") from None
    if not price.is_finite():
        raise ValueError(f"{message.exchange} {message.symbol}: price {message.price!r} is not finite")
    age_ms = (now_ns - message.ts_recv_ns) / _NS_PER_MS
    return LatestPriceRow(
        exchange=message.exchange,
        symbol=message.symbol,
        price=price,
        ts_event_ns=message.ts_event_ns,
        ts_recv_ns=message.ts_recv_ns,
        age_ms=age_ms,
        stale=age_ms > stale_after_ms,
        size=Decimal(message.size) if message.size else None,
    )


class LatestSubscription(Iterator[LatestPriceRow]):
    """A live SubscribeLatest call: iterate for rows; `close()` cancels the call (safe from another thread)."""

    def __init__(
        self,
        call: Any,
        convert: Callable[[market_data_pb2.LatestPrice], LatestPriceRow],
        error: Callable[[grpc.RpcError], QueryError],
    ) -> None:
        self._call = call
        self._convert = convert
        self._error = error
        self._closed = False

    def __next__(self) -> LatestPriceRow:
        try:
            response: pb.SubscribeLatestResponse = next(self._call)
        except grpc.RpcError as error:
            # Cancelled: by close(), or by closing the client's channel; either way the subscription is over.
            if self._closed or getattr(error, "code", lambda: None)() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise self._error(error) from None
        return self._convert(response.price)

    def close(self) -> None:
        self._closed = True
        self._call.cancel()

    def __enter__(self) -> LatestSubscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class MarketDataClient:
    """A channel to the query service; close it (or use `with`) when done."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout_secs: float = DEFAULT_TIMEOUT_SECS,
        bulk_timeout_secs: float = DEFAULT_BULK_TIMEOUT_SECS,
        stale_after_ms: float = DEFAULT_STALE_AFTER_MS,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.address = address
        self.timeout_secs = timeout_secs
        self.bulk_timeout_secs = bulk_timeout_secs
        self.stale_after_ms = stale_after_ms
        self._clock_ns = clock_ns
        # Bulk answers arrive in slices well below this; the default 4 MiB would refuse a wide slice.
        self._channel = grpc.insecure_channel(
            address, options=[("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES)]
        )
        self._stub = pb_grpc.MarketDataServiceStub(self._channel)

    def __enter__(self) -> MarketDataClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def latest_prices(self, symbol: str, exchanges: Sequence[str] = ()) -> LatestPrices:
        """The latest price of `symbol` on `exchanges` (none: every venue), with the named exchanges missing."""
        request = pb.GetLatestPriceRequest(symbol=symbol, exchanges=list(exchanges))
        try:
            response: pb.GetLatestPriceResponse = self._stub.GetLatestPrice(request, timeout=self.timeout_secs)
        except grpc.RpcError as error:
            raise self._error(error, "GetLatestPrice") from None
        now_ns = self._clock_ns()
        rows = tuple(
            row_from_message(message, now_ns=now_ns, stale_after_ms=self.stale_after_ms) for message in response.prices
        )
        return LatestPrices(symbol, rows, tuple(response.missing_exchanges))

    def latest(self, symbol: str, exchanges: Sequence[str] = ()) -> list[LatestPriceRow]:
        """The latest price of `symbol` per exchange: on `exchanges`, or on every venue holding it if none."""
        return list(self.latest_prices(symbol, exchanges).rows)

    def subscribe_latest(
        self, symbols: Sequence[str], exchanges: Sequence[str] = (), *, min_interval_ms: float = 0
    ) -> LatestSubscription:
        """Live latest prices: the current value of each matching instrument, then every change (at most one per
        instrument per `min_interval_ms`). Iterate it; `close()` (from any thread) ends it."""
        request = pb.SubscribeLatestRequest(
            symbols=list(symbols), exchanges=list(exchanges), min_interval_ns=int(min_interval_ms * _NS_PER_MS)
        )
        call = self._stub.SubscribeLatest(request, metadata=trace_metadata())

        def convert(message: market_data_pb2.LatestPrice) -> LatestPriceRow:
            return row_from_message(message, now_ns=self._clock_ns(), stale_after_ms=self.stale_after_ms)

        return LatestSubscription(call, convert, lambda error: self._error(error, "SubscribeLatest"))

    def _numeric(self, numeric: str) -> market_data_pb2.NumericEncoding.ValueType:
        try:
            return NUMERIC_ENCODINGS[numeric]
        except KeyError:
            raise ValueError(f"numeric must be one of {', '.join(NUMERIC_ENCODINGS)} (got {numeric!r})") from None

    def candles(
        self,
        exchange: str,
        symbol: str,
        interval: str | int = "1m",
        *,
        start: TimeArg,
        end: TimeArg | None = None,
        include_forming: bool = False,
        numeric: str = "decimal",
        progress: Progress | None = None,
    ) -> pa.Table:
        """Candles of one instrument over [start, end) at `interval` ("1m" "5m" "1h" "1d", or seconds), as Arrow.

        Prices and volumes are exact decimal128 by default (`numeric="float"` for float64, `"string"` for text).
        """
        now_ns = self._clock_ns()
        request = pb.GetCandlesRequest(
            exchange=exchange,
            symbol=symbol,
            interval_secs=interval_secs(interval),
            start_ns=to_ns(start, now_ns=now_ns),
            end_ns=0 if end is None else to_ns(end, now_ns=now_ns),
            include_forming=include_forming,
            numeric_encoding=self._numeric(numeric),
        )
        try:
            call = self._stub.GetCandles(request, timeout=self.bulk_timeout_secs, metadata=trace_metadata())
            return read_batches(call, progress)
        except grpc.RpcError as error:
            raise self._error(error, "GetCandles") from None

    def trades(
        self,
        exchange: str,
        symbol: str,
        *,
        start: TimeArg,
        end: TimeArg | None = None,
        numeric: str = "decimal",
        progress: Progress | None = None,
    ) -> pa.Table:
        """Trades of one instrument over [start, end), in time order, as Arrow."""
        now_ns = self._clock_ns()
        request = pb.GetTradesRequest(
            exchange=exchange,
            symbol=symbol,
            start_ns=to_ns(start, now_ns=now_ns),
            end_ns=0 if end is None else to_ns(end, now_ns=now_ns),
            numeric_encoding=self._numeric(numeric),
        )
        try:
            call = self._stub.GetTrades(request, timeout=self.bulk_timeout_secs, metadata=trace_metadata())
            return read_batches(call, progress)
        except grpc.RpcError as error:
            raise self._error(error, "GetTrades") from None

    def candles_df(self, exchange: str, symbol: str, interval: str | int = "1m", **kwargs: Any) -> pd.DataFrame:
        """`candles` as a pandas DataFrame indexed by open time (UTC); decimal columns hold exact `Decimal`s."""
        frame: pd.DataFrame = self.candles(exchange, symbol, interval, **kwargs).to_pandas()
        return frame.set_index("open_time_ns")

    def trades_df(self, exchange: str, symbol: str, **kwargs: Any) -> pd.DataFrame:
        """`trades` as a pandas DataFrame indexed by event time (UTC); decimal columns hold exact `Decimal`s."""
        frame: pd.DataFrame = self.trades(exchange, symbol, **kwargs).to_pandas()
        return frame.set_index("ts_event_ns")

    def _error(self, error: grpc.RpcError, rpc: str) -> QueryError:
        # Errors raised by a call are also grpc.Call (code, details); the stubs type them as plain RpcError.
        code_of = getattr(error, "code", None)
        details_of = getattr(error, "details", None)
        code: grpc.StatusCode = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
        details: str = (details_of() if callable(details_of) else None) or str(error)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return QueryServiceUnavailableError(
                f"query service at {self.address} unavailable ({code.name}): {details}", code
            )
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
            return InvalidQueryError(f"invalid request: {details}", code)
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFoundError(details, code)
        return QueryError(f"{rpc} failed at {self.address} ({code.name}): {details}", code)
