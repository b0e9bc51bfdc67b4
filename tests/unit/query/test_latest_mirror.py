"""The latest-price mirror's coherence rules, as a pure state machine (the Redis side is in the integration tests)."""

from __future__ import annotations

import pytest

from tickstrata.query.mirror import PriceMirror

MS = 1_000_000
BTC_BINANCE = "px:binance:BTC-USDT"
BTC_OKX = "px:okx:BTC-USDT"


def live_mirror(*keys: str, confirmed_ns: int = 0) -> PriceMirror:
    mirror = PriceMirror(max_lag_ns=100 * MS)
    mirror.reset()
    mirror.go_live(list(keys))
    mirror.confirm(confirmed_ns)
    return mirror


def test_serves_only_while_live_and_recently_confirmed() -> None:
    mirror = PriceMirror(max_lag_ns=100 * MS)
    assert not mirror.serves(0)
    mirror.go_live([])
    assert not mirror.serves(0), "live but never confirmed by a pong"
    mirror.confirm(1_000 * MS)
    assert mirror.serves(1_100 * MS)
    assert not mirror.serves(1_100 * MS + 1), "the last confirmation is older than the bound"
    mirror.confirm(900 * MS)  # an older pong never moves the confirmation back
    assert mirror.serves(1_050 * MS)
    mirror.reset()
    assert not mirror.serves(1_050 * MS)


def test_a_read_fills_the_copy_and_an_invalidation_empties_it() -> None:
    mirror = live_mirror(BTC_BINANCE)
    started = mirror.read_started()
    mirror.read_done(started, [BTC_BINANCE], [b"v1"])
    assert mirror.get(BTC_BINANCE) == b"v1"
    assert mirror.invalidate([BTC_BINANCE.encode()]) == [BTC_BINANCE]  # returned for a refresh
    assert mirror.get(BTC_BINANCE) is None
    assert mirror.invalidate([BTC_OKX.encode()]) == []  # not in the copy: nothing to refresh


def test_a_reply_that_raced_a_newer_write_is_not_kept() -> None:
    mirror = live_mirror(BTC_BINANCE)
    started = mirror.read_started()
    mirror.invalidate([BTC_BINANCE.encode()])  # the key changed after the read was sent
    mirror.read_done(started, [BTC_BINANCE], [b"maybe-old"])
    assert mirror.get(BTC_BINANCE) is None
    again = mirror.read_started()
    mirror.read_done(again, [BTC_BINANCE], [b"new"])
    assert mirror.get(BTC_BINANCE) == b"new"


def test_reads_sent_before_a_reset_or_a_flush_are_not_kept() -> None:
    mirror = live_mirror(BTC_BINANCE)
    before_reset = mirror.read_started()
    mirror.reset()  # invalidations may have been lost with the connection
    mirror.go_live([BTC_BINANCE])
    mirror.read_done(before_reset, [BTC_BINANCE], [b"old"])
    assert mirror.get(BTC_BINANCE) is None

    before_flush = mirror.read_started()
    mirror.read_done(before_flush, [BTC_BINANCE], [b"v"])
    assert mirror.invalidate(None) == []  # FLUSHALL: everything goes, venues included
    assert mirror.get(BTC_BINANCE) is None
    assert mirror.venues("BTC-USDT") == []
    mirror.read_done(before_flush, [BTC_BINANCE], [b"v"])
    assert mirror.get(BTC_BINANCE) is None


def test_nothing_is_kept_while_not_live() -> None:
    mirror = PriceMirror(max_lag_ns=100 * MS)
    mirror.read_done(mirror.read_started(), [BTC_BINANCE], [b"v"])
    assert len(mirror) == 0


def test_the_venue_index_follows_scans_invalidations_and_absent_keys() -> None:
    mirror = live_mirror(BTC_OKX, "px:okx:ETH-USDT", "px:bad", "px:Bad:BTC-USDT")
    assert mirror.venues("BTC-USDT") == ["okx"]
    mirror.invalidate([b"px:binance:BTC-USDT"])  # a new key: a new venue, no SCAN needed
    assert mirror.venues("BTC-USDT") == ["binance", "okx"]
    assert mirror.holds("binance", "BTC-USDT")
    assert not mirror.holds("kraken", "BTC-USDT")
    # A read finding no value (the key was deleted) takes the venue out...
    mirror.read_done(mirror.read_started(), [BTC_OKX], [None])
    assert mirror.venues("BTC-USDT") == ["binance"]
    # ...unless the key was written again after the read was sent.
    started = mirror.read_started()
    mirror.invalidate([BTC_BINANCE.encode()])
    mirror.read_done(started, [BTC_BINANCE], [None])
    assert mirror.venues("BTC-USDT") == ["binance"]
    assert mirror.venues("SOL-USDT") == []


def test_max_lag_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_lag_ns"):
        PriceMirror(max_lag_ns=0)
