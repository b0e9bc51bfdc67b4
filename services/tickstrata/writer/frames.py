"""Wire events → one pandas DataFrame per table, checked column by column. Pure: no I/O here.

Shape of the work, chosen by profiling (``bench/bench_writer.py``; docs/writer.md has the figures): every column
is pulled out of the batch in one pass (a list of one attribute), then converted by C loops: Arrow parses the
price texts into doubles (correctly rounded, so equal to ``float(Decimal(text))``) and dictionary-encodes the
symbols into categoricals; numpy takes the integers. Per row, Python does little more than the attribute reads.

The same conversion enforces what the canonical decoder would (``tickstrata.common.events``): finite prices,
integers in [0, 2**63), non-empty trade ids, valid exchange ids and symbols (checked once per distinct value),
positive intervals. A failed check raises ``ColumnCheckError`` for the batch; ``build_batch`` then sorts the entries
out one by one with the canonical decoder, so a poison entry is dead-lettered alone and its neighbours are stored.

Optional values become Arrow-backed nullable columns whose nulls QuestDB stores as NULL. Book sides become
``[[prices], [sizes]]`` float64 arrays, which the client sends as ``DOUBLE[][]`` over ILP protocol 2 and later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tickstrata.common.events import MAX_DECIMALS, validate_exchange, validate_symbol
from tickstrata.common.questdb_schema import (
    BOOKS_TABLE,
    CANDLES_TABLE,
    FUNDING_TABLE,
    INSTRUMENTS_TABLE,
    QUOTES_TABLE,
    TRADES_TABLE,
    WRITTEN_TABLES,
    Kind,
    TableSpec,
)
from tickstrata.common.streams import EntryDecodeError, EntryFields
from tickstrata.writer.wire import (
    WireBook,
    WireCandle,
    WireEvent,
    WireFunding,
    WireInstrument,
    WireQuote,
    WireTrade,
    canonical_wire_entry,
)

TABLE_OF_WIRE_TYPE: Final[Mapping[type, str]] = {
    WireTrade: TRADES_TABLE,
    WireCandle: CANDLES_TABLE,
    WireQuote: QUOTES_TABLE,
    WireBook: BOOKS_TABLE,
    WireFunding: FUNDING_TABLE,
    WireInstrument: INSTRUMENTS_TABLE,
}

_INT32_LIMIT: Final = 2**31
# Symbol columns whose values need more than their type: each distinct value is checked once per batch.
_VALUE_CHECKS: Final[Mapping[str, Callable[[str], object]]] = {
    "exchange": validate_exchange,
    "symbol": validate_symbol,
}
_ARROW_ERRORS: Final = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError)


class ColumnCheckError(ValueError):
    """A value the canonical decoder would refuse, or one QuestDB cannot store (a price beyond a double's range)."""


@dataclass(frozen=True, slots=True)
class TableFrame:
    """One table's share of a batch: what ``Sender.dataframe`` takes."""

    table: str
    frame: pd.DataFrame
    symbols: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.frame)


def _fail(column: str, detail: str) -> ColumnCheckError:
    return ColumnCheckError(f"{column}: {detail}")


