"""The completeness ledger: hand-made cases for every rule, and a property test against a reference model."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.common._samples import candle
from tickstrata.common.completeness import BucketCounts, BucketState
from tickstrata.common.events import CandleSource, DataType
from tickstrata.validator.ledger import MINUTE_NS, Finding, SymbolLedger, classify, minutes_touching

T0 = 1_800_000_000 * 1_000_000_000 // MINUTE_NS * MINUTE_NS  # a whole minute
FAR = T0 + 10_000 * MINUTE_NS  # a watermark well past every minute used here
TRADES, CANDLES = DataType.TRADES, DataType.CANDLES


def minute(i: int) -> int:
    return T0 + i * MINUTE_NS


def ledger() -> SymbolLedger:
    return SymbolLedger("binance", "BTC-USDT", T0)


def state(book: SymbolLedger, i: int, watermark_ns: int = FAR) -> BucketState:
    return dict(book.states(minute(i), minute(i + 1), watermark_ns))[minute(i)]


def test_live_data_without_a_gap_is_present_and_ahead_of_the_watermark_pending() -> None:
    book = ledger()
    book.observe_trade(minute(0) + 5, backfilled=False)
    assert state(book, 0) is BucketState.PRESENT
    # The minute ends after the watermark: late data could still come, so it is not judged yet.
    assert state(book, 0, watermark_ns=minute(1) - 1) is BucketState.PENDING
    assert state(book, 0, watermark_ns=minute(1)) is BucketState.PRESENT


def test_a_minute_nobody_reported_and_without_data_is_missing_until_the_venue_answers() -> None:
    book = ledger()
    assert state(book, 3) is BucketState.MISSING
    book.observe_asked(TRADES, minute(3), minute(4))
    book.observe_asked(CANDLES, minute(3), minute(4))
    assert state(book, 3) is BucketState.PENDING
    book.observe_finding(TRADES, minute(3), minute(4), Finding.EMPTY)
    assert state(book, 3) is BucketState.PENDING  # the candle's finding is still unknown
    book.observe_finding(CANDLES, minute(3), minute(4), Finding.NO_RECORD)
    assert state(book, 3) is BucketState.EXCHANGE_EMPTY


def test_backfilled_needs_the_rows_the_backfill_published_not_only_the_finding() -> None:
    book = ledger()
    book.observe_trade(minute(1) + 1, backfilled=False)
    book.observe_gap(TRADES, minute(1) + 10, minute(1) + 20)
    assert state(book, 1) is BucketState.MISSING  # a gap touched it: the live rows may be incomplete
    book.observe_asked(TRADES, minute(1), minute(2))
    book.observe_finding(TRADES, minute(1), minute(2), Finding.DATA)
    assert state(book, 1) is BucketState.PENDING  # the venue has data; it has not reached us yet
    book.observe_trade(minute(1) + 15, backfilled=True)
    assert state(book, 1) is BucketState.BACKFILLED
    # A backfill that settled without its rows arriving leaves the minute missing, not backfilled.
    other = ledger()
    other.observe_gap(TRADES, minute(1), minute(2))
    other.observe_asked(TRADES, minute(1), minute(2))
    other.observe_finding(TRADES, minute(1), minute(2), Finding.DATA)
    other.observe_settled(TRADES, minute(1), minute(2))
    assert state(other, 1) is BucketState.MISSING


def test_venue_says_empty_but_live_rows_arrived_keeps_present() -> None:
    book = ledger()
    book.observe_trade(minute(2) + 1, backfilled=False)
    book.observe_gap(TRADES, minute(2), minute(2) + 1)
    book.observe_finding(TRADES, minute(2), minute(3), Finding.EMPTY)
    assert state(book, 2) is BucketState.PRESENT


def test_a_gap_touches_every_minute_of_its_half_open_window_and_only_those() -> None:
    book = ledger()
    touched = book.observe_gap(CANDLES, minute(4) + 1, minute(6))
    assert touched == [minute(4), minute(5)]  # minute 6 starts at the exclusive end: untouched
    assert list(minutes_touching(minute(6), minute(6))) == []
    assert book.observe_gap(DataType.QUOTES, minute(0), minute(9)) == []  # no per-minute proof for quotes


def test_a_candle_seen_again_with_other_values_is_a_revision_with_both_sides() -> None:
    book = ledger()
    live = candle(exchange="binance", symbol="BTC-USDT", open_time_ns=minute(7), source=CandleSource.WS)
    assert book.observe_candle(live) is None
    assert book.observe_candle(live) is None  # identical: a duplicate, not a revision
    rest = candle(
        exchange="binance", symbol="BTC-USDT", open_time_ns=minute(7), source=CandleSource.REST, high=Decimal("64151")
    )
    revision = book.observe_candle(rest)
    assert revision is not None
    assert revision.minute_start_ns == minute(7)
    assert revision.detail == "ws→rest: high 64150.00→64151"
    # An open candle or another interval is not a bucket's candle.
    assert (
        book.observe_candle(candle(exchange="binance", symbol="BTC-USDT", open_time_ns=minute(8), closed=False)) is None
    )
    assert book.record(minute(8)).live_rows == 0


def test_minutes_before_the_start_or_the_horizon_are_ignored_and_counted() -> None:
    book = ledger()
    book.observe_trade(T0 - 1, backfilled=False)
    assert book.ignored_late == 1
    assert list(book.minutes(T0 - 5 * MINUTE_NS, minute(2))) == [minute(0), minute(1)]
    book.observe_trade(minute(0), backfilled=False)
    with pytest.raises(ValueError, match="not yet persisted"):
        book.forget_before(minute(1))
    assert [m for m, _ in book.take_dirty()] == [minute(0)]
    assert book.forget_before(minute(1)) == 1
    book.observe_trade(minute(0) + 7, backfilled=False)  # late: the persisted row must not be overwritten
    assert book.ignored_late == 2
    assert book.take_dirty() == []


def test_trades_without_their_candle_need_the_venues_candle_and_the_reverse() -> None:
    book = ledger()
    book.observe_candle(candle(exchange="binance", symbol="BTC-USDT", open_time_ns=minute(0), source=CandleSource.WS))
    book.observe_trade(minute(0) + 1, backfilled=False)
    assert state(book, 0) is BucketState.PRESENT  # both arrived
    # Minute 1: trades came, its closed candle did not (a collector killed at the minute's end): nobody reported it.
    book.observe_trade(minute(1) + 1, backfilled=False)
    assert state(book, 1) is BucketState.MISSING
    assert book.record(minute(1)).needs_proof(book.expect) == {CANDLES}
    book.observe_finding(CANDLES, minute(1), minute(2), Finding.DATA)
    book.observe_candle(candle(exchange="binance", symbol="BTC-USDT", open_time_ns=minute(1), source=CandleSource.REST))
    assert state(book, 1) is BucketState.BACKFILLED
    # Minute 2: a candle with volume, not one of its trades.
    book.observe_candle(candle(exchange="binance", symbol="BTC-USDT", open_time_ns=minute(2), source=CandleSource.WS))
    assert book.record(minute(2)).needs_proof(book.expect) == {TRADES}
    assert state(book, 2) is BucketState.MISSING


def test_live_trades_short_of_their_candles_volume_need_the_venues_trades_where_the_venue_says_they_match() -> None:
    book = SymbolLedger("binance", "BTC-USDT", T0, volume_matches_trades=True)
    whole = candle(exchange="binance", symbol="BTC-USDT", open_time_ns=minute(0), source=CandleSource.WS)
    book.observe_candle(whole)
    book.observe_trade(minute(0) + 1, backfilled=False, size=whole.volume)
    assert state(book, 0) is BucketState.PRESENT  # every unit of the candle's volume arrived as a trade
    # Minute 1: the trades after the first were lost and no gap said so (the loss outlived the feed).
    book.observe_candle(candle(exchange="binance", symbol="BTC-USDT", open_time_ns=minute(1), source=CandleSource.WS))
    book.observe_trade(minute(1) + 1, backfilled=False, size=whole.volume / 4)
    assert book.record(minute(1)).needs_proof(book.expect) == {TRADES}
    book.observe_finding(TRADES, minute(1), minute(2), Finding.DATA)
    book.observe_trade(minute(1) + 2, backfilled=True, size=whole.volume / 4)
    assert state(book, 1) is BucketState.BACKFILLED
    # A venue without that rule: the same shortfall is not judged (its candles may count other prints).
    other = ledger()
    other.observe_candle(candle(exchange="binance", symbol="BTC-USDT", open_time_ns=minute(1), source=CandleSource.WS))
    other.observe_trade(minute(1) + 1, backfilled=False, size=whole.volume / 4)
    assert state(other, 1) is BucketState.PRESENT


def test_a_feed_without_candles_is_not_asked_for_them() -> None:
    book = ledger()
    book.observe_trade(minute(0) + 1, backfilled=False)
    assert book.expect.carried == {TRADES}
    assert state(book, 0) is BucketState.PRESENT


def test_counts_cover_every_minute_of_the_window() -> None:
    book = ledger()
    book.observe_trade(minute(0), backfilled=False)
    counts = book.counts(minute(0), minute(5), watermark_ns=minute(3))
    assert counts == BucketCounts(present=1, missing=2, pending=2)
    assert counts.total == 5


# ---- property: the incremental ledger agrees with a reference that replays every observation ----------------


@dataclass(frozen=True)
class Obs:
    kind: str  # live_trade, bf_trade, live_candle, rest_candle, gap, asked, finding, settled
    data_type: DataType
    start: int  # minute index (for trades and candles: the minute; offsets inside it do not matter)
    end: int
    finding: Finding = Finding.NONE


def reference_state(observations: list[Obs], i: int, watermark_ns: int) -> BucketState:
    """Recompute one minute's state from the whole observation list, with the rules written as a decision table."""
    if minute(i + 1) > watermark_ns:
        return BucketState.PENDING
    inside = [o for o in observations if o.start <= i < o.end]
    live = sum(o.kind in ("live_trade", "live_candle") for o in inside)
    rows = {TRADES: sum(o.kind == "bf_trade" for o in inside), CANDLES: sum(o.kind == "rest_candle" for o in inside)}
    suspect = {o.data_type for o in inside if o.kind == "gap" and o.data_type in (TRADES, CANDLES)}
    # What the instrument's live stream carries at all, and what this minute lacks of it (the sample candle
    # has volume: a candle without any trade means trades were lost, trades without a candle the candle).
    carried = {TRADES for o in observations if o.kind == "live_trade"} | {
        CANDLES for o in observations if o.kind == "live_candle"
    }
    live_candle = any(o.kind == "live_candle" for o in inside)
    any_candle = any(o.kind in ("live_candle", "rest_candle") for o in inside)
    live_trade = any(o.kind == "live_trade" for o in inside)
    lacking = ({CANDLES} if CANDLES in carried and not live_candle else set()) | (
        {TRADES} if TRADES in carried and any_candle and not live_trade else set()
    )
    needed = suspect | lacking if live else {TRADES, CANDLES}
    if not needed:
        return BucketState.PRESENT
    finding = {t: Finding.NONE for t in needed}
    flying: set[DataType] = set()
    for o in inside:
        if o.kind == "finding" and o.data_type in needed:
            finding[o.data_type] = o.finding
        elif o.kind == "asked":
            flying.add(o.data_type)
        elif o.kind == "settled":
            flying.discard(o.data_type)
    waiting = BucketState.PENDING if flying & needed else BucketState.MISSING
    if any(f is Finding.NONE for f in finding.values()):
        return waiting
    had_data = [t for t, f in finding.items() if f is Finding.DATA]
    if not had_data:
        return BucketState.PRESENT if live else BucketState.EXCHANGE_EMPTY
    return BucketState.BACKFILLED if all(rows[t] for t in had_data) else waiting


