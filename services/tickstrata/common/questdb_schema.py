"""The QuestDB schema: one ``TableSpec`` per table says its columns, types and dedup keys. Pure.

Three families, one owner: the market-data tables the writer fills from the streams (``TABLES``), the
instruments' precision it fills from the same kind of stream (``INSTRUMENTS_SPEC``), and the validator's ledger
(``QUALITY_TABLES``: bucket states, gaps and violations). The query service and the tests read
the same specs, so no table or column is re-spelled elsewhere.

Every table is created by code (never by a first ILP write, which would guess types and skip dedup): WAL,
``PARTITION BY DAY`` (YEAR for the small instruments table), and ``DEDUP UPSERT KEYS`` that include the
designated timestamp and the row's identity from the exchange (trade id; candle open time and interval), never a
stream id or receipt time, so a replayed or re-delivered entry overwrites itself instead of adding a row.

Types: exchange, symbol and other small enumerations are SYMBOL (dictionary-encoded, cheap to filter on);
prices, sizes and rates are DOUBLE, exact at the instrument's precision because ``float(Decimal)`` of a venue
string with at most 15 significant digits round-trips (the proof per instrument is the validator's job);
the designated timestamp is ``TIMESTAMP_NS`` so venue nanoseconds survive; other times are LONG nanoseconds
with ``_ns`` in the name. Optional values (a venue that does not send them) are NULL, never 0.

Book snapshots keep each side as one ``DOUBLE[][]`` of shape ``[2][depth]``: ``bids[1]`` the prices and
``bids[2]`` the sizes, best level first (QuestDB's own order-book layout, so its array functions apply to
``bids[1]`` directly). One row per snapshot keeps a snapshot atomic under dedup (a level-per-row layout would
need the level index in the key and could leave stale deeper levels behind when a replay is shallower).

Each column also names the event attribute it comes from and how it is converted (``Kind``): ``frames`` builds
the DataFrames from these specs, so schema and mapping cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final

from tickstrata.common.events import DataType

TRADES_TABLE: Final = "trades"
CANDLES_TABLE: Final = "candles"
QUOTES_TABLE: Final = "quotes"
BOOKS_TABLE: Final = "books"
FUNDING_TABLE: Final = "funding"
INSTRUMENTS_TABLE: Final = "instruments"

TIMESTAMP_COLUMN: Final = "ts"


class Kind(Enum):
    """How an event attribute becomes a column: (QuestDB type, what the attribute holds)."""

    TIMESTAMP = ("TIMESTAMP_NS", "int ns in [0, 2**63): the designated timestamp")
    SYMBOL = ("SYMBOL", "str or StrEnum member, sent as a categorical")
    ID = ("VARCHAR", "non-empty str")
    DOUBLE = ("DOUBLE", "a Decimal's text, finite as a double")
    DOUBLE_OR_NULL = ("DOUBLE", "the same, or None for NULL")
    LONG = ("LONG", "int in [0, 2**63)")
    LONG_OR_NULL = ("LONG", "the same, or None for NULL")
    POSITIVE_INT = ("INT", "int in [1, 2**31)")
    BOOLEAN = ("BOOLEAN", "bool")
    LEVELS = ("DOUBLE[][]", "book levels ((price, size), ...) as [[prices], [sizes]]")
    TEXT = ("VARCHAR", "str, possibly empty (free text: a cause, a detail)")
    DECIMALS = ("INT", "int in [0, MAX_DECIMALS]: how many decimals a venue writes")
    DECIMAL_TEXT = ("VARCHAR", "a positive Decimal's exact text, as the venue wrote it (tick and lot sizes)")

    @property
    def sql_type(self) -> str:
        return self.value[0]


class Scale(Enum):
    """Which of the instrument's precisions a DOUBLE column sits on (``instruments``): the warm and cold tiers store
    such a column as an exact integer ``value * 10**decimals``. A column without one (rates, mark and index prices,
    quote volumes: values the venue computes, written with no instrument precision) keeps the hot tier's double."""

    PRICE = "price_decimals"
    SIZE = "size_decimals"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: Kind
    attribute: str
    """The event attribute the values come from."""
    scale: Scale | None = None
    """For prices and sizes (and book levels: prices and sizes): the precision the cooler tiers scale by."""


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    data_type: DataType | None
    """The streams (``md:<exchange>:<data_type>``) whose events land in this table; None for the ledger's tables."""
    columns: tuple[Column, ...]
    """In table order; the first is the designated timestamp ``ts``."""
    dedup_keys: tuple[str, ...]
    partition_by: str = "DAY"
    """QuestDB's partition unit: DAY for market data (the tierer moves whole days); a small table takes YEAR."""

    @property
    def instrument_time_order(self) -> tuple[str, ...]:
        """Instrument, time, then the rest of the dedup key: how the cooler tiers sort rows (and compare them)."""
        rest = tuple(key for key in self.dedup_keys if key not in ("ts", "exchange", "symbol"))
        return ("exchange", "symbol", "ts", *rest)

    @property
    def symbol_columns(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns if column.kind is Kind.SYMBOL)

    def create_sql(self) -> str:
        columns = ", ".join(f"{column.name} {column.kind.sql_type}" for column in self.columns)
        keys = ", ".join(self.dedup_keys)
        return (
            f"CREATE TABLE IF NOT EXISTS {self.name} ({columns}) TIMESTAMP({TIMESTAMP_COLUMN}) "
            f"PARTITION BY {self.partition_by} WAL "
            f"DEDUP UPSERT KEYS({keys})"
        )


