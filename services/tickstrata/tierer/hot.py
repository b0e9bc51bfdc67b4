"""What the hot tier (QuestDB) holds of a feed: its day partitions and its newest row, per market-data table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from tickstrata.common.questdb_rest import QuestDBRest, sql_text
from tickstrata.common.questdb_schema import TABLES, TIMESTAMP_COLUMN, TableSpec
from tickstrata.tierer.export import day_bounds_ns


@dataclass(frozen=True, slots=True)
class FeedFilter:
    exchange: str
    """Empty: every exchange."""
    symbols: tuple[str, ...]
    """Empty: every symbol of the exchange."""

    def where(self) -> str:
        terms = []
        if self.exchange:
            terms.append(f"exchange = {sql_text(self.exchange)}")
        if self.symbols:
            terms.append(f"symbol IN ({', '.join(sql_text(s) for s in self.symbols)})")
        return f" WHERE {' AND '.join(terms)}" if terms else ""


@dataclass(frozen=True, slots=True)
class HotTable:
    table: str
    days: tuple[dt.date, ...]
    """The days that hold at least one row of the feed, oldest first."""
    newest_ns: int | None
    """The feed's newest designated timestamp in the table; None when the table holds none of its rows."""


async def feed_tables(rest: QuestDBRest, feed: FeedFilter) -> list[HotTable]:
    """Each market-data table's days and newest row for `feed` (one grouped read per table)."""
    found = []
    for spec in TABLES:
        payload = await rest.exec_sql(
            f"SELECT timestamp_floor('d', {TIMESTAMP_COLUMN}) day, max({TIMESTAMP_COLUMN}) newest "  # noqa: S608 - constants, quoted text
            f"FROM {spec.name}{feed.where()} SAMPLE BY 1d ALIGN TO CALENDAR ORDER BY day"
        )
        rows: Sequence[Sequence[str]] = payload.get("dataset", [])
        days = tuple(_day(row[0]) for row in rows)
        newest = max((_ns(row[1]) for row in rows), default=None)
        found.append(HotTable(spec.name, days, newest))
    return found


async def day_exchanges(rest: QuestDBRest, spec: TableSpec, day: dt.date) -> list[str]:
    """The exchanges with rows in ``spec``'s table on ``day`` (a job without an exchange moves them all)."""
    start_ns, end_ns = day_bounds_ns(day)
    payload = await rest.exec_sql(
        f"SELECT DISTINCT exchange FROM {spec.name} "  # noqa: S608 - names from the spec
        f"WHERE {TIMESTAMP_COLUMN} >= {start_ns}::timestamp_ns AND {TIMESTAMP_COLUMN} < {end_ns}::timestamp_ns"
    )
    return sorted(str(row[0]) for row in payload.get("dataset", []))


def _day(text: str) -> dt.date:
    return dt.date.fromisoformat(text[:10])


def _ns(text: str) -> int:
    """QuestDB's REST timestamps: `2026-12-03T10:00:00.123456789Z` (ns) or with fewer digits."""
    stamp, _, fraction = text.rstrip("Z").partition(".")
    whole = dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC)
    return int(whole.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0")[:9])
