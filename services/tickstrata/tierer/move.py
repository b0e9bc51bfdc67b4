"""Hot → warm for one table, one exchange, one day: copy → verify → catalog. The partition drop is `hot_drop`.

Per instrument, in this order, each step safe to repeat after a crash at any point:

1. **Read** the instrument's rows from the hot tier (`export.read_day`) and digest them (`digest`).
2. **Compare** with what the warm tier already holds of that instrument's day. Equal: an earlier run copied it and
   stopped before cataloguing, so nothing is written again. Different and not empty (an insert cut short, or rows
   that reached the hot day after an earlier copy): that slice is deleted first, so a row is never in warm twice.
3. **Insert** the warm rows with a deduplication token derived from the content (`<table>/<exchange>/<symbol>/
   <day>/<digest>`); after a delete the token also carries a fresh nonce, because the deleted blocks' tokens are
   still in the window and would make ClickHouse skip the re-insert.
4. **Verify**: read the slice back, turn it into hot rows (`common.warm_rows.from_warm`) and compare digests, row
   counts and the volume sum. A mismatch fails the move; the hot rows stay.
5. **Catalog** the verified copy (`tier_catalog`): only a catalogued instrument-day counts when the hot partition
   is considered for dropping.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from tickstrata.common.questdb_rest import QuestDBRest
from tickstrata.common.questdb_schema import CANDLES_TABLE, TRADES_TABLE, Scale, StorageTier, TableSpec
from tickstrata.common.warm_rows import from_warm, to_warm
from tickstrata.common.warm_schema import WARM_TABLES_BY_NAME
from tickstrata.tierer.digest import canonical, column_sum, digest
from tickstrata.tierer.export import day_bounds_ns, read_day
from tickstrata.tierer.scales import ScaleBook
from tickstrata.tierer.warm_store import WarmStore

logger = logging.getLogger(__name__)

VOLUME_COLUMN = {TRADES_TABLE: "size", CANDLES_TABLE: "volume"}
"""The column whose sum the catalog records per instrument-day: a figure a person can check against the venue."""


class MoveVerifyError(RuntimeError):
    """The warm copy does not equal the hot rows; the hot rows stay where they are."""


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    day: dt.date
    table: str
    exchange: str
    symbol: str
    tier: StorageTier
    rows: int
    digest: str
    volume_sum: float | None
    price_scale: int | None
    size_scale: int | None
    scales_inferred: bool


async def move_day_to_warm(
    rest: QuestDBRest,
    store: WarmStore,
    spec: TableSpec,
    *,
    exchange: str,
    symbols: tuple[str, ...],
    day: dt.date,
    scale_book: ScaleBook,
) -> list[CatalogEntry]:
    """Copy and verify every instrument of ``exchange`` (or of ``symbols``) in ``spec``'s table on ``day``."""
    hot = await read_day(rest, spec, exchange, symbols, day)
    entries = []
    for symbol in sorted(set(hot.column("symbol").to_pylist())):
        rows = hot.filter(pc.equal(hot.column("symbol"), symbol))
        entry = await _move_instrument(
            store, spec, rows, exchange=exchange, symbol=symbol, day=day, scale_book=scale_book
        )
        entries.append(entry)
    return entries


async def _move_instrument(
    store: WarmStore,
    spec: TableSpec,
    rows: pa.Table,
    *,
    exchange: str,
    symbol: str,
    day: dt.date,
    scale_book: ScaleBook,
) -> CatalogEntry:
    warm_table = WARM_TABLES_BY_NAME[spec.name]
    hot_digest = digest(canonical(spec, rows))
    held = await asyncio.to_thread(store.read_day, warm_table, exchange, (symbol,), day)
    held_digest = digest(canonical(spec, from_warm(warm_table, held))) if held.num_rows else None
    scales = scale_book.scales(spec, symbol, rows)
    if held_digest != hot_digest:
        token = f"{spec.name}/{exchange}/{symbol}/{day.isoformat()}/{hot_digest}"
        if held.num_rows:
            logger.warning(
                "warm slice differs from the hot rows: replacing it",
                extra={"table": spec.name, "exchange": exchange, "symbol": symbol, "day": day.isoformat(),
                       "warm_rows": held.num_rows, "hot_rows": rows.num_rows},
            )  # fmt: skip
            await asyncio.to_thread(store.delete_day, warm_table, exchange, symbol, day)
            token += f"/{uuid.uuid4().hex}"
        warm = to_warm(warm_table, rows, scales.by_scale)
        await asyncio.to_thread(store.insert, warm_table, warm, token=token)
        # Read back what was written: the insert itself is what the digest must vouch for.
        held = await asyncio.to_thread(store.read_day, warm_table, exchange, (symbol,), day)
    back_hot = canonical(spec, from_warm(warm_table, held))
    found = (back_hot.num_rows, digest(back_hot))
    _verify(spec, exchange, symbol, day, expected=(rows.num_rows, hot_digest), found=found)
    volume_column = VOLUME_COLUMN.get(spec.name)
    return CatalogEntry(
        day=day,
        table=spec.name,
        exchange=exchange,
        symbol=symbol,
        tier=StorageTier.WARM,
        rows=rows.num_rows,
        digest=hot_digest,
        volume_sum=column_sum(back_hot, volume_column) if volume_column else None,
        price_scale=_single(scales.by_scale.get(Scale.PRICE)),
        size_scale=_single(scales.by_scale.get(Scale.SIZE)),
        scales_inferred=scales.inferred,
    )


def _verify(
    spec: TableSpec, exchange: str, symbol: str, day: dt.date, *, expected: tuple[int, str], found: tuple[int, str]
) -> None:
    if found != expected:
        raise MoveVerifyError(
            f"{spec.name} {exchange} {symbol} {day}: the warm copy holds {found[0]} rows (digest {found[1][:12]}), "
            f"the hot tier {expected[0]} (digest {expected[1][:12]}); the hot rows are kept"
        )


def _single(scales: npt.NDArray[np.uint8] | None) -> int | None:
    """The scale a day was stored with when it is one value (a tick change mid-day: the last one)."""
    if scales is None or not len(scales):
        return None
    return int(scales[-1])


def day_start_ns(day: dt.date) -> int:
    return day_bounds_ns(day)[0]
