"""Domain rules for exchange input, and the stable reason codes of everything the collector refuses.

Pure functions, no I/O. Parsers decode a venue frame with msgspec into typed structs (``Decimal`` fields keep
the venue's digits exactly), then call the checks below; a failed check raises ``InvalidPayloadError`` carrying a
``Reason`` code, which the adapter turns into a ``Quarantine`` event (WebSocket) or the REST client reports.

The checks are written for the hot path: the happy case is one boolean expression per value, and the work of
naming what went wrong happens only on the failure branch.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Final, NoReturn

import msgspec

from tickstrata.common.bounds import (
    MAX_ADJUSTED_EXPONENT,
    MAX_ID,
    MIN_ADJUSTED_EXPONENT,
    MIN_PLAUSIBLE_MS,
    ZERO,
    is_positive_in_range,
)


class Reason(StrEnum):
    """Why input was quarantined. The values are stable: dashboards and alerts count by them."""

    # frame level
    OVERSIZED_FRAME = "oversized_frame"
    INVALID_UTF8 = "invalid_utf8"
    MALFORMED_JSON = "malformed_json"
    NESTING_TOO_DEEP = "nesting_too_deep"
    EMPTY_MESSAGE = "empty_message"
    UNKNOWN_STREAM = "unknown_stream"
    UNKNOWN_EVENT = "unknown_event"
    VENUE_ERROR = "venue_error"  # a REST body carrying the venue's {"code":…,"msg":…} instead of data
    # shape
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_SYMBOL = "unknown_symbol"
    # numbers
    NON_FINITE = "non_finite"
    NUMBER_OUT_OF_RANGE = "number_out_of_range"
    NON_POSITIVE_PRICE = "non_positive_price"
    NEGATIVE_SIZE = "negative_size"
    ZERO_SIZE = "zero_size"
    # time
    FUTURE_TIMESTAMP = "future_timestamp"
    TIMESTAMP_IN_SECONDS = "timestamp_in_seconds"
    BEFORE_LISTING = "before_listing"
    # cross-field
    CANDLE_INVARIANT = "candle_invariant"
    CROSSED_QUOTE = "crossed_quote"
    SEQUENCE_INVARIANT = "sequence_invariant"
    # a bug of ours, never the venue's fault: the safety net that keeps `parse` from raising
    PARSER_ERROR = "parser_error"


class InvalidPayloadError(ValueError):
    """A venue payload broke a rule; ``reason`` is the stable code, ``detail`` names the field and value."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


# A WebSocket frame this large is hostile or broken (Binance frames are < 64 KiB; a 1000-level depth diff is
# ~40 KiB): refusing it before decoding bounds the parse cost.
MAX_FRAME_BYTES: Final = 1024 * 1024
DEFAULT_FUTURE_TOLERANCE_NS: Final = 5_000_000_000


def fail(reason: Reason, detail: str) -> NoReturn:
    raise InvalidPayloadError(reason, detail)


# ---- numbers ------------------------------------------------------------------------------------------------


def _number_failure(name: str, value: Decimal) -> NoReturn:
    if not value.is_finite():
        fail(Reason.NON_FINITE, f"{name} is {value}")
    fail(Reason.NUMBER_OUT_OF_RANGE, f"{name} {value} is outside [1e{MIN_ADJUSTED_EXPONENT}, 1e20)")


def _in_range(value: Decimal) -> bool:
    # NaN/Infinity answer adjusted() == 0, so finiteness must be tested first (the callers do).
    return (not value) or MIN_ADJUSTED_EXPONENT <= value.adjusted() <= MAX_ADJUSTED_EXPONENT


# The happy-path test of ``check_price`` (and of sizes that must be > 0), for parsers to inline.
is_positive = is_positive_in_range


def check_price(name: str, value: Decimal) -> Decimal:
    """Return ``value`` if it is a finite, in-range, strictly positive price."""
    if value.is_finite() and value > ZERO and MIN_ADJUSTED_EXPONENT <= value.adjusted() <= MAX_ADJUSTED_EXPONENT:
        return value
    if value.is_finite() and _in_range(value):
        fail(Reason.NON_POSITIVE_PRICE, f"{name} is {value}")
    _number_failure(name, value)


def check_size(name: str, value: Decimal, *, allow_zero: bool) -> Decimal:
    """Return ``value`` if it is a finite, in-range size, ``> 0`` (or ``>= 0`` where zero means something)."""
    if value.is_finite() and (value > ZERO or (allow_zero and not value)) and _in_range(value):
        return value
    if value.is_finite() and _in_range(value):
        if value < 0:
            fail(Reason.NEGATIVE_SIZE, f"{name} is {value}")
        fail(Reason.ZERO_SIZE, f"{name} is {value}")
    _number_failure(name, value)


def check_signed(name: str, value: Decimal) -> Decimal:
    """Return ``value`` if it is finite and in range; the sign is free (funding rates go negative)."""
    if value.is_finite() and _in_range(value):
        return value
    _number_failure(name, value)


def check_id(name: str, value: int) -> int:
    """Return ``value`` if it is a non-negative signed-64-bit id or sequence number."""
    if 0 <= value <= MAX_ID:
        return value
    fail(Reason.NUMBER_OUT_OF_RANGE, f"{name} {value} is outside [0, 2**63)")


# ---- time ---------------------------------------------------------------------------------------------------


def _ms_failure(name: str, value_ms: int) -> NoReturn:
    if value_ms < 0:
        fail(Reason.NUMBER_OUT_OF_RANGE, f"{name} {value_ms} is negative")
    if value_ms < MIN_PLAUSIBLE_MS:
        fail(Reason.TIMESTAMP_IN_SECONDS, f"{name} {value_ms} is too small for milliseconds (seconds sent?)")
    fail(Reason.NUMBER_OUT_OF_RANGE, f"{name} {value_ms} ms does not fit signed 64-bit nanoseconds")