def _ts(attribute: str) -> Column:
    return Column(TIMESTAMP_COLUMN, Kind.TIMESTAMP, attribute)


def _col(name: str, kind: Kind, scale: Scale | None = None) -> Column:
    return Column(name, kind, name, scale)


_EXCHANGE: Final = _col("exchange", Kind.SYMBOL)
_SYMBOL: Final = _col("symbol", Kind.SYMBOL)
_TS_RECV_NS: Final = _col("ts_recv_ns", Kind.LONG)

TABLES: Final = (
    TableSpec(
        TRADES_TABLE,
        DataType.TRADES,
        (
            _ts("ts_event_ns"),
            _EXCHANGE,
            _SYMBOL,
            _col("trade_id", Kind.ID),
            _col("price", Kind.DOUBLE, Scale.PRICE),
            _col("size", Kind.DOUBLE, Scale.SIZE),
            _col("side", Kind.SYMBOL),
            _TS_RECV_NS,
            _col("backfilled", Kind.BOOLEAN),
        ),
        ("ts", "exchange", "symbol", "trade_id"),
    ),
    TableSpec(
        CANDLES_TABLE,
        DataType.CANDLES,
        (
            _ts("open_time_ns"),
            _EXCHANGE,
            _SYMBOL,
            _col("interval_secs", Kind.POSITIVE_INT),
            _col("open", Kind.DOUBLE, Scale.PRICE),
            _col("high", Kind.DOUBLE, Scale.PRICE),
            _col("low", Kind.DOUBLE, Scale.PRICE),
            _col("close", Kind.DOUBLE, Scale.PRICE),
            _col("volume", Kind.DOUBLE, Scale.SIZE),
            _col("quote_volume", Kind.DOUBLE_OR_NULL),
            _col("trade_count", Kind.LONG_OR_NULL),
            _col("closed", Kind.BOOLEAN),
            _col("source", Kind.SYMBOL),
            _col("ts_event_ns", Kind.LONG),
            _TS_RECV_NS,
        ),
        # Not the source: a built candle and the exchange's own candle for the same minute are one row, the
        # later write wins (both describe the same trades; see docs/writer.md).
        ("ts", "exchange", "symbol", "interval_secs"),
    ),
    TableSpec(
        QUOTES_TABLE,
        DataType.QUOTES,
        (
            _ts("ts_event_ns"),
            _EXCHANGE,
            _SYMBOL,
            _col("bid_price", Kind.DOUBLE, Scale.PRICE),
            _col("bid_size", Kind.DOUBLE, Scale.SIZE),
            _col("ask_price", Kind.DOUBLE, Scale.PRICE),
            _col("ask_size", Kind.DOUBLE, Scale.SIZE),
            _TS_RECV_NS,
        ),
        ("ts", "exchange", "symbol"),
    ),
    TableSpec(
        BOOKS_TABLE,
        DataType.BOOKS,
        (
            _ts("ts_event_ns"),
            _EXCHANGE,
            _SYMBOL,
            _col("bids", Kind.LEVELS),
            _col("asks", Kind.LEVELS),
            _col("sequence", Kind.LONG_OR_NULL),  # the venue update id the book reflects; NULL for Kraken
            _TS_RECV_NS,
        ),
        ("ts", "exchange", "symbol"),
    ),
    TableSpec(
        FUNDING_TABLE,
        DataType.FUNDING,
        (
            _ts("ts_event_ns"),
            _EXCHANGE,
            _SYMBOL,
            _col("rate", Kind.DOUBLE),
            _col("mark_price", Kind.DOUBLE_OR_NULL),
            _col("index_price", Kind.DOUBLE_OR_NULL),
            _col("next_funding_time_ns", Kind.LONG),
            _TS_RECV_NS,
        ),
        ("ts", "exchange", "symbol"),
    ),
)

