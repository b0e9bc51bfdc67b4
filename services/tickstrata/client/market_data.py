"""`MarketDataClient`: a small synchronous client of the query service's MarketDataService.

    with MarketDataClient("127.0.0.1:50055") as client:
        for row in client.latest("BTC-USDT"):
            print(row.exchange, row.price, row.age_ms, row.stale)

Staleness is judged here, against this machine's clock: a price is stale when tickstrata received it more than
`stale_after_ms` ago (the contract carries ``ts_recv_ns`` for exactly this).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Final

import grpc

from tickstrata.marketdata.v1 import market_data_pb2
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.marketdata.v1 import market_data_service_pb2_grpc as pb_grpc

DEFAULT_ADDRESS: Final = "127.0.0.1:50055"
DEFAULT_TIMEOUT_SECS: Final = 5.0
DEFAULT_STALE_AFTER_MS: Final = 5000
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
    )


class MarketDataClient:
    """A channel to the query service; close it (or use `with`) when done."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout_secs: float = DEFAULT_TIMEOUT_SECS,
        stale_after_ms: float = DEFAULT_STALE_AFTER_MS,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.address = address
        self.timeout_secs = timeout_secs
        self.stale_after_ms = stale_after_ms
        self._clock_ns = clock_ns
        self._channel = grpc.insecure_channel(address)
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
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return InvalidQueryError(f"invalid request: {details}", code)
        return QueryError(f"{rpc} failed at {self.address} ({code.name}): {details}", code)
