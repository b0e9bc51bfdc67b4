"""Diff-depth events and snapshots satisfy Binance's documented local-book procedures, spot and USD-M."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest

from tests.unit.simulator._support import START_MS, RecordingSubscriber, make_engine, run
from tickstrata.simulator import frames
from tickstrata.simulator.faults import FaultSpec
from tickstrata.simulator.instruments import Venue

Book = dict[str, dict[Decimal, Decimal]]


def apply(book: Book, event: dict[str, Any]) -> None:
    for side, key in (("b", "bids"), ("a", "asks")):
        for price, qty in event[side]:
            if Decimal(qty) == 0:
                book[key].pop(Decimal(price), None)
            else:
                book[key][Decimal(price)] = Decimal(qty)


def as_book(snapshot: dict[str, Any]) -> Book:
    return {key: {Decimal(p): Decimal(q) for p, q in snapshot[key]} for key in ("bids", "asks")}


@pytest.mark.parametrize(
    ("venue", "stream"), [(Venue.SPOT, "depth@100ms"), (Venue.SPOT, "depth"), (Venue.USDM, "depth@100ms")]
)
def test_snapshot_plus_diffs_rebuilds_the_exact_book(venue: Venue, stream: str) -> None:
    engine = make_engine(venue, book_depth=60)
    sub = RecordingSubscriber()
    engine.subscribe(sub, f"btcusdt@{stream}")
    run(engine, START_MS + 3_000)  # the client buffers events from here
    buffered_from = len(sub.frames)
    run(engine, START_MS + 3_555)
    market = engine.markets["BTCUSDT"]
    snapshot = frames.depth_snapshot(market.instrument, market.book.snapshot(5000), now_ms=0, tx_ms=0)
    last_update_id = snapshot["lastUpdateId"]
    run(engine, START_MS + 12_000)
    events = sub.frames[buffered_from:]
    assert events[0]["U"] <= last_update_id + 1  # the snapshot is not older than the buffer's start

    book = as_book(snapshot)
    if venue is Venue.SPOT:
        pending = [e for e in events if e["u"] > last_update_id]
        first = pending[0]
        assert first["U"] <= last_update_id + 1 <= first["u"]
        local = last_update_id
        for event in pending:
            assert event["U"] == local + 1 or event is first
            apply(book, event)
            local = event["u"]
    else:
        pending = [e for e in events if e["u"] >= last_update_id]
        first = pending[0]
        assert first["U"] <= last_update_id <= first["u"]
        previous = None
        for event in pending:
            if previous is not None:
                assert event["pu"] == previous
            apply(book, event)
            previous = event["u"]

    # The rebuilt book is the venue's book, level for level.
    final = frames.depth_snapshot(market.instrument, market.book.snapshot(5000), now_ms=0, tx_ms=0)
    assert events[-1]["u"] <= final["lastUpdateId"]
    expected = as_book(final)
    # Levels changed after the last event are still pending in the next window: compare up to it.
    if events[-1]["u"] == final["lastUpdateId"]:
        assert book == expected
    for bids_best, asks_best in [(max(book["bids"]), min(book["asks"]))]:
        assert bids_best < asks_best


def test_depth_gap_fault_drops_whole_events_and_records_their_ids() -> None:
    engine = make_engine(Venue.USDM)
    sub = RecordingSubscriber()
    engine.subscribe(sub, "btcusdt@depth@100ms")
    run(engine, START_MS + 2_000)
    record = engine.apply_fault(FaultSpec(kind="depth_gap", symbol="BTCUSDT", count=2), START_MS + 2_000)
    run(engine, START_MS + 5_000)
    events = sub.of("depthUpdate")
    breaks = [(a["u"], b["pu"]) for a, b in itertools.pairwise(events) if b["pu"] != a["u"]]
    assert len(breaks) == 1
    dropped = [d for d in record.effects["dropped"] if d["stream"] == "btcusdt@depth@100ms"]
    assert len(dropped) == 2
    assert dropped[0]["first_id"] == breaks[0][0] + 1
    assert breaks[0][1] == dropped[-1]["last_id"]  # the next event's pu names the lost event's u
