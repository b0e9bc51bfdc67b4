"""SubscribeLatest's conflation: the newest value per instrument, at most once per interval, bounded memory."""

from __future__ import annotations

from decimal import Decimal

from tickstrata.common.streams import LatestPrice
from tickstrata.query.live import Conflator

SEC = 1_000_000_000


def _price(value: int, ts_ns: int) -> LatestPrice:
    return LatestPrice(Decimal(value), None, ts_ns, ts_ns + 1)


def test_without_an_interval_every_offer_is_due_at_once() -> None:
    conflator = Conflator(min_interval_ns=0)
    conflator.offer(("binance", "BTC-USDT"), _price(1, 10))
    assert [v.price for _, v in conflator.due(now_ns=100)] == [Decimal(1)]
    assert conflator.due(now_ns=100) == []
    assert conflator.next_due_ns() is None


def test_a_slow_reader_gets_the_newest_value_never_a_backlog() -> None:
    conflator = Conflator(min_interval_ns=SEC)
    btc = ("binance", "BTC-USDT")
    conflator.offer(btc, _price(1, 1))
    assert len(conflator.due(now_ns=0)) == 1
    for step in range(2, 1000):
        conflator.offer(btc, _price(step, step))
    assert len(conflator.pending) == 1  # memory: one value per instrument, whatever the rate
    assert conflator.due(now_ns=SEC // 2) == []  # held back until the interval has passed
    assert conflator.next_due_ns() == SEC
    [(instrument, latest)] = conflator.due(now_ns=SEC)
    assert (instrument, latest.price) == (btc, Decimal(999))


def test_an_older_value_never_replaces_a_newer_one_and_instruments_are_independent() -> None:
    conflator = Conflator(min_interval_ns=SEC)
    conflator.offer(("okx", "BTC-USDT"), _price(5, 50))
    conflator.offer(("okx", "BTC-USDT"), _price(4, 40))  # arrived late from another stream
    conflator.offer(("binance", "BTC-USDT"), _price(7, 10))
    due = conflator.due(now_ns=0)
    assert [(i, v.price) for i, v in due] == [(("binance", "BTC-USDT"), Decimal(7)), (("okx", "BTC-USDT"), Decimal(5))]
