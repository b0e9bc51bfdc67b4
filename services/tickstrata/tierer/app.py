"""Tierer: one run-to-completion job per stage and feed (hot → warm → cold → expired).

Built: the job's lifecycle (`common.job`), its settings (every variable the operator sets, nothing else), and the
hot → warm stage: the feed's days older than `hot_days` (aged from min(wall clock, newest row)) are copied to
ClickHouse instrument by instrument, verified, catalogued (`tierer.move`), and each hot day partition is dropped
once every exchange in it is warm (`tierer.hot_drop`). Not built yet: warm → cold and cold expiry; those stages
plan from the tier catalog and, when months are due, fail loudly naming them instead of exiting 0 and letting a
tier grow unseen.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from tickstrata.common.job import JobApp, JobContext
from tickstrata.common.questdb_rest import QuestDBRest
from tickstrata.common.questdb_schema import TABLES_BY_NAME, TIER_CATALOG_SPEC, StorageTier
from tickstrata.tierer import catalog
from tickstrata.tierer.hot import FeedFilter, HotTable, day_exchanges, feed_tables
from tickstrata.tierer.hot_drop import drop_if_all_warm
from tickstrata.tierer.move import move_day_to_warm
from tickstrata.tierer.plan import due_days, due_months, reference_day
from tickstrata.tierer.scales import ScaleBook, read_scale_book
from tickstrata.tierer.settings import Stage, TiererSettings
from tickstrata.tierer.warm_store import WarmStore, open_store

logger = logging.getLogger(__name__)


class MoveNotBuiltError(RuntimeError):
    """Data is due to move, but this version of the tierer cannot move it yet."""


class TiererJob(JobApp[TiererSettings]):
    name: ClassVar[str] = "tierer"

    async def run(self, context: JobContext) -> Mapping[str, Any]:
        settings = self.settings
        stages = (
            [Stage.HOT_TO_WARM, Stage.WARM_TO_COLD, Stage.EXPIRE_COLD]
            if settings.stage is Stage.ALL
            else [settings.stage]
        )
        summary: dict[str, Any] = {"stages": [str(s) for s in stages]}
        for stage in stages:
            context.raise_if_stopping()
            if stage is Stage.HOT_TO_WARM:
                summary.update(await self._hot_to_warm(context))
            elif stage is Stage.EXPIRE_COLD and not settings.cold_days:
                summary["expire_cold"] = "cold data is kept forever (TIERER_COLD_DAYS=0)"
            else:
                summary.update(await self._plan_unbuilt(stage))
        return summary

    async def _plan_unbuilt(self, stage: Stage) -> dict[str, Any]:
        """Warm → cold and cold expiry are not built: with nothing due (read from the tier catalog) the stage is
        done; with months due it fails naming them, so the data's age is never ignored silently."""
        settings = self.settings
        tier, keep_days = (
            (StorageTier.WARM, settings.warm_days)
            if stage is Stage.WARM_TO_COLD
            else (StorageTier.COLD, settings.cold_days)
        )
        rest = QuestDBRest(settings.questdb_http_url)
        try:
            await rest.create_tables([TIER_CATALOG_SPEC.create_sql()])
            days = await catalog.catalogued_days(rest, settings.exchange, tier)
            tables = await feed_tables(rest, FeedFilter(settings.exchange, tuple(settings.symbols)))
        finally:
            await rest.close()
        newest = max((t.newest_ns for t in tables if t.newest_ns is not None), default=None)
        reference = reference_day(wall_ns=time.time_ns(), newest_ns=newest)
        due = due_months(days, reference=reference, keep_days=keep_days)
        if due:
            raise MoveNotBuiltError(
                f"stage {stage}: {len(due)} month(s) of {settings.exchange or 'every exchange'} in the {tier} tier are "
                f"due ({', '.join(m.strftime('%Y-%m') for m in due)}), but this move is not built yet: they stay {tier}"
            )
        return {f"{stage}_months_due": 0, f"{tier}_days_catalogued": len(days)}

    async def _hot_to_warm(self, context: JobContext) -> dict[str, Any]:
        settings = self.settings
        feed = FeedFilter(settings.exchange, tuple(settings.symbols))
        rest = QuestDBRest(settings.questdb_http_url)
        try:
            tables = await feed_tables(rest, feed)
            due = _due_hot_days(tables, wall_ns=time.time_ns(), hot_days=settings.hot_days)
            count = sum(len(days) for days in due.values())
            logger.info(
                "hot to warm planned",
                extra={"due": {table: [str(d) for d in days] for table, days in due.items() if days}},
            )
            if not count:
                return {"hot_days_due": 0}
            await rest.create_tables([TIER_CATALOG_SPEC.create_sql()])
            store = await asyncio.to_thread(open_store, settings.clickhouse_dsn)
            try:
                await asyncio.to_thread(store.ensure_tables)
                return await self._move_due(context, rest, store, feed, due)
            finally:
                await asyncio.to_thread(store.close)
        finally:
            await rest.close()

    async def _move_due(
        self,
        context: JobContext,
        rest: QuestDBRest,
        store: WarmStore,
        feed: FeedFilter,
        due: dict[str, list[dt.date]],
    ) -> dict[str, Any]:
        books: dict[str, ScaleBook] = {}
        moved_rows = 0
        dropped: list[str] = []
        kept: dict[str, list[str]] = {}
        for table, days in due.items():
            spec = TABLES_BY_NAME[table]
            for day in days:
                context.raise_if_stopping()
                started = time.monotonic()
                exchanges = [feed.exchange] if feed.exchange else await day_exchanges(rest, spec, day)
                for exchange in exchanges:
                    if exchange not in books:
                        books[exchange] = await read_scale_book(rest, exchange)
                    entries = await move_day_to_warm(
                        rest, store, spec, exchange=exchange, symbols=feed.symbols, day=day, scale_book=books[exchange]
                    )
                    await catalog.record(rest, entries)
                    rows = sum(entry.rows for entry in entries)
                    moved_rows += rows
                    logger.info(
                        "moved %s %s %s to warm: %d instruments, %d rows in %.1f s",
                        table, exchange, day, len(entries), rows, time.monotonic() - started,
                    )  # fmt: skip
                outcome = await drop_if_all_warm(rest, spec, day)
                if outcome.dropped:
                    dropped.append(f"{table}/{day}")
                elif outcome.waiting_for:
                    kept[f"{table}/{day}"] = list(outcome.waiting_for)
                    logger.info(
                        "hot day kept until every exchange in it is warm",
                        extra={"table": table, "day": day.isoformat(), "waiting_for": list(outcome.waiting_for)},
                    )
        return {"hot_days_due": sum(len(d) for d in due.values()), "rows_moved": moved_rows, "dropped": dropped,
                "kept_hot": kept}  # fmt: skip


def _due_hot_days(tables: list[HotTable], *, wall_ns: int, hot_days: int) -> dict[str, list[Any]]:
    """Per table, the feed's days due to leave the hot tier. The reference day is shared by all tables: the newest
    row of any table, so a table that stopped receiving (funding of a delisted perpetual) still ages out."""
    newest = max((t.newest_ns for t in tables if t.newest_ns is not None), default=None)
    reference = reference_day(wall_ns=wall_ns, newest_ns=newest)
    return {t.table: due_days(t.days, reference=reference, keep_days=hot_days) for t in tables}