def apply(book: SymbolLedger, o: Obs) -> None:
    start, end = minute(o.start), minute(o.end)
    if o.kind == "live_trade":
        book.observe_trade(start + 1, backfilled=False)
    elif o.kind == "bf_trade":
        book.observe_trade(start + 2, backfilled=True)
    elif o.kind in ("live_candle", "rest_candle"):
        source = CandleSource.WS if o.kind == "live_candle" else CandleSource.REST
        book.observe_candle(candle(exchange="binance", symbol="BTC-USDT", open_time_ns=start, source=source))
    elif o.kind == "gap":
        book.observe_gap(o.data_type, start + 3, end - 3)  # inside the minutes: it still touches all of them
    elif o.kind == "asked":
        book.observe_asked(o.data_type, start, end)
    elif o.kind == "finding":
        book.observe_finding(o.data_type, start, end, o.finding)
    else:
        book.observe_settled(o.data_type, start, end)


SIZE = 4  # few minutes, so random observations pile up on each and reach every branch
KINDS = ["live_trade", "bf_trade", "live_candle", "rest_candle", "gap", "asked", "finding", "settled"]


@st.composite
def observation(draw: st.DrawFn) -> Obs:
    kind = draw(
        st.sampled_from(["live_trade", "bf_trade", "live_candle", "rest_candle", "gap", "asked", "finding", "settled"])
    )
    data_type = draw(st.sampled_from([TRADES, CANDLES, DataType.QUOTES] if kind == "gap" else [TRADES, CANDLES]))
    start = draw(st.integers(0, SIZE - 1))
    end = start + 1 if kind.endswith(("trade", "candle")) else draw(st.integers(start + 1, SIZE))
    finding = (
        draw(st.sampled_from([Finding.DATA, Finding.EMPTY, Finding.NO_RECORD])) if kind == "finding" else Finding.NONE
    )
    return Obs(kind, data_type, start, end, finding)


