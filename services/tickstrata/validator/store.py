"""The validator's QuestDB edge: its ledger tables created at start, rows written over ILP, state read back.

Rows are written with one ILP/HTTP transaction per table, before the stream entries they came from are
acknowledged; every table deduplicates by its identity (`tickstrata.common.questdb_schema.QUALITY_TABLES`), so a
restart that writes the same observation again overwrites it. Reads go over REST `/exec` (small result sets: the
in-memory horizon at start-up, one page of violations, and for QualityService the buckets older than the
in-memory horizon, counted by QuestDB: `history.py` builds those statements and decodes their rows).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import aiohttp
from questdb import Sender, TimestampNanos

from tickstrata.common.completeness import BucketState
from tickstrata.common.events import CandleSource, DataType
from tickstrata.common.questdb_rest import QuestDBError, QuestDBRest, ilp_conf
from tickstrata.common.questdb_rest import sql_text as _sql_text
from tickstrata.common.questdb_schema import (
    QUALITY_BUCKETS_TABLE,
    QUALITY_GAPS_TABLE,
    QUALITY_VIOLATIONS_TABLE,
    create_quality_table_statements,
)
from tickstrata.validator.book import BucketRow, InstrumentKey
from tickstrata.validator.gaps import GapRecord, GapState
from tickstrata.validator.history import (
    HistoryCounts,
    HistoryUnavailableError,
    HistoryWindow,
    Span,
    counts_sql,
    decode_counts,
    decode_instruments,
    decode_states,
    instruments_sql,
    states_sql,
)
from tickstrata.validator.ledger import PROVEN_TYPES, BucketRecord, CandleValues, Finding
from tickstrata.validator.rules import Violation

logger = logging.getLogger(__name__)

_NO_SOURCE: Final = "none"
_MAX_DETAIL: Final = 300


def _finding_column(data_type: DataType) -> str:
    return f"{data_type}_finding"


@dataclass(frozen=True, slots=True)
class StoredBucket:
    exchange: str
    symbol: str
    minute_start_ns: int
    state: BucketState
    record: BucketRecord


class QualityStore:
    def __init__(self, http_url: str) -> None:
        self.rest = QuestDBRest(http_url)
        self._conf = ilp_conf(http_url)
        self._sender: Any = None

    async def create_tables(self) -> None:
        await self.rest.create_tables(create_quality_table_statements())

    # ---- writing --------------------------------------------------------------------------------------------

    async def write(
        self, buckets: Sequence[BucketRow], gaps: Sequence[GapRecord], violations: Sequence[Violation], now_ns: int
    ) -> None:
        """Write every row, one transaction per table; raise on any failure (the caller acknowledges nothing)."""
        if buckets or gaps or violations:
            await asyncio.to_thread(self._write_sync, buckets, gaps, violations, now_ns)

    def _write_sync(
        self, buckets: Sequence[BucketRow], gaps: Sequence[GapRecord], violations: Sequence[Violation], now_ns: int
    ) -> None:
        try:
            if self._sender is None:
                sender: Any = Sender.from_conf(self._conf)
                sender.establish()
                self._sender = sender
            if buckets:
                for row in buckets:
                    self._bucket(row, now_ns)
                self._sender.flush(transactional=True)
            if gaps:
                for gap in gaps:
                    self._gap(gap)
                self._sender.flush(transactional=True)
            if violations:
                for violation in violations:
                    self._violation(violation, now_ns)
                self._sender.flush(transactional=True)
        except Exception:
            self.close_sender()
            raise

    def _bucket(self, row: BucketRow, now_ns: int) -> None:
        record = row.record
        candle = record.candle
        columns: dict[str, Any] = {
            "live_rows": record.live_rows,
            "given_up": record.given_up,
            "backfill_rows": record.backfilled_trades + record.backfilled_candles,
            "ts_recorded_ns": now_ns,
        }
        if candle is not None:
            columns.update(
                open=float(candle.open),
                high=float(candle.high),
                low=float(candle.low),
                close=float(candle.close),
                volume=float(candle.volume),
            )
        symbols = {
            "exchange": row.exchange,
            "symbol": row.symbol,
            "state": str(row.state),
            "candle_source": str(candle.source) if candle is not None else _NO_SOURCE,
            "suspect": ",".join(sorted(str(t) for t in record.suspect)) or "none",
        }
        for data_type in PROVEN_TYPES:
            symbols[_finding_column(data_type)] = str(record.finding(data_type))
        self._sender.row(
            QUALITY_BUCKETS_TABLE, symbols=symbols, columns=columns, at=TimestampNanos(row.minute_start_ns)
        )

    def _gap(self, gap: GapRecord) -> None:
        symbols = {"exchange": gap.exchange, "data_type": str(gap.data_type), "kind": gap.kind, "state": str(gap.state)}
        if gap.symbol is not None:
            symbols["symbol"] = gap.symbol
        self._sender.row(
            QUALITY_GAPS_TABLE,
            symbols=symbols,
            columns={
                "gap_id": gap.gap_id,
                "end_ns": gap.end_ns,
                "cause": gap.cause,
                "backfill_job_id": gap.backfill_job_id,
                "ts_detected_ns": gap.ts_detected_ns,
                "ts_closed_ns": gap.ts_closed_ns,
            },
            at=TimestampNanos(gap.start_ns),
        )

    def _violation(self, violation: Violation, now_ns: int) -> None:
        self._sender.row(
            QUALITY_VIOLATIONS_TABLE,
            symbols={"exchange": violation.exchange, "symbol": violation.symbol, "kind": str(violation.kind)},
            columns={
                "violation_id": violation_id(violation),
                "end_ns": violation.end_ns,
                "detail": violation.detail,
                "ts_detected_ns": now_ns,
            },
            at=TimestampNanos(violation.start_ns),
        )

    def close_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                sender.close(flush=False)
            except Exception:  # closing a broken connection must not mask the original error
                logger.debug("closing the ILP sender failed", exc_info=True)

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sender)
        await self.rest.close()

    # ---- reading --------------------------------------------------------------------------------------------

    async def load_buckets(self, since_ns: int) -> list[StoredBucket]:
        """Every bucket row from ``since_ns`` on (the in-memory horizon a restarted validator resumes)."""
        sql = (
            "SELECT cast(ts AS LONG), exchange, symbol, state, live_rows, backfill_rows, trades_finding, "  # noqa: S608 - a constant name and an int
            "candles_finding, open, high, low, close, volume, candle_source, suspect, given_up "
            f"FROM {QUALITY_BUCKETS_TABLE} WHERE ts >= {int(since_ns)}::timestamp_ns ORDER BY ts"
        )
        payload = await self.rest.exec_sql(sql)
        return [_stored_bucket(row) for row in payload.get("dataset", [])]

    async def load_open_gaps(self) -> list[GapRecord]:
        states = ", ".join(_sql_text(str(s)) for s in (GapState.OPEN, GapState.BACKFILLING))
        sql = (
            "SELECT cast(ts AS LONG), gap_id, exchange, symbol, data_type, kind, end_ns, cause, state, "  # noqa: S608 - constants
            f"backfill_job_id, ts_detected_ns, ts_closed_ns FROM {QUALITY_GAPS_TABLE} WHERE state IN ({states})"
        )
        payload = await self.rest.exec_sql(sql)
        return [_gap_record(row) for row in payload.get("dataset", [])]

    async def list_violations(
        self, *, exchange: str, symbol: str, kinds: Sequence[str], start_ns: int, end_ns: int, after: tuple[int, str]
    ) -> list[tuple[int, str, str, str, str, int, str, int]]:
        """Violations in ``[start_ns, end_ns)`` after the page cursor (start, id), ordered by (start, id)."""
        where = [f"ts >= {start_ns}::timestamp_ns", f"ts < {end_ns}::timestamp_ns"]
        if exchange:
            where.append(f"exchange = {_sql_text(exchange)}")
        if symbol:
            where.append(f"symbol = {_sql_text(symbol)}")
        if kinds:
            where.append(f"kind IN ({', '.join(_sql_text(k) for k in kinds)})")
        cursor_ts, cursor_id = after
        if cursor_ts:
            where.append(
                f"(ts > {cursor_ts}::timestamp_ns OR (ts = {cursor_ts}::timestamp_ns "
                f"AND violation_id > {_sql_text(cursor_id)}))"
            )
        sql = (
            "SELECT cast(ts AS LONG), violation_id, exchange, symbol, kind, end_ns, detail, ts_detected_ns "  # noqa: S608 - ints; text validated and quoted
            f"FROM {QUALITY_VIOLATIONS_TABLE} WHERE {' AND '.join(where)} ORDER BY ts, violation_id LIMIT 1001"
        )
        payload = await self.rest.exec_sql(sql)
        return [tuple(row) for row in payload.get("dataset", [])]

    # ---- the ledger's history (QualityService, windows older than the in-memory horizon) ---------------------

    async def history_counts(self, window: HistoryWindow) -> dict[InstrumentKey, HistoryCounts]:
        """Buckets per instrument and state in the window's QuestDB part (``GROUP BY`` in QuestDB)."""
        return decode_counts(await self._history(counts_sql(window)))

    async def history_instruments(self, window: HistoryWindow) -> list[InstrumentKey]:
        """The instruments with buckets in the window's QuestDB part."""
        return decode_instruments(await self._history(instruments_sql(window)))

    async def history_states(self, spans: Sequence[Span]) -> dict[InstrumentKey, dict[int, BucketState]]:
        """Each bucket's state in the spans, per instrument and minute."""
        return decode_states(await self._history(states_sql(spans)))

    async def _history(self, sql: str) -> list[list[Any]]:
        """Run one history read; QuestDB down, too slow or refusing it raises ``HistoryUnavailableError``."""
        try:
            payload = await self.rest.exec_sql(sql)
        except (QuestDBError, aiohttp.ClientError, OSError, TimeoutError) as error:
            logger.warning("reading the ledger history failed", extra={"error": f"{type(error).__name__}: {error}"})
            detail = str(error) or type(error).__name__
            if len(detail) > _MAX_DETAIL:
                detail = f"{detail[: _MAX_DETAIL // 2]} … {detail[-_MAX_DETAIL // 2 :]}"
            raise HistoryUnavailableError(
                "buckets older than the validator's in-memory horizon are read from QuestDB, which cannot answer "
                f"now ({type(error).__name__}: {detail}); retry later or ask for a window inside the horizon"
            ) from error
        dataset: list[list[Any]] = payload.get("dataset", [])
        return dataset


