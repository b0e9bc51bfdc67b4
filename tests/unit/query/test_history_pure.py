"""The pure parts of the history RPCs: exact scales, resampling against a reference, the tier split, requests."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickstrata.marketdata.v1 import market_data_pb2 as md
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.query.history_requests import InvalidHistoryRequestError, candles_query
from tickstrata.query.numeric import encode_column, exact_scale
from tickstrata.query.resample import MINUTE_NS, MINUTE_SCHEMA, drop_forming, resample
from tickstrata.query.tiers import Part, plan

DAY_NS = 1440 * MINUTE_NS
T0_NS = 1_767_225_600_000_000_000


@pytest.mark.parametrize(
    ("texts", "scale"),
    [(["64123.4", "64123.45"], 2), (["1", "2"], 0), (["0.00012000"], 5), (["87701.40", "0.1"], 1), ([], 0)],
)
def test_exact_scale_is_the_shortest_decimal_of_every_value(texts: list[str], scale: int) -> None:
    assert exact_scale(np.array([float(t) for t in texts], dtype=np.float64)) == scale


# Venue strings have at most 15 significant digits (the hot tier's exactness precondition): 10**7 at 8 places.
@given(st.lists(st.decimals(min_value=0, max_value=10**7 - 1, places=8, allow_nan=False), min_size=1, max_size=50))
def test_decimal_encoding_gives_back_the_venue_decimals(values: list[Decimal]) -> None:
    floats = np.array([float(v) for v in values], dtype=np.float64)
    column = encode_column(floats, md.NUMERIC_ENCODING_DECIMAL, exact_scale(floats))
    assert [d.normalize() for d in column.to_pylist()] == [v.normalize() for v in values]


def test_nan_is_null_in_every_encoding() -> None:
    values = np.array([1.5, np.nan], dtype=np.float64)
    for encoding in (md.NUMERIC_ENCODING_DECIMAL, md.NUMERIC_ENCODING_FLOAT64, md.NUMERIC_ENCODING_STRING):
        assert encode_column(values, encoding, 1).to_pylist()[1] is None


def _minutes(rows: list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal, int, bool]]) -> pa.Table:
    return pa.table(
        {
            "open_time_ns": [r[0] for r in rows],
            "open": [float(r[1]) for r in rows],
            "high": [float(r[2]) for r in rows],
            "low": [float(r[3]) for r in rows],
            "close": [float(r[4]) for r in rows],
            "volume": [float(r[5]) for r in rows],
            "quote_volume": [float(r[5]) * 2 for r in rows],
            "trade_count": [r[6] for r in rows],
            "closed": [r[7] for r in rows],
            "source": ["ws"] * len(rows),
        },
        schema=MINUTE_SCHEMA,
    )


minute_rows = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3 * 1440),
        st.decimals(min_value=1, max_value=100_000, places=2),
        st.decimals(min_value=0, max_value=10, places=3),
        st.integers(min_value=0, max_value=1000),
    ),
    max_size=60,
    unique_by=lambda r: r[0],
)


@settings(max_examples=60, deadline=None)
@given(minute_rows, st.sampled_from([300, 900, 3600, 4 * 3600, 86400]))
def test_resampling_equals_a_reference_computation(
    raw: list[tuple[int, Decimal, Decimal, int]], interval_secs: int
) -> None:
    raw.sort()
    rows = [
        (T0_NS + m * MINUTE_NS, p, p + 1, p - Decimal("0.5"), p + Decimal("0.25"), v, n, True) for m, p, v, n in raw
    ]
    got = resample(_minutes(rows), interval_secs, now_ns=T0_NS + 10 * DAY_NS).to_pylist()
    interval_ns = interval_secs * 1_000_000_000
    buckets: dict[int, list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal, int, bool]]] = {}
    for row in rows:
        buckets.setdefault(row[0] // interval_ns * interval_ns, []).append(row)
    expected = [
        {
            "open_time_ns": start,
            "open": float(group[0][1]),
            "high": float(max(r[2] for r in group)),
            "low": float(min(r[3] for r in group)),
            "close": float(group[-1][4]),
            "volume": float(sum(r[5] for r in group)),
            "trade_count": sum(r[6] for r in group),
            "closed": True,
            "source": "resampled",
        }
        for start, group in sorted(buckets.items())
    ]
    assert [{k: v for k, v in row.items() if k != "quote_volume"} for row in got] == expected


def test_a_bucket_is_closed_only_when_it_has_ended_and_every_minute_is_closed() -> None:
    p = Decimal(100)
    rows = [
        (T0_NS, p, p, p, p, Decimal(1), 1, True),
        (T0_NS + 5 * MINUTE_NS, p, p, p, p, Decimal(1), 1, False),  # an open minute in the second 5m bucket
        (T0_NS + 10 * MINUTE_NS, p, p, p, p, Decimal(1), 1, True),  # a bucket not ended at now
    ]
    got = resample(_minutes(rows), 300, now_ns=T0_NS + 12 * MINUTE_NS)
    assert got.column("closed").to_pylist() == [True, False, False]
    assert drop_forming(got).column("open_time_ns").to_pylist() == [T0_NS]


def test_the_router_gives_every_instant_to_the_hottest_tier_holding_it() -> None:
    hot, warm, cold = (700, 2**62), (300, 800), (0, 400)
    assert plan([hot, warm, cold], 100, 1000) == [Part(2, 100, 300), Part(1, 300, 700), Part(0, 700, 1000)]
    assert plan([hot, warm, cold], 750, 760) == [Part(0, 750, 760)]
    assert plan([(500, 600)], 0, 1000) == [Part(0, 500, 600)]  # nothing stored outside: nothing planned
    assert plan([hot], 900, 900) == []


def test_candle_requests_round_the_start_down_and_refuse_bad_intervals() -> None:
    request = pb.GetCandlesRequest(exchange="Binance", symbol="btc-usdt", interval_secs=3600, start_ns=T0_NS + 61)
    query = candles_query(request, now_ns=T0_NS + DAY_NS, max_buckets=100, default_batch_rows=10)
    assert (query.exchange, query.symbol, query.start_ns, query.end_ns) == (
        "binance",
        "BTC-USDT",
        T0_NS,
        T0_NS + DAY_NS,
    )
    assert query.encoding == md.NUMERIC_ENCODING_DECIMAL
    with pytest.raises(InvalidHistoryRequestError, match="multiple of 60"):
        candles_query(pb.GetCandlesRequest(exchange="b", symbol="s", interval_secs=-60), now_ns=T0_NS,
                      max_buckets=100, default_batch_rows=10)  # fmt: skip