TABLES_BY_NAME: Final = {spec.name: spec for spec in TABLES}

# ---- reference data --------------------------------------------------------------------------------------
# Each instrument's precision, one row per instrument each time a collector loads the venue's list (valid from
# ``ts``; readers take the newest row at or before the time they format). Written by the writer from
# ``md:<exchange>:instruments`` like market data, but kept apart from ``TABLES``: the tierer never moves or drops
# it (a few rows per instrument and collector start), and the warm and cold tiers read it to scale prices exactly.
INSTRUMENTS_SPEC: Final = TableSpec(
    INSTRUMENTS_TABLE,
    DataType.INSTRUMENTS,
    (
        _ts("ts_event_ns"),
        _EXCHANGE,
        _SYMBOL,
        _col("price_decimals", Kind.DECIMALS),
        _col("size_decimals", Kind.DECIMALS),
        _col("tick_size", Kind.DECIMAL_TEXT),
        _col("lot_size", Kind.DECIMAL_TEXT),
        _TS_RECV_NS,
    ),
    ("ts", "exchange", "symbol"),
    partition_by="YEAR",
)

WRITTEN_TABLES: Final = (*TABLES, INSTRUMENTS_SPEC)
"""Every table the writer fills from the streams: the market data and the instruments."""
TABLE_OF_DATA_TYPE: Final = {spec.data_type: spec.name for spec in WRITTEN_TABLES if spec.data_type is not None}

# Data types the writer consumes: every stream data type has a table.
STORED_DATA_TYPES: Final = frozenset(spec.data_type for spec in WRITTEN_TABLES if spec.data_type is not None)

# ---- the validator's ledger --------------------------------------------------------------------------------
# Provenance cannot be recomputed from the market-data tables (dedup is last-write-wins, a REST candle replaces a
# streamed one), so the validator records what it observed when it observed it. Every row is keyed so that a
# restarted validator writing the same observation again overwrites it instead of adding a row.

QUALITY_BUCKETS_TABLE: Final = "quality_buckets"
QUALITY_GAPS_TABLE: Final = "quality_gaps"
QUALITY_VIOLATIONS_TABLE: Final = "quality_violations"

