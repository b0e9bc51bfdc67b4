"""Drop a hot day partition once every row in it is safely warm.

QuestDB drops whole day partitions, and one partition holds every exchange's rows of that day, while each feed's
tierer moves only its own exchange. So the per-feed jobs never drop what they copied: after its copies are
catalogued, a job looks at the whole partition and drops it only when every (exchange, symbol) in it is catalogued
warm with exactly the rows the partition holds now. Until the last feed's job has moved its share, the day stays hot
(the others' data is still only there); two jobs that both find the day complete both ask for the drop, and the
second finds nothing left to drop. Hot retention is therefore global in effect (a day leaves QuestDB when its last
feed moves it), while warm and cold retention are per feed.

A row that reaches the partition after the check and before the drop (a backfill writing a day older than the hot
window, within those milliseconds) would be lost with it; the validator's completeness scan reports such a minute
and its backfill lands in the hot tier again, to be moved by the next run.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from tickstrata.common.questdb_rest import QuestDBRest
from tickstrata.common.questdb_schema import StorageTier, TableSpec
from tickstrata.tierer.catalog import catalogued
from tickstrata.tierer.export import day_bounds_ns

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DropOutcome:
    dropped: bool
    waiting_for: tuple[str, ...]
    """`exchange/symbol (n rows hot, m catalogued)` for every instrument that keeps the day hot."""


async def partition_counts(rest: QuestDBRest, spec: TableSpec, day: dt.date) -> dict[tuple[str, str], int]:
    start_ns, end_ns = day_bounds_ns(day)
    payload = await rest.exec_sql(
        f"SELECT exchange, symbol, count() FROM {spec.name} "  # noqa: S608 - names from the spec
        f"WHERE ts >= {start_ns}::timestamp_ns AND ts < {end_ns}::timestamp_ns"
    )
    return {(str(r[0]), str(r[1])): int(r[2]) for r in payload.get("dataset", [])}


async def drop_if_all_warm(rest: QuestDBRest, spec: TableSpec, day: dt.date) -> DropOutcome:
    counts = await partition_counts(rest, spec, day)
    if not counts:
        return DropOutcome(dropped=False, waiting_for=())
    warm = await catalogued(rest, spec.name, day, StorageTier.WARM)
    waiting = tuple(
        f"{exchange}/{symbol} ({rows} rows hot, {warm[(exchange, symbol)][0] if (exchange, symbol) in warm else 0} "
        "catalogued)"
        for (exchange, symbol), rows in sorted(counts.items())
        if warm.get((exchange, symbol), (None, ""))[0] != rows
    )
    if waiting:
        return DropOutcome(dropped=False, waiting_for=waiting)
    await rest.exec_sql(f"ALTER TABLE {spec.name} DROP PARTITION LIST '{day.isoformat()}'")
    logger.info("hot partition dropped", extra={"table": spec.name, "day": day.isoformat(), "instruments": len(counts)})
    return DropOutcome(dropped=True, waiting_for=())
