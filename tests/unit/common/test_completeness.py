"""The completeness contract and the backfill routes: names, the percentage, the encoded counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickstrata.common.backfill_routes import backfill_routes_key, parse_address
from tickstrata.common.completeness import BucketCounts, completeness_key, completeness_percent, sum_symbols


def test_percent_is_rounded_down_so_one_missing_minute_in_a_year_shows() -> None:
    assert completeness_percent(BucketCounts(present=525_599, missing=1)) == "99.999809"
    assert completeness_percent(BucketCounts(present=3, pending=7)) == "100.000000"
    assert completeness_percent(BucketCounts(pending=7)) == "100.000000"  # nothing judged: nothing missing
    assert completeness_percent(BucketCounts(missing=1)) == "0.000000"


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_percent_is_100_exactly_when_nothing_is_missing(
    present: int, backfilled: int, empty: int, missing: int
) -> None:
    counts = BucketCounts(present, backfilled, empty, missing)
    assert (completeness_percent(counts) == "100.000000") == (missing == 0)
    assert BucketCounts.decode(counts.encode()) == counts


def test_symbols_are_summed_and_malformed_counts_refused() -> None:
    fields: dict[bytes | str, bytes | str] = {
        b"BTC-USDT": b"1,2,3,4,5",
        b"ETH-USDT": b"10,0,0,0,0",
        b"_updated_ns": b"1",
    }
    assert sum_symbols(fields, ["BTC-USDT", "ETH-USDT"]) == BucketCounts(11, 2, 3, 4, 5)
    assert sum_symbols(fields, ["SOL-USDT"]) is None
    with pytest.raises(ValueError, match="five non-negative integers"):
        sum_symbols({"BTC-USDT": "1,2,3"}, ["BTC-USDT"])
    assert completeness_key("binance-usdm") == "quality:completeness:binance-usdm"


def test_backfill_routes_name_and_addresses() -> None:
    assert backfill_routes_key("binance") == "backfill:routes:binance"
    assert parse_address(b"btc-collector.md.svc:50051") == "btc-collector.md.svc:50051"
    for bad in ("no-port", "host:0", "host:99999", ":50051", "a b:1"):
        with pytest.raises(ValueError, match="host:port"):
            parse_address(bad)