def violation_id(violation: Violation) -> str:
    """Content-derived: the same violation detected again (a restart re-reading entries) is one row."""
    text = "\x1f".join(
        (violation.exchange, violation.symbol, str(violation.kind), str(violation.start_ns), violation.detail)
    )
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _stored_bucket(row: list[Any]) -> StoredBucket:
    ts, exchange, symbol, state, live_rows, backfill_rows, trades_f, candles_f, *ohlcv, source, suspect, given_up = row
    record = BucketRecord(live_rows=int(live_rows or 0))
    # The split of backfilled rows by type is not kept; either count proves arrival for the types with data.
    record.backfilled_trades = record.backfilled_candles = int(backfill_rows or 0)
    record.findings = {DataType.TRADES: Finding(trades_f or "none"), DataType.CANDLES: Finding(candles_f or "none")}
    record.suspect = {DataType(t) for t in (suspect or "none").split(",") if t != "none"}
    record.given_up = bool(given_up)
    if ohlcv[0] is not None and source not in (None, _NO_SOURCE):
        # Doubles printed back (`repr`) are the venue's decimal text (at most 15 significant digits round-trip).
        o, h, lo, c, v = (Decimal(repr(value)) for value in ohlcv)
        record.candle = CandleValues(o, h, lo, c, v, CandleSource(source))
    return StoredBucket(exchange, symbol, int(ts), BucketState(state), record)


def _gap_record(row: list[Any]) -> GapRecord:
    ts, gap_id_, exchange, symbol, data_type, kind, end_ns, cause, state, job, detected, closed = row
    return GapRecord(
        gap_id=gap_id_,
        exchange=exchange,
        symbol=symbol,
        data_type=DataType(data_type),
        kind=kind,
        start_ns=int(ts),
        end_ns=int(end_ns),
        cause=cause or "",
        state=GapState(state),
        backfill_job_id=job or "",
        ts_detected_ns=int(detected or 0),
        ts_closed_ns=int(closed or 0),
    )
