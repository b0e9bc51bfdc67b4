"""Read one feed's day of one table out of the hot tier as Arrow, through QuestDB's Parquet export.

``/exp?fmt=parquet`` is QuestDB's bulk path: columnar and typed (nanosecond timestamps, doubles, book arrays as
nested lists), about the size of the data, where ``/exec`` would send JSON text. One query per (table, feed, day),
selecting the spec's columns by name; VARCHAR columns are cast because QuestDB 9.3.4 exports a VARCHAR read
straight from a table as nulls (``QuestDBRest.export_parquet``). Nothing here trusts the export: the move compares
what it read with what the destination holds, and the destination with a second read of the source.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from tickstrata.common.questdb_rest import QuestDBRest, sql_text
from tickstrata.common.questdb_schema import TIMESTAMP_COLUMN, Kind, TableSpec

_VARCHAR_KINDS: Final = frozenset({Kind.ID, Kind.TEXT, Kind.DECIMAL_TEXT})


def day_bounds_ns(day: dt.date) -> tuple[int, int]:
    """[start, end) of a UTC day in nanoseconds."""
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    return start, start + 86_400 * 1_000_000_000


def export_sql(spec: TableSpec, exchange: str, symbols: tuple[str, ...], day: dt.date) -> str:
    """The query for one exchange's (and optionally some symbols') rows of ``spec`` on ``day``."""
    columns = ", ".join(
        f"cast({column.name} AS STRING) {column.name}" if column.kind in _VARCHAR_KINDS else column.name
        for column in spec.columns
    )
    start_ns, end_ns = day_bounds_ns(day)
    where = [
        f"exchange = {sql_text(exchange)}",
        # Integer bounds on the designated timestamp: an interval scan of exactly one partition.
        f"{TIMESTAMP_COLUMN} >= {start_ns}::timestamp_ns AND {TIMESTAMP_COLUMN} < {end_ns}::timestamp_ns",
    ]
    if symbols:
        where.append(f"symbol IN ({', '.join(sql_text(symbol) for symbol in symbols)})")
    return f"SELECT {columns} FROM {spec.name} WHERE {' AND '.join(where)}"  # noqa: S608 - names from the spec


async def read_day(
    rest: QuestDBRest, spec: TableSpec, exchange: str, symbols: tuple[str, ...], day: dt.date
) -> pa.Table:
    """The rows as Arrow (the spec's column names)."""
    body = await rest.export_parquet(export_sql(spec, exchange, symbols, day))
    if not body:
        return pa.table({column.name: pa.array([]) for column in spec.columns})
    return pq.read_table(io.BytesIO(body))
