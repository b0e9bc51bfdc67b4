"""Domain rules and reason codes of ``tickstrata.collector.validation``."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickstrata.collector.validation import (
    MAX_FRAME_BYTES,
    InvalidPayloadError,
    Reason,
    check_candle,
    check_frame,
    check_id,
    check_levels,
    check_listing,
    check_price,
    check_quote,
    check_signed,
    check_size,
    classify_decode_error,
    event_time_ns,
    schedule_time_ns,
)

RECV_NS = 1_767_226_020_000_000_000
TOLERANCE_NS = 5_000_000_000


def _reason(call: object) -> Reason:
    assert callable(call)
    with pytest.raises(InvalidPayloadError) as caught:
        call()
    return caught.value.reason


def test_reason_codes_are_stable_snake_case() -> None:
    assert {reason.value for reason in Reason} >= {
        "malformed_json",
        "missing_field",
        "wrong_type",
        "non_finite",
        "number_out_of_range",
        "non_positive_price",
        "negative_size",
        "future_timestamp",
        "timestamp_in_seconds",
        "unknown_symbol",
        "unknown_stream",
        "oversized_frame",
        "invalid_utf8",
        "candle_invariant",
    }
    assert all(reason.value == reason.value.lower() and " " not in reason.value for reason in Reason)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("NaN", Reason.NON_FINITE),
        ("sNaN", Reason.NON_FINITE),
        ("Infinity", Reason.NON_FINITE),
        ("-inf", Reason.NON_FINITE),
        ("1e400", Reason.NUMBER_OUT_OF_RANGE),
        ("-1e400", Reason.NUMBER_OUT_OF_RANGE),
        ("1e-400", Reason.NUMBER_OUT_OF_RANGE),
        ("1e20", Reason.NUMBER_OUT_OF_RANGE),
        ("0", Reason.NON_POSITIVE_PRICE),
        ("-0.00000000", Reason.NON_POSITIVE_PRICE),
        ("-1", Reason.NON_POSITIVE_PRICE),
    ],
)
def test_bad_prices(text: str, reason: Reason) -> None:
    assert _reason(lambda: check_price("p", Decimal(text))) == reason


@pytest.mark.parametrize("text", ["0.00000001", "87654.32000000", "99999999999999999999", "1e-20"])
def test_good_prices_keep_their_digits(text: str) -> None:
    assert str(check_price("p", Decimal(text))) == str(Decimal(text))


def test_sizes() -> None:
    assert check_size("q", Decimal("0.00000000"), allow_zero=True) == 0
    assert _reason(lambda: check_size("q", Decimal("0"), allow_zero=False)) == Reason.ZERO_SIZE
    assert _reason(lambda: check_size("q", Decimal("-0.1"), allow_zero=True)) == Reason.NEGATIVE_SIZE
    assert _reason(lambda: check_size("q", Decimal("NaN"), allow_zero=True)) == Reason.NON_FINITE
    assert check_signed("r", Decimal("-0.00002150")) == Decimal("-0.00002150")
    assert _reason(lambda: check_signed("r", Decimal("1e400"))) == Reason.NUMBER_OUT_OF_RANGE


def test_ids() -> None:
    assert check_id("a", 0) == 0
    assert check_id("a", 2**63 - 1) == 2**63 - 1
    assert _reason(lambda: check_id("a", 2**63)) == Reason.NUMBER_OUT_OF_RANGE
    assert _reason(lambda: check_id("a", -1)) == Reason.NUMBER_OUT_OF_RANGE


def test_event_times() -> None:
    recv_ms = RECV_NS // 1_000_000
    assert event_time_ns("T", recv_ms, RECV_NS, TOLERANCE_NS) == RECV_NS
    assert event_time_ns("T", recv_ms + 5_000, RECV_NS, TOLERANCE_NS) == RECV_NS + TOLERANCE_NS  # the edge is fine
    assert _reason(lambda: event_time_ns("T", recv_ms + 5_001, RECV_NS, TOLERANCE_NS)) == Reason.FUTURE_TIMESTAMP
    assert _reason(lambda: event_time_ns("T", recv_ms // 1000, RECV_NS, TOLERANCE_NS)) == Reason.TIMESTAMP_IN_SECONDS
    assert _reason(lambda: event_time_ns("T", recv_ms * 1000, RECV_NS, TOLERANCE_NS)) == Reason.FUTURE_TIMESTAMP
    assert _reason(lambda: event_time_ns("T", -1, RECV_NS, TOLERANCE_NS)) == Reason.NUMBER_OUT_OF_RANGE
    # the next funding time lies in the future by design; only its unit and range are checked
    assert schedule_time_ns("T", recv_ms + 8 * 3_600_000) == RECV_NS + 8 * 3_600_000_000_000
    assert _reason(lambda: schedule_time_ns("T", 1_767_254_400)) == Reason.TIMESTAMP_IN_SECONDS
    assert _reason(lambda: schedule_time_ns("T", 10**17)) == Reason.NUMBER_OUT_OF_RANGE


def test_listing() -> None:
    check_listing("T", 10, None)
    check_listing("T", 10, 10)
    assert _reason(lambda: check_listing("T", 9, 10)) == Reason.BEFORE_LISTING


def _candle(**over: str) -> None:
    values = {"open_": "100", "high": "110", "low": "90", "close": "105", "volume": "1", "quote_volume": "100"}
    values.update(over)
    check_candle(**{name: Decimal(value) for name, value in values.items()})


def test_candle_invariants() -> None:
    _candle()
    _candle(open_="100", high="100", low="100", close="100", volume="0", quote_volume="0")  # an empty minute
    assert _reason(lambda: _candle(high="104")) == Reason.CANDLE_INVARIANT  # below close
    assert _reason(lambda: _candle(low="101")) == Reason.CANDLE_INVARIANT  # above open
    assert _reason(lambda: _candle(high="80", low="90")) == Reason.CANDLE_INVARIANT
    assert _reason(lambda: _candle(volume="-1")) == Reason.NEGATIVE_SIZE
    assert _reason(lambda: _candle(quote_volume="NaN")) == Reason.NON_FINITE
    assert _reason(lambda: _candle(low="0")) == Reason.NON_POSITIVE_PRICE


def test_quotes_and_levels() -> None:
    check_quote(Decimal("1.0"), Decimal("1.1"))
    assert _reason(lambda: check_quote(Decimal("1.1"), Decimal("1.1"))) == Reason.CROSSED_QUOTE
    levels = ((Decimal("1.0"), Decimal("0")), (Decimal("0.9"), Decimal("2")))
    assert check_levels("bid", levels) is levels
    assert _reason(lambda: check_levels("bid", ((Decimal("1"), Decimal("-1")),))) == Reason.NEGATIVE_SIZE
    assert _reason(lambda: check_levels("ask", ((Decimal("-1"), Decimal("1")),))) == Reason.NON_POSITIVE_PRICE


def test_frames() -> None:
    assert check_frame(b'{"ok":true}') is None
    assert check_frame('{"é":1}'.encode()) is None
    oversized = check_frame(b" " * MAX_FRAME_BYTES)
    assert oversized is not None
    assert oversized.reason == Reason.OVERSIZED_FRAME
    assert check_frame(b" " * (MAX_FRAME_BYTES - 1)) is None
    invalid = check_frame(b'{"s":"\xff"}')
    assert invalid is not None
    assert invalid.reason == Reason.INVALID_UTF8


class _Shape(msgspec.Struct):
    price: Decimal
    time_ms: int


def _classify(raw: bytes) -> Reason:
    try:
        msgspec.json.decode(raw, type=_Shape)
    except Exception as error:  # the point: whatever msgspec raises gets a reason
        return classify_decode_error(error).reason
    raise AssertionError("decoded")


def test_decode_errors_map_to_reasons() -> None:
    assert _classify(b'{"price":"1"}') == Reason.MISSING_FIELD
    assert _classify(b'{"price":"1","time_ms":true}') == Reason.WRONG_TYPE
    assert _classify(b'{"price":"x","time_ms":1}') == Reason.WRONG_TYPE
    assert _classify(b'{"price":"1","time_ms":1e400}') == Reason.NUMBER_OUT_OF_RANGE
    assert _classify(b'{"price":"1",') == Reason.MALFORMED_JSON
    assert _classify(b'{"price":"1","time_ms":1,"x":' + b"[" * 5000 + b"]" * 5000 + b"}") == Reason.NESTING_TOO_DEEP
    assert classify_decode_error(KeyError("boom")).reason == Reason.PARSER_ERROR


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_check_price_accepts_exactly_the_positive_in_range_finite_values(value: Decimal) -> None:
    try:
        accepted = check_price("p", value) is value
    except InvalidPayloadError:
        accepted = False
    in_range = value.is_finite() and value > 0 and -20 <= value.adjusted() <= 19
    assert accepted == in_range
