"""The tier catalog in QuestDB (``tier_catalog``): written after a verified copy, read before a partition drop."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence

from tickstrata.common.questdb_rest import QuestDBRest, sql_text
from tickstrata.common.questdb_schema import TIER_CATALOG_SPEC, TIER_CATALOG_TABLE, StorageTier
from tickstrata.tierer.move import CatalogEntry, day_start_ns

VISIBLE_TIMEOUT_SECS = 30.0
"""How long a run waits for its catalog rows to be applied (QuestDB's WAL applies asynchronously) before it leaves
the partition drop to the next run."""


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return sql_text(str(value))


def insert_sql(entries: Sequence[CatalogEntry], *, recorded_ns: int) -> str:
    columns = ", ".join(column.name for column in TIER_CATALOG_SPEC.columns)
    rows = []
    for e in entries:
        values: tuple[object, ...] = (e.table, e.exchange, e.symbol, str(e.tier), e.rows, e.digest, e.volume_sum)
        values += (e.price_scale, e.size_scale, e.scales_inferred, recorded_ns)
        rows.append(f"({day_start_ns(e.day)}::timestamp_ns, {', '.join(_literal(v) for v in values)})")
    return f"INSERT INTO {TIER_CATALOG_TABLE} ({columns}) VALUES {', '.join(rows)}"  # noqa: S608 - literals quoted


async def record(rest: QuestDBRest, entries: Sequence[CatalogEntry]) -> None:
    """Write the entries and wait until QuestDB shows them (bounded; see ``VISIBLE_TIMEOUT_SECS``)."""
    if not entries:
        return
    await rest.exec_sql(insert_sql(entries, recorded_ns=time.time_ns()))
    deadline = time.monotonic() + VISIBLE_TIMEOUT_SECS
    while time.monotonic() < deadline:
        seen = await catalogued(rest, entries[0].table, entries[0].day, StorageTier.WARM)
        if all(seen.get((e.exchange, e.symbol)) == (e.rows, e.digest) for e in entries):
            return
        await asyncio.sleep(0.2)


async def catalogued(
    rest: QuestDBRest, table: str, day: dt.date, tier: StorageTier
) -> dict[tuple[str, str], tuple[int, str]]:
    """(exchange, symbol) → (rows, digest) of the day's catalogued copies of ``table`` in ``tier``."""
    payload = await rest.exec_sql(
        f"SELECT exchange, symbol, rows, digest FROM {TIER_CATALOG_TABLE} "  # noqa: S608 - literals quoted
        f"WHERE ts = {day_start_ns(day)}::timestamp_ns AND data_table = {sql_text(table)} "
        f"AND tier = {sql_text(str(tier))}"
    )
    return {(str(r[0]), str(r[1])): (int(r[2]), str(r[3])) for r in payload.get("dataset", [])}


async def catalogued_days(rest: QuestDBRest, exchange: str, tier: StorageTier) -> list[dt.date]:
    """The distinct days of ``exchange`` (every exchange when empty) catalogued in ``tier``, oldest first."""
    where = f"tier = {sql_text(str(tier))}" + (f" AND exchange = {sql_text(exchange)}" if exchange else "")
    payload = await rest.exec_sql(
        f"SELECT DISTINCT cast(ts AS LONG) FROM {TIER_CATALOG_TABLE} WHERE {where}"  # noqa: S608 - literals quoted
    )
    days = {dt.datetime.fromtimestamp(int(row[0]) // 1_000_000_000, dt.UTC).date() for row in payload["dataset"]}
    return sorted(days)
