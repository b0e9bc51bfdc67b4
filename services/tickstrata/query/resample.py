"""1-minute candles → any interval that is a multiple of 60 s, calendar-aligned to UTC. Pure: no I/O.

A bucket is `open_time // interval * interval` (so a 1-day candle opens at 00:00 UTC and a 4-hour one at 00, 04,
08 ... UTC). It aggregates the minutes that exist: open of the first, close of the last, high/low extremes,
volume summed; quote volume and trade count are summed only when every minute reports them (null otherwise:
a partial sum would look like a complete one). A bucket is closed when every minute in it is closed and the
bucket has ended; missing minutes do not keep a past bucket open (the validator reports them as gaps).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tickstrata.query.numeric import exact_scale

MINUTE_NS: Final = 60 * 1_000_000_000

# The columns of a 1-minute candle table, as the tiers return them (prices and volumes as float64, NaN = null).
MINUTE_SCHEMA: Final = pa.schema(
    [
        ("open_time_ns", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("quote_volume", pa.float64()),
        ("trade_count", pa.int64()),
        ("closed", pa.bool_()),
        ("source", pa.string()),
    ]
)


def resample(minutes: pa.Table, interval_secs: int, *, now_ns: int) -> pa.Table:
    """Aggregate 1-minute candles (sorted by open_time_ns) into `interval_secs` buckets; same schema, sorted."""
    if interval_secs == 60 or minutes.num_rows == 0:
        return minutes
    interval_ns = interval_secs * 1_000_000_000
    open_ns = minutes.column("open_time_ns").to_numpy()
    buckets = (open_ns // interval_ns) * interval_ns
    table = minutes.append_column("bucket", pa.array(buckets, type=pa.int64()))
    # Volumes are summed as exact integers at the column's decimal scale: a float sum of 0.005 + 0.03 is
    # 0.034999999999999996, not the 0.035 the venue's candles add up to.
    scales = {}
    for name in ("volume", "quote_volume"):
        values = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        scales[name] = exact_scale(values)
        units = np.round(np.nan_to_num(values) * 10.0 ** scales[name]).astype(np.int64)
        table = table.append_column(f"{name}_units", pa.array(units, type=pa.int64()))
    table = table.append_column("qv_null", pc.is_null(table.column("quote_volume"), nan_is_null=True))
    table = table.append_column("tc_null", pc.is_null(table.column("trade_count")))
    grouped = table.group_by("bucket", use_threads=False).aggregate(
        [
            ("open", "first"),
            ("high", "max"),
            ("low", "min"),
            ("close", "last"),
            ("volume_units", "sum"),
            ("quote_volume_units", "sum"),
            ("trade_count", "sum"),
            ("closed", "all"),
            ("qv_null", "any"),
            ("tc_null", "any"),
        ]
    )
    grouped = grouped.sort_by("bucket")
    bucket_ns = grouped.column("bucket").to_numpy()
    ended = bucket_ns + interval_ns <= now_ns
    closed = np.logical_and(grouped.column("closed_all").to_numpy(zero_copy_only=False), ended)
    volume = grouped.column("volume_units_sum").to_numpy().astype(np.float64) / 10.0 ** scales["volume"]
    quote_volume = (
        grouped.column("quote_volume_units_sum").to_numpy().astype(np.float64) / 10.0 ** scales["quote_volume"]
    )
    quote_volume[grouped.column("qv_null_any").to_numpy(zero_copy_only=False)] = np.nan
    trade_count = pc.if_else(
        grouped.column("tc_null_any"), pa.scalar(None, pa.int64()), grouped.column("trade_count_sum")
    )
    return pa.table(
        {
            "open_time_ns": pa.array(bucket_ns, type=pa.int64()),
            "open": grouped.column("open_first"),
            "high": grouped.column("high_max"),
            "low": grouped.column("low_min"),
            "close": grouped.column("close_last"),
            "volume": pa.array(volume, type=pa.float64()),
            "quote_volume": pa.array(quote_volume, type=pa.float64()),
            "trade_count": trade_count,
            "closed": pa.array(closed, type=pa.bool_()),
            "source": pa.array(["resampled"] * grouped.num_rows, type=pa.string()),
        },
        schema=MINUTE_SCHEMA,
    )


def drop_forming(candles: pa.Table) -> pa.Table:
    """Without `include_forming`, the candles not yet closed are left out."""
    if candles.num_rows == 0:
        return candles
    return candles.filter(candles.column("closed"))