QUALITY_TABLES: Final = (
    TableSpec(
        QUALITY_BUCKETS_TABLE,
        None,
        (
            _ts("minute_start_ns"),
            _EXCHANGE,
            _SYMBOL,
            _col("state", Kind.SYMBOL),  # tickstrata.common.completeness.BucketState
            _col("live_rows", Kind.LONG),  # trades and candles that arrived through the live stream
            _col("backfill_rows", Kind.LONG),  # trades and candles a backfill published
            _col("trades_finding", Kind.SYMBOL),  # what the venue's REST history said of the minute's trades
            _col("candles_finding", Kind.SYMBOL),  # ... and of its candle; "none" until a backfill asked
            _col("open", Kind.DOUBLE_OR_NULL),  # the candle last observed: the old values of a later revision
            _col("high", Kind.DOUBLE_OR_NULL),
            _col("low", Kind.DOUBLE_OR_NULL),
            _col("close", Kind.DOUBLE_OR_NULL),
            _col("volume", Kind.DOUBLE_OR_NULL),
            _col("candle_source", Kind.SYMBOL),
            _col("suspect", Kind.SYMBOL),  # data types a gap touched ("trades,candles"), or "none"
            _col("given_up", Kind.BOOLEAN),  # the venue cannot supply the minute: it stays missing
            _col("ts_recorded_ns", Kind.LONG),
        ),
        ("ts", "exchange", "symbol"),
    ),
    TableSpec(
        QUALITY_GAPS_TABLE,
        None,
        (
            _ts("start_ns"),
            _col("gap_id", Kind.ID),
            _EXCHANGE,
            _SYMBOL,  # NULL for a gap of the whole feed
            _col("data_type", Kind.SYMBOL),
            _col("kind", Kind.SYMBOL),
            _col("end_ns", Kind.LONG),  # exclusive: the window is [ts, end_ns)
            _col("cause", Kind.TEXT),
            _col("state", Kind.SYMBOL),
            _col("backfill_job_id", Kind.TEXT),
            _col("ts_detected_ns", Kind.LONG),
            _col("ts_closed_ns", Kind.LONG),
        ),
        ("ts", "gap_id"),
    ),
    TableSpec(
        QUALITY_VIOLATIONS_TABLE,
        None,
        (
            _ts("start_ns"),
            _col("violation_id", Kind.ID),
            _EXCHANGE,
            _SYMBOL,
            _col("kind", Kind.SYMBOL),
            _col("end_ns", Kind.LONG),  # exclusive
            _col("detail", Kind.TEXT),
            _col("ts_detected_ns", Kind.LONG),
        ),
        ("ts", "violation_id"),
    ),
)
QUALITY_TABLES_BY_NAME: Final = {spec.name: spec for spec in QUALITY_TABLES}


# ---- the tier catalog ----------------------------------------------------------------------------------------
# Where each instrument's day of each market-data table lives once it left the hot tier, and the proof it arrived
# whole: the rows, a content digest of exactly what was read from the source, and the sum of the table's volume
# column. The tierer writes a row after the copy is verified in the destination and before it drops the source;
# the query router reads it to split a range across tiers. Keyed by (day, table, exchange, symbol): a re-run that
# verifies the same copy writes the same row again.

TIER_CATALOG_TABLE: Final = "tier_catalog"


class StorageTier(StrEnum):
    """Where a catalogued day lives (the ``tier`` column)."""

    WARM = "warm"
    COLD = "cold"


TIER_CATALOG_SPEC: Final = TableSpec(
    TIER_CATALOG_TABLE,
    None,
    (
        _ts("day_ns"),  # the UTC day's first nanosecond
        _col("data_table", Kind.SYMBOL),  # trades, candles, quotes, books, funding
        _EXCHANGE,
        _SYMBOL,
        _col("tier", Kind.SYMBOL),  # StorageTier
        _col("rows", Kind.LONG),
        _col("digest", Kind.ID),  # sha256 of the rows' canonical content (tickstrata.tierer.digest)
        _col("volume_sum", Kind.DOUBLE_OR_NULL),  # sum of trades.size / candles.volume; NULL for other tables
        _col("price_scale", Kind.LONG_OR_NULL),  # the scales the rows were stored with (NULL: nothing scaled)
        _col("size_scale", Kind.LONG_OR_NULL),
        _col("scales_inferred", Kind.BOOLEAN),  # no instrument spec was known: the smallest exact scale was used
        _col("ts_recorded_ns", Kind.LONG),
    ),
    ("ts", "data_table", "exchange", "symbol"),
    partition_by="YEAR",
)


def create_table_statements() -> list[str]:
    """The DDL the writer runs at start; idempotent (``IF NOT EXISTS``)."""
    return [spec.create_sql() for spec in WRITTEN_TABLES]


def create_quality_table_statements() -> list[str]:
    """The DDL the validator runs at start; idempotent (``IF NOT EXISTS``)."""
    return [spec.create_sql() for spec in QUALITY_TABLES]
