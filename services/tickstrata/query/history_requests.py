"""GetCandles and GetTrades requests checked and normalized before any read. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.query.numeric import resolve_encoding

NS_PER_SEC: Final = 1_000_000_000


class InvalidHistoryRequestError(ValueError):
    """The request is malformed (INVALID_ARGUMENT); the message names the field."""


@dataclass(frozen=True)
class HistoryQuery:
    exchange: str
    symbol: str
    start_ns: int
    end_ns: int
    interval_secs: int
    include_forming: bool
    encoding: int
    max_rows_per_batch: int


def _common(exchange: str, symbol: str, start_ns: int, end_ns: int, now_ns: int) -> tuple[str, str, int, int]:
    if not exchange.strip():
        raise InvalidHistoryRequestError("exchange is required, e.g. 'binance'")
    if not symbol.strip():
        raise InvalidHistoryRequestError("symbol is required, e.g. 'BTC-USDT'")
    if start_ns < 0 or end_ns < 0:
        raise InvalidHistoryRequestError("start_ns and end_ns are ns since the epoch and cannot be negative")
    end = end_ns or now_ns
    if start_ns >= end:
        raise InvalidHistoryRequestError(f"start_ns ({start_ns}) must be before end_ns ({end})")
    return exchange.strip().lower(), symbol.strip().upper(), start_ns, end


def _batch_rows(hint: int, default: int) -> int:
    if hint < 0:
        raise InvalidHistoryRequestError("max_rows_per_batch cannot be negative")
    return min(hint, default) if hint else default


def candles_query(
    request: pb.GetCandlesRequest, *, now_ns: int, max_buckets: int, default_batch_rows: int
) -> HistoryQuery:
    interval = request.interval_secs or 60
    if interval <= 0 or interval % 60:
        raise InvalidHistoryRequestError(
            f"interval_secs must be a positive multiple of 60 (got {request.interval_secs})"
        )
    exchange, symbol, start, end = _common(request.exchange, request.symbol, request.start_ns, request.end_ns, now_ns)
    interval_ns = interval * NS_PER_SEC
    start = start // interval_ns * interval_ns  # rounded down to a bucket boundary, as the contract says
    buckets = -(-(end - start) // interval_ns)
    if buckets > max_buckets:
        raise InvalidHistoryRequestError(
            f"the range spans {buckets:,} candles of {interval} s, more than {max_buckets:,} per call: "
            "split it into smaller ranges or use a longer interval"
        )
    return HistoryQuery(
        exchange, symbol, start, end, interval, request.include_forming,
        resolve_encoding(request.numeric_encoding), _batch_rows(request.max_rows_per_batch, default_batch_rows),
    )  # fmt: skip


def trades_query(request: pb.GetTradesRequest, *, now_ns: int, default_batch_rows: int) -> HistoryQuery:
    exchange, symbol, start, end = _common(request.exchange, request.symbol, request.start_ns, request.end_ns, now_ns)
    return HistoryQuery(
        exchange, symbol, start, end, 0, False,
        resolve_encoding(request.numeric_encoding), _batch_rows(request.max_rows_per_batch, default_batch_rows),
    )  # fmt: skip
