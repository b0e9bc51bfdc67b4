"""The hot-tier QuestDB schema, and events turned into per-table columns for the ILP client. Pure: no I/O here.

Every table is created by code (never by a first ILP write, which would guess types and skip dedup): WAL,
``PARTITION BY DAY``, and ``DEDUP UPSERT KEYS`` that include the designated timestamp and the row's identity
from the exchange (trade id; candle open time and interval), never a stream id or receipt time, so a replayed
or re-delivered entry overwrites itself instead of adding a row.

Types: exchange, symbol and other small enumerations are SYMBOL (dictionary-encoded, cheap to filter on);
prices, sizes and rates are DOUBLE, exact at the instrument's precision because ``float(Decimal)`` of a venue
string with at most 15 significant digits round-trips (the proof per instrument is the validator's job);
the designated timestamp is ``TIMESTAMP_NS`` so venue nanoseconds survive; other times are LONG nanoseconds
with ``_ns`` in the name.

Book snapshots are not stored yet: their streams are left alone (no writer group), so nothing is lost and a
later writer reads them from the start of what the collector kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, TypeAlias

from tickstrata.common.events import BookSnapshot, Candle, DataType, Funding, MarketDataEvent, Quote, Trade

ColumnValue: TypeAlias = bool | int | float | str | None

TRADES_TABLE: Final = "trades"
CANDLES_TABLE: Final = "candles"
QUOTES_TABLE: Final = "quotes"
FUNDING_TABLE: Final = "funding"

# Data types the writer consumes; books are not stored yet (see the module docstring).
STORED_DATA_TYPES: Final = frozenset({DataType.TRADES, DataType.CANDLES, DataType.QUOTES, DataType.FUNDING})


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    columns: tuple[tuple[str, str], ...]
    """(name, QuestDB type) in table order; the designated timestamp is ``ts``."""
    dedup_keys: tuple[str, ...]

    def create_sql(self) -> str:
        columns = ", ".join(f"{name} {sql_type}" for name, sql_type in self.columns)
        keys = ", ".join(self.dedup_keys)
        return (
            f"CREATE TABLE IF NOT EXISTS {self.name} ({columns}) TIMESTAMP(ts) PARTITION BY DAY WAL "
            f"DEDUP UPSERT KEYS({keys})"
        )


TABLES: Final = (
    TableSpec(
        TRADES_TABLE,
        (
            ("ts", "TIMESTAMP_NS"),
            ("exchange", "SYMBOL"),
            ("symbol", "SYMBOL"),
            ("trade_id", "VARCHAR"),
            ("price", "DOUBLE"),
            ("size", "DOUBLE"),
            ("side", "SYMBOL"),
            ("ts_recv_ns", "LONG"),
            ("backfilled", "BOOLEAN"),
        ),
        ("ts", "exchange", "symbol", "trade_id"),
    ),
    TableSpec(
        CANDLES_TABLE,
        (
            ("ts", "TIMESTAMP_NS"),  # open time
            ("exchange", "SYMBOL"),
            ("symbol", "SYMBOL"),
            ("interval_secs", "INT"),
            ("open", "DOUBLE"),
            ("high", "DOUBLE"),
            ("low", "DOUBLE"),
            ("close", "DOUBLE"),
            ("volume", "DOUBLE"),
            ("quote_volume", "DOUBLE"),
            ("trade_count", "LONG"),
            ("closed", "BOOLEAN"),
            ("source", "SYMBOL"),
            ("ts_event_ns", "LONG"),
            ("ts_recv_ns", "LONG"),
        ),
        ("ts", "exchange", "symbol", "interval_secs"),
    ),
    TableSpec(
        QUOTES_TABLE,
        (
            ("ts", "TIMESTAMP_NS"),
            ("exchange", "SYMBOL"),
            ("symbol", "SYMBOL"),
            ("bid_price", "DOUBLE"),
            ("bid_size", "DOUBLE"),
            ("ask_price", "DOUBLE"),
            ("ask_size", "DOUBLE"),
            ("ts_recv_ns", "LONG"),
        ),
        ("ts", "exchange", "symbol"),
    ),
    TableSpec(
        FUNDING_TABLE,
        (
            ("ts", "TIMESTAMP_NS"),
            ("exchange", "SYMBOL"),
            ("symbol", "SYMBOL"),
            ("rate", "DOUBLE"),
            ("mark_price", "DOUBLE"),
            ("index_price", "DOUBLE"),
            ("next_funding_time_ns", "LONG"),
            ("ts_recv_ns", "LONG"),
        ),
        ("ts", "exchange", "symbol"),
    ),
)


def create_table_statements() -> list[str]:
    """The DDL the writer runs at start; idempotent (``IF NOT EXISTS``)."""
    return [spec.create_sql() for spec in TABLES]


@dataclass(slots=True)
class TableColumns:
    """One table's share of a batch, column by column (the shape a dataframe path would take)."""

    table: str
    symbol_names: tuple[str, ...]
    column_names: tuple[str, ...]
    symbols: list[list[str]] = field(default_factory=list)
    """One list per symbol name, aligned with ``ts_ns``."""
    columns: list[list[ColumnValue]] = field(default_factory=list)
    ts_ns: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.symbols = [[] for _ in self.symbol_names]
        self.columns = [[] for _ in self.column_names]

    def __len__(self) -> int:
        return len(self.ts_ns)

    def append(self, ts_ns: int, symbols: Sequence[str], columns: Sequence[ColumnValue]) -> None:
        self.ts_ns.append(ts_ns)
        for values, value in zip(self.symbols, symbols, strict=True):
            values.append(value)
        for col_values, col_value in zip(self.columns, columns, strict=True):
            col_values.append(col_value)

    def rows(self) -> Iterator[tuple[dict[str, str], dict[str, ColumnValue], int]]:
        """Yield ``(symbols, columns, ts_ns)`` per row for ``Sender.row``; ``None`` columns are left NULL."""
        for index, ts_ns in enumerate(self.ts_ns):
            symbols = {name: values[index] for name, values in zip(self.symbol_names, self.symbols, strict=True)}
            columns = {
                name: values[index]
                for name, values in zip(self.column_names, self.columns, strict=True)
                if values[index] is not None
            }
            yield symbols, columns, ts_ns


