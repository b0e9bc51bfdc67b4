"""The scale each row of an instrument is stored with in the warm and cold tiers, from the instruments table.

A row at time ``t`` takes the instrument's newest spec at or before ``t`` (the oldest spec for rows older than any):
prices scale by the decimals of its tick size, sizes by those of its lot size (``common.scaled.scale_of_increment``),
so a value on the venue's grid is an exact integer. An instrument no collector ever described (data from before the
instruments table, or written by hand) takes the smallest scale that holds every one of its values that day exactly,
and the catalog says so (``scales_inferred``): exact all the same, only not tied to the venue's grid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from tickstrata.common.questdb_rest import QuestDBRest, sql_text
from tickstrata.common.questdb_schema import INSTRUMENTS_TABLE, Kind, Scale, TableSpec
from tickstrata.common.scaled import scale_of_increment, smallest_exact_scale
from tickstrata.common.warm_schema import LEVEL_PART_INDEX


@dataclass(frozen=True, slots=True)
class SpecRow:
    valid_from_ns: int
    price_scale: int
    size_scale: int


@dataclass(frozen=True, slots=True)
class RowScales:
    """Per-row scales for one instrument's rows, and whether they had to be inferred from the values."""

    by_scale: Mapping[Scale, npt.NDArray[np.uint8]]
    inferred: bool


@dataclass(slots=True)
class ScaleBook:
    """Every instrument spec of one exchange, oldest first per symbol."""

    specs: dict[str, list[SpecRow]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, int, str, str]]) -> ScaleBook:
        """From (symbol, valid_from_ns, tick_size, lot_size) rows in any order."""
        book = cls()
        for symbol, valid_from_ns, tick_size, lot_size in rows:
            spec = SpecRow(valid_from_ns, scale_of_increment(Decimal(tick_size)), scale_of_increment(Decimal(lot_size)))
            book.specs.setdefault(symbol, []).append(spec)
        for specs in book.specs.values():
            specs.sort(key=lambda spec: spec.valid_from_ns)
        return book

    def scales(self, spec: TableSpec, symbol: str, rows: pa.Table) -> RowScales:
        """The scales of ``rows`` (one instrument's rows of ``spec``, any order)."""
        ts_ns = rows.column("ts").cast(pa.int64()).to_numpy()
        known = self.specs.get(symbol)
        if known:
            starts = np.array([row.valid_from_ns for row in known], dtype=np.int64)
            # The spec in force: the last one starting at or before the row; the first one for older rows.
            index = np.clip(np.searchsorted(starts, ts_ns, side="right") - 1, 0, len(known) - 1)
            price = np.array([row.price_scale for row in known], dtype=np.uint8)[index]
            size = np.array([row.size_scale for row in known], dtype=np.uint8)[index]
            return RowScales({Scale.PRICE: price, Scale.SIZE: size}, inferred=False)
        inferred = {}
        for scale in (Scale.PRICE, Scale.SIZE):
            values = _scaled_values(spec, rows, scale)
            if values is not None:
                inferred[scale] = np.full(len(ts_ns), smallest_exact_scale(values), dtype=np.uint8)
        return RowScales(inferred, inferred=True)


def _scaled_values(spec: TableSpec, rows: pa.Table, scale: Scale) -> npt.NDArray[np.float64] | None:
    """Every value of ``rows`` the scale applies to (book levels included); None when no column has it."""
    parts: list[npt.NDArray[np.float64]] = []
    for column in spec.columns:
        if column.scale is scale:
            parts.append(rows.column(column.name).to_numpy(zero_copy_only=False).astype(np.float64))
        elif column.kind is Kind.LEVELS:
            part = LEVEL_PART_INDEX[scale]
            for side in rows.column(column.name).to_pylist():
                if side:
                    parts.append(np.asarray(side[part], dtype=np.float64))
    if not parts:
        return None
    return np.concatenate(parts)


async def read_scale_book(rest: QuestDBRest, exchange: str) -> ScaleBook:
    """Every instrument spec of ``exchange`` (a few rows per symbol and collector start)."""
    payload = await rest.exec_sql(
        f"SELECT symbol, cast(ts AS LONG), tick_size, lot_size FROM {INSTRUMENTS_TABLE} "  # noqa: S608 - constants
        f"WHERE exchange = {sql_text(exchange)}"
    )
    rows: Sequence[Sequence[object]] = payload.get("dataset", [])
    return ScaleBook.from_rows((str(r[0]), int(str(r[1])), str(r[2]), str(r[3])) for r in rows)
