"""GetLatestPrice, the pure part: request validation, cache key names and response building. No Redis I/O here.

The servicer does the I/O in one of two shapes, both one MGET round trip for the values:

- exchanges named: MGET ``px:<exchange>:<symbol>`` for each, in request order; the ones without a value (or
  with a value this version cannot decode) are the response's ``missing_exchanges``.
- no exchange named: SCAN ``px:*:<symbol>`` to find every venue holding the symbol, then MGET those keys;
  prices are sorted by exchange id and ``missing_exchanges`` stays empty (nothing was named).

A value that does not decode, or holds a price or size outside the stored bounds (`bad_values`), is left out like
a missing venue and reported back to the servicer, which counts and logs it: it is never formatted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Final, NamedTuple

from tickstrata.common.events import validate_exchange, validate_symbol
from tickstrata.common.streams import (
    CacheValueDecodeError,
    LatestPrice,
    decode_latest_price,
    latest_price_key,
    parse_latest_price_key,
)
from tickstrata.marketdata.v1 import market_data_pb2
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.query.bad_values import latest_price_problem

MAX_EXCHANGES: Final = 64
"""Upper bound on exchanges named in one request (there are far fewer venues; this only bounds hostile input)."""


class InvalidLatestPriceRequestError(ValueError):
    """A GetLatestPrice request the service refuses with INVALID_ARGUMENT; the message names the field."""


class LatestPriceQuery(NamedTuple):
    symbol: str
    exchanges: tuple[str, ...]
    """Exchanges named by the request, deduplicated in request order; empty means every venue."""

    @property
    def all_venues(self) -> bool:
        return not self.exchanges


class CorruptValue(NamedTuple):
    """A cache value that did not decode or is out of bounds: reported as missing, counted by the servicer."""

    exchange: str
    reason: str


class Rejected(NamedTuple):
    """A cache value known to be unservable (the mirror keeps only this, never the value itself)."""

    reason: str


RawValue = bytes | str | None | Rejected
"""What a cache read gives per key: the stored bytes, None when there is no key, or an earlier rejection."""


def checked_value(raw: bytes | str) -> LatestPrice | Rejected:
    """Decode a cache value and check its bounds; a value that cannot be served comes back as `Rejected`."""
    try:
        # A decode_responses=False client (ours) only returns bytes; str would be a misconfigured client.
        value = decode_latest_price(raw if isinstance(raw, bytes) else raw.encode())
    except CacheValueDecodeError as exc:
        return Rejected(f"undecodable: {exc}")
    problem = latest_price_problem(value)
    return value if problem is None else Rejected(problem)


def cache_value_problem(raw: bytes) -> str | None:
    """Why the mirror must not keep `raw` (None: it may); the same rule as `checked_value`."""
    checked = checked_value(raw)
    return checked.reason if isinstance(checked, Rejected) else None


def parse_request(request: pb.GetLatestPriceRequest) -> LatestPriceQuery:
    """Validate a request; raise `InvalidLatestPriceRequestError` naming the offending field."""
    if not request.symbol:
        raise InvalidLatestPriceRequestError("symbol is required, e.g. 'BTC-USDT'")
    try:
        symbol = validate_symbol(request.symbol)
    except ValueError as exc:
        raise InvalidLatestPriceRequestError(f"symbol: {exc}") from None
    if len(request.exchanges) > MAX_EXCHANGES:
        raise InvalidLatestPriceRequestError(
            f"exchanges: at most {MAX_EXCHANGES} may be named, got {len(request.exchanges)}"
        )
    seen: dict[str, None] = {}
    for index, exchange in enumerate(request.exchanges):
        if not exchange:
            raise InvalidLatestPriceRequestError(f"exchanges[{index}] is empty")
        try:
            seen[validate_exchange(exchange)] = None
        except ValueError as exc:
            raise InvalidLatestPriceRequestError(f"exchanges[{index}]: {exc}") from None
    return LatestPriceQuery(symbol, tuple(seen))


def cache_keys(symbol: str, exchanges: Sequence[str]) -> list[str]:
    """The latest-price cache keys of `symbol` on each of `exchanges`, in order (for one MGET)."""
    return [latest_price_key(exchange, symbol) for exchange in exchanges]


def venue_scan_pattern(symbol: str) -> str:
    """SCAN MATCH pattern for every venue holding `symbol`.

    A validated symbol is ``[A-Z0-9-]`` only, so it holds no glob metacharacter and needs no escaping.
    """
    return f"px:*:{validate_symbol(symbol)}"


def exchanges_from_keys(keys: Iterable[bytes | str], symbol: str) -> list[str]:
    """The sorted, distinct exchanges of the scanned cache keys of `symbol`; keys that do not parse are skipped.

    SCAN may return a key more than once, and ``*`` in the pattern could match a malformed key that some other
    writer left behind: only well-formed keys of exactly `symbol` count.
    """
    found: set[str] = set()
    for key in keys:
        try:
            exchange, key_symbol = parse_latest_price_key(key)
        except ValueError:
            continue
        if key_symbol == symbol:
            found.add(exchange)
    return sorted(found)


def decimal_text(value: Decimal) -> str:
    """An exact decimal string without exponent: ``Decimal('1E+2')`` → ``'100'``, ``'1E-8'`` → ``'0.00000001'``."""
    return format(value, "f")


def price_message(
    exchange: str, symbol: str, value: LatestPrice, *, now_ns: int, stale_after_ms: int
) -> market_data_pb2.LatestPrice:
    age_ms = max(0, (now_ns - value.ts_recv_ns) // 1_000_000)
    return market_data_pb2.LatestPrice(
        exchange=exchange,
        symbol=symbol,
        price=decimal_text(value.price),
        ts_event_ns=value.ts_event_ns,
        ts_recv_ns=value.ts_recv_ns,
        size="" if value.size is None else decimal_text(value.size),
        age_ms=age_ms,
        stale=age_ms > stale_after_ms,
    )


def build_response(
    query: LatestPriceQuery,
    exchanges: Sequence[str],
    raw_values: Sequence[RawValue],
    *,
    now_ns: int,
    stale_after_ms: int,
) -> tuple[pb.GetLatestPriceResponse, list[CorruptValue]]:
    """Build the response from the MGET reply for `exchanges` (same order); also return the unservable values.

    Named exchanges without a usable value are listed as missing, in request order. With no exchange named,
    `exchanges` came from a SCAN: a key that vanished or holds garbage (or an out-of-bounds number) is left out.
    """
    if len(exchanges) != len(raw_values):
        raise ValueError(f"{len(raw_values)} values for {len(exchanges)} exchanges")
    prices: list[market_data_pb2.LatestPrice] = []
    missing: list[str] = []
    corrupt: list[CorruptValue] = []
    for exchange, raw in zip(exchanges, raw_values, strict=True):
        if raw is None:
            missing.append(exchange)
            continue
        value = raw if isinstance(raw, Rejected) else checked_value(raw)
        if isinstance(value, Rejected):
            corrupt.append(CorruptValue(exchange, value.reason))
            missing.append(exchange)
            continue
        prices.append(price_message(exchange, query.symbol, value, now_ns=now_ns, stale_after_ms=stale_after_ms))
    response = pb.GetLatestPriceResponse(prices=prices, missing_exchanges=[] if query.all_venues else missing)
    return response, corrupt