def event_time_ns(name: str, value_ms: int, ts_recv_ns: int, future_tolerance_ns: int) -> int:
    """Convert a venue millisecond timestamp of something that already happened to nanoseconds.

    Refuses seconds-for-milliseconds slips and times more than ``future_tolerance_ns`` after our receipt.
    """
    if value_ms >= MIN_PLAUSIBLE_MS:
        value_ns = value_ms * 1_000_000
        if value_ns <= ts_recv_ns + future_tolerance_ns:
            return value_ns
        fail(
            Reason.FUTURE_TIMESTAMP,
            f"{name} {value_ms} ms is {(value_ns - ts_recv_ns) / 1e9:.3f} s after receipt",
        )
    _ms_failure(name, value_ms)


def schedule_time_ns(name: str, value_ms: int) -> int:
    """Convert a millisecond timestamp that may lie in the future by design (next funding, candle close)."""
    if value_ms >= MIN_PLAUSIBLE_MS and value_ms * 1_000_000 <= MAX_ID:
        return value_ms * 1_000_000
    _ms_failure(name, value_ms)


def check_listing(name: str, value_ns: int, listed_ns: int | None) -> None:
    """Refuse an event stamped before its instrument was listed (when the venue tells us the listing time)."""
    if listed_ns is not None and value_ns < listed_ns:
        fail(Reason.BEFORE_LISTING, f"{name} {value_ns} ns is before the listing at {listed_ns} ns")


# ---- cross-field rules --------------------------------------------------------------------------------------


def check_candle(
    *, open_: Decimal, high: Decimal, low: Decimal, close: Decimal, volume: Decimal, quote_volume: Decimal | None
) -> None:
    """OHLCV invariants: positive prices, ``low <= open, close <= high``, non-negative volumes."""
    for name, price in (("open", open_), ("high", high), ("low", low), ("close", close)):
        check_price(name, price)
    check_size("volume", volume, allow_zero=True)
    if quote_volume is not None:
        check_size("quote_volume", quote_volume, allow_zero=True)
    if high < open_ or high < close or low > open_ or low > close:
        fail(Reason.CANDLE_INVARIANT, f"open {open_} high {high} low {low} close {close}")


def check_quote(bid_price: Decimal, ask_price: Decimal) -> None:
    """A single venue's best bid is strictly below its best ask; a crossed or locked quote is corrupt."""
    if bid_price >= ask_price:
        fail(Reason.CROSSED_QUOTE, f"bid {bid_price} >= ask {ask_price}")


def check_levels(side: str, levels: tuple[tuple[Decimal, Decimal], ...]) -> tuple[tuple[Decimal, Decimal], ...]:
    """Book levels: positive prices, non-negative sizes (``0`` removes the level)."""
    low, high = MIN_ADJUSTED_EXPONENT, MAX_ADJUSTED_EXPONENT
    for price, size in levels:  # up to 5000 levels per side in a snapshot: one inlined test per level
        if not (
            price.is_finite()
            and price > ZERO
            and low <= price.adjusted() <= high
            and size.is_finite()
            and size >= ZERO
            and (not size or low <= size.adjusted() <= high)
        ):
            check_price(f"{side} price", price)
            check_size(f"{side} size", size, allow_zero=True)
    return levels


# ---- frames and decode errors -------------------------------------------------------------------------------


def check_frame(raw: bytes) -> InvalidPayloadError | None:
    """Frame-level rules checked before decoding: size and UTF-8 (RFC 8259 JSON text is UTF-8)."""
    if len(raw) >= MAX_FRAME_BYTES:
        return InvalidPayloadError(Reason.OVERSIZED_FRAME, f"{len(raw)} bytes, limit {MAX_FRAME_BYTES - 1}")
    # isascii() is a word-at-a-time scan (~50 ns per frame); venue frames are ASCII, so the full UTF-8
    # validation below almost never runs. msgspec checks UTF-8 only in strings it keeps, not in skipped fields.
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as error:
            return InvalidPayloadError(Reason.INVALID_UTF8, str(error))
    return None


# msgspec names the failure only in its message; the prefixes are stable across msgspec releases.
_VALIDATION_PREFIXES: Final = (
    ("Object missing required field", Reason.MISSING_FIELD),
    ("Number out of range", Reason.NUMBER_OUT_OF_RANGE),
    ("Integer value out of range", Reason.NUMBER_OUT_OF_RANGE),
)


def classify_decode_error(error: Exception) -> InvalidPayloadError:
    """Map an exception raised while decoding or parsing a frame to a reason code."""
    if isinstance(error, InvalidPayloadError):
        return error
    message = str(error)
    reason = Reason.PARSER_ERROR  # anything unforeseen is our bug, never silently the venue's
    if isinstance(error, msgspec.ValidationError):
        reason = next((code for prefix, code in _VALIDATION_PREFIXES if message.startswith(prefix)), Reason.WRONG_TYPE)
    elif isinstance(error, RecursionError):
        reason, message = Reason.NESTING_TOO_DEEP, "JSON nesting exceeds the decoder's recursion limit"
    elif isinstance(error, UnicodeError):
        reason = Reason.INVALID_UTF8
    elif isinstance(error, msgspec.DecodeError):
        reason = Reason.MALFORMED_JSON
    else:
        message = f"{type(error).__name__}: {message}"
    return InvalidPayloadError(reason, message)
