"""Stored values the query service refuses: the bound checks, the mirror keeping no bad value, the log limiter,
the row batches from the hot tier, and the counter."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tickstrata.common.streams import LatestPrice, encode_latest_price
from tickstrata.query.bad_values import BadValues, LogLimiter, float_problem, latest_price_problem
from tickstrata.query.latest import (
    LatestPriceQuery,
    RawValue,
    Rejected,
    build_response,
    cache_value_problem,
    checked_value,
)
from tickstrata.query.mirror import PriceMirror
from tickstrata.query.row_batches import minute_row_problem, trade_batcher, trade_row_problem

SEC = 1_000_000_000
NOW_NS = 1_767_225_600 * SEC
KEY = "px:evil:BTC-USDT"
HUGE = Decimal("1e999999999")


def _value(price: str, size: str | None = "0.5") -> LatestPrice:
    return LatestPrice(Decimal(price), None if size is None else Decimal(size), NOW_NS - SEC, NOW_NS)


@pytest.mark.parametrize(
    ("price", "size", "bad"),
    [
        ("64000.5", "0.5", None),
        ("0.00000001", None, None),
        ("64000", "0", None),
        ("1e999999999", "1", "price"),
        ("1e20", "1", "price"),
        ("1e-21", "1", "price"),
        ("0", "1", "price"),
        ("-5", "1", "price"),
        ("1", "1e400", "size"),
        ("1", "-1", "size"),
    ],
)
def test_latest_price_bounds_are_the_collectors(price: str, size: str | None, bad: str | None) -> None:
    problem = latest_price_problem(_value(price, size))
    assert (problem is None) if bad is None else (problem is not None and problem.startswith(bad))
    if problem is not None:
        assert "999" not in problem, "the reason never quotes the number"


def test_a_huge_cache_value_is_rejected_without_formatting_it() -> None:
    raw = encode_latest_price(LatestPrice(HUGE, None, NOW_NS, NOW_NS))
    assert isinstance(checked_value(raw), Rejected)
    assert cache_value_problem(raw) is not None
    assert cache_value_problem(encode_latest_price(_value("1"))) is None
    assert isinstance(checked_value(b"\xc1"), Rejected)


def test_build_response_leaves_out_a_huge_price_like_a_missing_venue() -> None:
    query = LatestPriceQuery("BTC-USDT", ("evil", "binance", "known-bad"))
    raw: list[RawValue] = [
        encode_latest_price(LatestPrice(HUGE, None, NOW_NS, NOW_NS)),
        encode_latest_price(_value("64000.5")),
        Rejected("price out of bounds"),
    ]
    response, corrupt = build_response(query, query.exchanges, raw, now_ns=NOW_NS, stale_after_ms=10_000)
    assert [(p.exchange, p.price) for p in response.prices] == [("binance", "64000.5")]
    assert list(response.missing_exchanges) == ["evil", "known-bad"]
    assert [c.exchange for c in corrupt] == ["evil", "known-bad"]


def test_the_mirror_never_keeps_a_bad_value_only_why_until_the_key_changes() -> None:
    mirror = PriceMirror(max_lag_ns=100 * 1_000_000, check=cache_value_problem)
    mirror.go_live([KEY])
    huge = encode_latest_price(LatestPrice(HUGE, None, NOW_NS, NOW_NS))
    mirror.read_done(mirror.read_started(), [KEY], [huge])
    assert mirror.get(KEY) is None
    reason = mirror.rejected(KEY)
    assert reason is not None
    assert len(mirror) == 0
    mirror.invalidate([KEY.encode()])  # rewritten: the reason goes with the old value
    assert mirror.rejected(KEY) is None
    good = encode_latest_price(_value("1"))
    mirror.read_done(mirror.read_started(), [KEY], [good])
    assert (mirror.get(KEY), mirror.rejected(KEY)) == (good, None)


def test_the_log_limiter_allows_a_key_once_per_interval_and_bounds_its_memory() -> None:
    limiter = LogLimiter(interval_ns=60 * SEC, max_keys=2)
    assert limiter.allow("a", 0)
    assert not limiter.allow("a", 59 * SEC)
    assert limiter.allow("a", 60 * SEC)
    assert limiter.allow("b", 61 * SEC)
    assert not limiter.allow("c", 62 * SEC), "full: a and b were logged within the interval"
    assert limiter.allow("c", 121 * SEC), "a was forgotten once its interval had passed"


def test_bad_values_are_counted_by_source_and_logged_once_per_key(caplog: pytest.LogCaptureFixture) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    clock = [0]
    bad = BadValues(meter, clock_ns=lambda: clock[0])
    for _ in range(5):
        bad.record("cache", "evil:BTC-USDT", "price is not a positive number within the stored bounds")
    bad.record("stream", "md:Evil:trades", "not a market-data stream")
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        dict(point.attributes or {})["source"]: getattr(point, "value", None)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "tickstrata.query.bad_values"
        for point in metric.data.data_points
    }
    assert points == {"cache": 5, "stream": 1}
    assert [getattr(r, "key", None) for r in caplog.records if r.getMessage().startswith("stored value left out")] == [
        "evil:BTC-USDT",
        "md:Evil:trades",
    ]


def test_float_bounds_for_values_read_back_from_questdb() -> None:
    assert float_problem("price", 64000.5, positive=True) is None
    assert float_problem("price", 1e300, positive=True) is not None
    assert float_problem("price", 0.0, positive=True) is not None
    assert float_problem("size", 0.0) is None
    assert float_problem("size", -1.0) is not None
    assert float_problem("quote_volume", math.nan, nullable=True) is None
    assert float_problem("volume", None) is not None


def test_a_bad_trade_row_is_left_out_of_the_batches_and_reported() -> None:
    batcher = trade_batcher(batch_rows=2)
    rows = [(i, i + 1, str(i), 64000.0 + i, 0.5, "buy") for i in range(5)]
    rows[2] = (2, 3, "2", 1e300, 0.5, "buy")
    problems = [batcher.add(row) for row in rows]
    assert [p is None for p in problems] == [True, True, False, True, True]
    table = batcher.table()
    assert table.column("trade_id").to_pylist() == ["0", "1", "3", "4"]
    assert table.column("price").to_pylist() == [64000.0, 64001.0, 64003.0, 64004.0]
    assert trade_row_problem((1, 2, "", 1.0, 1.0, "buy")) is not None


def test_a_minute_row_needs_positive_prices_and_may_lack_a_quote_volume() -> None:
    row = [60 * SEC, 1.0, 2.0, 0.5, 1.5, 3.0, None, 4, True, "ws"]
    assert minute_row_problem(row) is None
    assert minute_row_problem([*row[:2], 1e21, *row[3:]]) is not None
    assert minute_row_problem([*row[:6], -1.0, *row[7:]]) is not None