def _double(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _new_table(table: str) -> TableColumns:
    if table == TRADES_TABLE:
        return TableColumns(
            table, ("exchange", "symbol", "side"), ("trade_id", "price", "size", "ts_recv_ns", "backfilled")
        )
    if table == CANDLES_TABLE:
        return TableColumns(
            table,
            ("exchange", "symbol", "source"),
            (
                "interval_secs", "open", "high", "low", "close", "volume", "quote_volume", "trade_count",
                "closed", "ts_event_ns", "ts_recv_ns",
            ),
        )  # fmt: skip
    if table == QUOTES_TABLE:
        return TableColumns(
            table, ("exchange", "symbol"), ("bid_price", "bid_size", "ask_price", "ask_size", "ts_recv_ns")
        )
    return TableColumns(
        table, ("exchange", "symbol"), ("rate", "mark_price", "index_price", "next_funding_time_ns", "ts_recv_ns")
    )


def _add(event: MarketDataEvent, tables: dict[str, TableColumns]) -> None:
    if isinstance(event, Trade):
        tables.setdefault(TRADES_TABLE, _new_table(TRADES_TABLE)).append(
            event.ts_event_ns,
            (event.exchange, event.symbol, event.side.value),
            (event.trade_id, float(event.price), float(event.size), event.ts_recv_ns, event.backfilled),
        )
    elif isinstance(event, Candle):
        tables.setdefault(CANDLES_TABLE, _new_table(CANDLES_TABLE)).append(
            event.open_time_ns,
            (event.exchange, event.symbol, event.source.value),
            (
                event.interval_secs, float(event.open), float(event.high), float(event.low), float(event.close),
                float(event.volume), _double(event.quote_volume), event.trade_count, event.closed,
                event.ts_event_ns, event.ts_recv_ns,
            ),
        )  # fmt: skip
    elif isinstance(event, Quote):
        tables.setdefault(QUOTES_TABLE, _new_table(QUOTES_TABLE)).append(
            event.ts_event_ns,
            (event.exchange, event.symbol),
            (
                float(event.bid_price), float(event.bid_size), float(event.ask_price), float(event.ask_size),
                event.ts_recv_ns,
            ),
        )  # fmt: skip
    elif isinstance(event, Funding):
        tables.setdefault(FUNDING_TABLE, _new_table(FUNDING_TABLE)).append(
            event.ts_event_ns,
            (event.exchange, event.symbol),
            (
                float(event.rate), _double(event.mark_price), _double(event.index_price),
                event.next_funding_time_ns, event.ts_recv_ns,
            ),
        )  # fmt: skip
    elif isinstance(event, BookSnapshot):
        pass  # not stored yet (see the module docstring)


def to_table_columns(events: Iterable[MarketDataEvent]) -> list[TableColumns]:
    """Split a batch of events into one ``TableColumns`` per table, in a stable table order.

    Later events of the same key come later in their table, so the upsert keeps the newest (an open candle
    superseded by its closed version in the same batch lands closed).
    """
    tables: dict[str, TableColumns] = {}
    for event in events:
        _add(event, tables)
    return [tables[spec.name] for spec in TABLES if spec.name in tables]