@settings(max_examples=500)
@given(st.lists(observation(), max_size=40), st.integers(0, SIZE + 1))
def test_the_incremental_ledger_matches_the_reference_model(observations: list[Obs], watermark_minutes: int) -> None:
    book = ledger()
    for o in observations:
        apply(book, o)
    watermark_ns = minute(watermark_minutes)
    got = dict(book.states(minute(0), minute(SIZE), watermark_ns))
    want = {minute(i): reference_state(observations, i, watermark_ns) for i in range(SIZE)}
    assert got == want
    assert book.counts(minute(0), minute(SIZE), watermark_ns).total == SIZE
    # Every minute an observation touched is dirty (to be persisted), and nothing else.
    touched = {m for m, _ in book.take_dirty()}
    assert touched <= {minute(i) for i in range(SIZE)}


@given(st.lists(observation(), max_size=30))
def test_classification_never_calls_a_minute_complete_ahead_of_the_watermark(observations: list[Obs]) -> None:
    book = ledger()
    for o in observations:
        apply(book, o)
    for i in range(SIZE):
        assert classify(book.record(minute(i)), minute(i), minute(i + 1) - 1) is BucketState.PENDING


def test_a_zero_trade_candle_on_the_live_stream_is_not_data_the_venue_must_confirm_it() -> None:
    book = ledger()
    quiet = candle(
        exchange="binance",
        symbol="BTC-USDT",
        open_time_ns=minute(5),
        trade_count=0,
        volume=Decimal(0),
        quote_volume=Decimal(0),
        open=Decimal(1),
        high=Decimal(1),
        low=Decimal(1),
        close=Decimal(1),
    )
    book.observe_candle(quiet)
    assert state(book, 5) is BucketState.MISSING  # not "present": a zero-volume row proves nothing
    book.observe_finding(TRADES, minute(5), minute(6), Finding.EMPTY)
    book.observe_finding(CANDLES, minute(5), minute(6), Finding.EMPTY)
    assert state(book, 5) is BucketState.EXCHANGE_EMPTY