def _int64(name: str, values: list[Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
    try:
        array = np.fromiter(values, dtype=np.int64, count=len(values))
    except OverflowError:
        raise _fail(name, "integer beyond 2**63 - 1") from None
    if len(array) and int(array.min()) < 0:
        raise _fail(name, f"negative value {int(array.min())}")
    return array


def _nullable_int64(name: str, values: list[Any]) -> pd.api.extensions.ExtensionArray:
    try:
        array = pa.array(values, type=pa.int64())
    except _ARROW_ERRORS as error:
        raise _fail(name, f"not an int64: {error}") from None
    smallest = pc.min(array).as_py()
    if smallest is not None and smallest < 0:
        raise _fail(name, f"negative value {smallest}")
    return pd.arrays.ArrowExtensionArray(array)


def _doubles(name: str, values: list[Any]) -> pa.Array:
    try:
        array = pa.array(values, type=pa.string()).cast(pa.float64())
    except _ARROW_ERRORS as error:
        raise _fail(name, f"not a decimal number: {error}") from None
    if pc.all(pc.is_finite(array)).as_py() is False:  # None when every value is null
        raise _fail(name, "not finite as a double (NaN, infinity, or beyond the double range)")
    return array


def _symbols(name: str, values: list[Any]) -> pd.Categorical:
    try:
        encoded = pa.array(values, type=pa.string()).dictionary_encode()
    except _ARROW_ERRORS as error:
        raise _fail(name, f"not text: {error}") from None
    return pd.Categorical.from_codes(encoded.indices.to_numpy(), categories=encoded.dictionary.to_pylist())


def _check_values(name: str, check: Callable[[str], object], categorical: pd.Categorical) -> None:
    for value in categorical.categories:
        try:
            check(value)
        except (TypeError, ValueError) as error:
            raise _fail(name, str(error)) from None


def _levels(name: str, sides: list[Any]) -> np.ndarray[Any, np.dtype[np.object_]]:
    out = np.empty(len(sides), dtype=object)
    for index, levels in enumerate(sides):
        try:
            array = np.array(
                [[float(price) for price, _ in levels], [float(size) for _, size in levels]], dtype=np.float64
            ).reshape(2, len(levels))
        except (TypeError, ValueError) as error:
            raise _fail(name, f"bad level: {error}") from None
        if not np.isfinite(array).all():
            raise _fail(name, "level not finite as a double")
        out[index] = array
    return out


def _ids(name: str, values: list[Any]) -> pd.api.extensions.ExtensionArray:
    if not all(values):
        raise _fail(name, "empty id")
    return pd.arrays.ArrowExtensionArray(pa.array(values, type=pa.string()))


def _positive_int32(name: str, values: list[Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
    array = _int64(name, values)
    if len(array) and not (int(array.min()) > 0 and int(array.max()) < _INT32_LIMIT):
        raise _fail(name, "not within [1, 2**31)")
    return array


def _decimals(name: str, values: list[Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
    array = _int64(name, values)
    if len(array) and not (int(array.min()) >= 0 and int(array.max()) <= MAX_DECIMALS):
        raise _fail(name, f"not within [0, {MAX_DECIMALS}]")
    return array


def _decimal_texts(name: str, values: list[Any]) -> pd.api.extensions.ExtensionArray:
    # Stored as the venue wrote them (trailing zeros are the precision); that each is a positive decimal within
    # the shared bounds is the entry rules' check (tickstrata.writer.entry_rules).
    return _ids(name, values)


# Kind → (column name for errors, values) → what the DataFrame holds. Non-null doubles and integers are plain
# numpy arrays; nullable ones are Arrow-backed (pandas' nullable dtypes), whose nulls the client leaves out.
_CONVERTERS: Final[Mapping[Kind, Callable[[str, list[Any]], Any]]] = {
    Kind.TIMESTAMP: lambda name, values: _int64(name, values).view("datetime64[ns]"),
    Kind.SYMBOL: _symbols,
    Kind.ID: _ids,
    Kind.DOUBLE: lambda name, values: _doubles(name, values).to_numpy(),
    Kind.DOUBLE_OR_NULL: lambda name, values: pd.arrays.ArrowExtensionArray(_doubles(name, values)),
    Kind.LONG: _int64,
    Kind.LONG_OR_NULL: _nullable_int64,
    Kind.POSITIVE_INT: _positive_int32,
    Kind.BOOLEAN: lambda _, values: np.array(values, dtype=np.bool_),
    Kind.LEVELS: _levels,
    Kind.DECIMALS: _decimals,
    Kind.DECIMAL_TEXT: _decimal_texts,
}


_getters: Final = {column.attribute: attrgetter(column.attribute) for spec in WRITTEN_TABLES for column in spec.columns}


def build_frame(spec: TableSpec, events: Sequence[WireEvent]) -> TableFrame:
    """One table's DataFrame from its events, in order; raise ``ColumnCheckError`` naming the first bad column."""
    columns: dict[str, Any] = {}
    for column in spec.columns:
        name = f"{spec.name}.{column.name}"
        try:
            values = list(map(_getters[column.attribute], events))
        except AttributeError:
            raise _fail(name, "an event of another type among this table's entries") from None
        columns[column.name] = _CONVERTERS[column.kind](name, values)
        check = _VALUE_CHECKS.get(column.name)
        if check is not None:
            _check_values(name, check, columns[column.name])
    return TableFrame(spec.name, pd.DataFrame(columns, copy=False), spec.symbol_columns)


def group_by_table(entries: Iterable[Sequence[WireEvent]]) -> dict[str, list[WireEvent]]:
    """Events per table, in entry order (later versions of a key stay later, so the upsert keeps the newest)."""
    groups: dict[str, list[WireEvent]] = {}
    for events in entries:
        kinds = set(map(type, events))
        if len(kinds) == 1:  # the rule: one stream, one type
            groups.setdefault(TABLE_OF_WIRE_TYPE[type(events[0])], []).extend(events)
        else:
            for event in events:
                groups.setdefault(TABLE_OF_WIRE_TYPE[type(event)], []).append(event)
    return groups


def rows_by_table(events: Sequence[WireEvent]) -> dict[str, int]:
    """How many of an entry's events go to each table."""
    kinds = set(map(type, events))
    if len(kinds) == 1:
        return {TABLE_OF_WIRE_TYPE[type(events[0])]: len(events)}
    counts: dict[str, int] = {}
    for event in events:
        table = TABLE_OF_WIRE_TYPE[type(event)]
        counts[table] = counts.get(table, 0) + 1
    return counts


def build_frames(entries: Iterable[Sequence[WireEvent]]) -> list[TableFrame]:
    """One ``TableFrame`` per table that has events, in a stable table order; raise ``ColumnCheckError``."""
    groups = group_by_table(entries)
    return [build_frame(spec, groups[spec.name]) for spec in WRITTEN_TABLES if spec.name in groups]


@dataclass(frozen=True, slots=True)
class Batch:
    frames: list[TableFrame]
    rejected: dict[int, str]
    """Index in the input → why that entry cannot be stored (the dead-letter reason)."""


def _kept(events: Sequence[WireEvent], keep: Callable[[WireEvent], bool] | None) -> Sequence[WireEvent]:
    # Only candle entries are judged (a stream holds one type): the filter costs nothing on the trade path.
    if keep is None or not events or type(events[0]) is not WireCandle:
        return events
    return [event for event in events if keep(event)]


def build_batch(
    entries: Sequence[tuple[EntryFields, Sequence[WireEvent]]], keep: Callable[[WireEvent], bool] | None = None
) -> Batch:
    """Frames for a batch of decoded entries; entries that fail a check are rejected alone, with their reason.

    The fast path checks the whole batch at once. When it fails, each entry is judged by the canonical decoder
    (``EntryDecodeError`` → rejected with its reason) and then checked alone in its canonical form (a value
    valid as an event but not storable, such as ``1E+400``, → rejected as ``unstorable_value``). ``keep`` leaves
    out candle events that must not be written (``writer.candle_guard``), in entry order, on either path.
    """
    try:
        return Batch(build_frames(_kept(events, keep) for _, events in entries), {})
    except ColumnCheckError:
        pass
    rejected: dict[int, str] = {}
    kept: list[Sequence[WireEvent]] = []
    for index, (fields, _) in enumerate(entries):
        try:
            events = _kept(canonical_wire_entry(fields), keep)
            build_frames([events])
        except EntryDecodeError as error:
            rejected[index] = str(error)
        except ColumnCheckError as error:
            rejected[index] = f"unstorable_value: {error}"
        else:
            kept.append(events)
    return Batch(build_frames(kept), rejected)
