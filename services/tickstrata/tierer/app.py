"""Tierer: one run-to-completion job per stage and feed (hot → warm → cold → expired).

What is built: the job's lifecycle (`common.job`), its settings (every variable the operator sets, nothing else),
and the plan of the hot → warm stage read from QuestDB (which of the feed's days are due, aged from
min(wall clock, newest row)). What is not built yet: the copy → verify → catalog → drop moves themselves. A stage
with nothing due finishes; a stage with work it cannot do fails loudly, naming what is due, instead of exiting 0
and letting the hot tier grow unseen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from tickstrata.common.job import JobApp, JobContext
from tickstrata.common.questdb_rest import QuestDBRest
from tickstrata.tierer.hot import FeedFilter, HotTable, feed_tables
from tickstrata.tierer.plan import due_days, reference_day
from tickstrata.tierer.settings import Stage, TiererSettings

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
                summary["hot_days_due"] = await self._hot_to_warm()
            elif stage is Stage.EXPIRE_COLD and not settings.cold_days:
                summary["expire_cold"] = "cold data is kept forever (TIERER_COLD_DAYS=0)"
            else:
                # Nothing reaches the warm tier until the hot → warm move exists, so there is nothing to plan here.
                raise MoveNotBuiltError(f"stage {stage}: the tier moves are not built yet (only hot-to-warm plans)")
        return summary

    async def _hot_to_warm(self) -> int:
        settings = self.settings
        feed = FeedFilter(settings.exchange, tuple(settings.symbols))
        rest = QuestDBRest(settings.questdb_http_url)
        try:
            tables = await feed_tables(rest, feed)
        finally:
            await rest.close()
        due = _due_hot_days(tables, wall_ns=time.time_ns(), hot_days=settings.hot_days)
        logger.info(
            "hot to warm planned", extra={"due": {table: [str(d) for d in days] for table, days in due.items()}}
        )
        count = sum(len(days) for days in due.values())
        if count:
            listed = "; ".join(f"{table}: {', '.join(str(d) for d in days)}" for table, days in due.items() if days)
            raise MoveNotBuiltError(
                f"{count} day partition(s) of {feed.exchange or 'every exchange'} are older than "
                f"TIERER_HOT_DAYS={settings.hot_days} ({listed}), but the hot → warm move is not built yet: "
                "they stay in QuestDB"
            )
        return count


def _due_hot_days(tables: list[HotTable], *, wall_ns: int, hot_days: int) -> dict[str, list[Any]]:
    """Per table, the feed's days due to leave the hot tier. The reference day is shared by all tables: the newest
    row of any table, so a table that stopped receiving (funding of a delisted perpetual) still ages out."""
    newest = max((t.newest_ns for t in tables if t.newest_ns is not None), default=None)
    reference = reference_day(wall_ns=wall_ns, newest_ns=newest)
    return {t.table: due_days(t.days, reference=reference, keep_days=hot_days) for t in tables}
