"""The validator's batch handler: trades, candles and gap events → the ledger, the rules → QuestDB, then the ack.

Two consumers of the consumer-group engine (`tickstrata.common.consumer_group`) share one group, `validator`:
one on the market-data streams (trades and candles only), one on `qa:gaps`. Each batch is observed into the
`LedgerBook`, checked by the rules, and what changed (bucket rows, gaps, violations) is written to QuestDB before
the entries are acknowledged, so a crash re-delivers them (every row is keyed by identity: the replay
overwrites). An entry the validator cannot read is acknowledged and counted: dead-lettering poison input is
the writer's job, and the validator must not hold the stream back for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from opentelemetry import metrics

from tickstrata.common.backoff import Backoff
from tickstrata.common.clock import market_time_ns
from tickstrata.common.consumer_group import AbandonBatch, BatchOutcome, ConsumerGroup, Delivered, GroupConfig
from tickstrata.common.events import Candle, DataType, Gap, GapKind, Trade
from tickstrata.common.streams import (
    GAP_STREAM,
    VALIDATOR_GROUP,
    EntryDecodeError,
    UnsupportedSchemaError,
    decode_entry,
    parse_market_data_stream,
)
from tickstrata.validator.book import LedgerBook
from tickstrata.validator.rules import Violation, ViolationKind
from tickstrata.validator.rules_candles import candle_window, check_candle
from tickstrata.validator.rules_series import SeriesChecker, reveals_missing_ids
from tickstrata.validator.store import QualityStore
from tickstrata.validator.watch import Watch

logger = logging.getLogger(__name__)

OBSERVED_TYPES = frozenset({DataType.TRADES, DataType.CANDLES})


def is_observed_stream(name: str) -> bool:
    try:
        return parse_market_data_stream(name).data_type in OBSERVED_TYPES
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ValidatorConsumerConfig:
    consumer_name: str
    batch_entries: int = 1000
    block_ms: int = 1000
    janitor_interval_secs: float = 10.0
    sequential_trade_id_exchanges: frozenset[str] = frozenset()
    """Exchanges whose trade ids are consecutive integers per symbol (checked for continuity)."""


class ValidatorConsumer:
    def __init__(
        self,
        redis: aioredis.Redis,
        book: LedgerBook,
        store: QualityStore,
        config: ValidatorConsumerConfig,
        *,
        watch: Watch | None = None,
        meter: metrics.Meter | None = None,
        clock_ns: Callable[[], int] = market_time_ns,
    ) -> None:
        self._book = book
        self._store = store
        self._config = config
        self._clock_ns = clock_ns
        self._series: dict[tuple[str, str], SeriesChecker] = {}
        self.watch = watch or Watch()
        self.unreadable = 0
        self.violations_found = 0
        self._flush_lock = asyncio.Lock()
        group = GroupConfig(
            group=VALIDATOR_GROUP,
            consumer_name=config.consumer_name,
            batch_entries=config.batch_entries,
            block_ms=config.block_ms,
            janitor_interval_secs=config.janitor_interval_secs,
        )
        self.market = ConsumerGroup(
            redis, self._handle, group, accepts=is_observed_stream, meter=meter, clock_ns=clock_ns
        )
        gap_group = GroupConfig(
            group=VALIDATOR_GROUP,
            consumer_name=config.consumer_name,
            stream_pattern=GAP_STREAM,
            batch_entries=config.batch_entries,
            block_ms=config.block_ms,
            janitor_interval_secs=config.janitor_interval_secs,
        )
        self.gaps = ConsumerGroup(redis, self._handle, gap_group, meter=meter, clock_ns=clock_ns)

    def request_stop(self) -> None:
        self.market.request_stop()
        self.gaps.request_stop()

    async def run(self) -> None:
        await asyncio.gather(self.market.run(), self.gaps.run())

    @property
    def caught_up_ns(self) -> int:
        return min(self.market.caught_up_ns, self.gaps.caught_up_ns)

    # ---- the handler ----------------------------------------------------------------------------------------

    async def _handle(self, delivered: Sequence[Delivered]) -> BatchOutcome:
        now_ns = self._clock_ns()
        violations: list[Violation] = []
        for item in delivered:
            try:
                events = decode_entry(item.fields).events
            except (EntryDecodeError, UnsupportedSchemaError) as error:
                self.unreadable += 1
                logger.warning("entry unreadable; skipped", extra={"stream": item.stream, "error": str(error)})
                continue
            for event in events:
                violations.extend(self._observe(event, now_ns))
        self.violations_found += len(violations)
        await self.flush(violations, stop_requested=lambda: self.market.stop_requested)
        return BatchOutcome(acked=list(delivered))

    def _observe(self, event: object, now_ns: int) -> list[Violation]:
        if isinstance(event, Trade):
            self._book.observe_trade(event)
            self.watch.observe(event)
            if event.backfilled:
                # A backfill republishes trades the live stream may already have carried, by design (the hot tier
                # deduplicates): neither a duplicate nor a break in the live series.
                return []
            found = self._checker(event.exchange, event.symbol).check(event)
            for violation in found:
                if reveals_missing_ids(violation):
                    # Ids skipped that no collector reported (a collector killed with trades in its queue, entries a
                    # Redis crash lost before anyone read them): the minutes around them are only partly here, so
                    # they are a gap to repair, not only a violation. A report of the same window is the same gap.
                    self._book.observe_gap(trade_id_gap(violation, now_ns), now_ns)
            return found
        if isinstance(event, Candle):
            found = check_candle(event)
            revision = self._book.observe_candle(event)
            if revision is not None:
                start, end = candle_window(event)
                found.append(
                    Violation(event.exchange, event.symbol, ViolationKind.CANDLE_REVISION, start, end, revision.detail)
                )
            return found
        if isinstance(event, Gap):
            self._book.observe_gap(event, now_ns)
        return []

    def _checker(self, exchange: str, symbol: str) -> SeriesChecker:
        checker = self._series.get((exchange, symbol))
        if checker is None:
            checker = self._series[(exchange, symbol)] = SeriesChecker(
                exchange=exchange,
                symbol=symbol,
                data_type=DataType.TRADES,
                trade_ids_sequential=exchange in self._config.sequential_trade_id_exchanges,
            )
        return checker

    async def flush(self, violations: Sequence[Violation] = (), *, stop_requested: Callable[[], bool]) -> None:
        """Persist what changed; retried until QuestDB takes it (the stream holds the entries meanwhile)."""
        async with self._flush_lock:
            now_ns = self._clock_ns()
            self._book.caught_up_ns = self.caught_up_ns
            rows = self._book.flush_rows(now_ns)
            gaps = self._book.gaps.take_changed()
            backoff = Backoff(0.1, 5.0)
            while True:
                try:
                    await self._store.write(rows, gaps, violations, now_ns)
                    return
                except Exception as error:
                    if stop_requested():
                        # Put the gaps back so a later flush writes them; the entries stay pending.
                        for gap in gaps:
                            self._book.gaps.changed.add(gap.gap_id)
                        raise AbandonBatch from error
                    logger.warning(
                        "QuestDB write failed; retrying", extra={"error": f"{type(error).__name__}: {error}"}
                    )
                    await asyncio.sleep(backoff.next_delay_secs())


def trade_id_gap(violation: Violation, now_ns: int) -> Gap:
    """The gap a ``trade_id_gap`` violation reveals, shaped as a collector reports one (same window, same kind)."""
    return Gap(
        exchange=violation.exchange,
        data_type=DataType.TRADES,
        symbol=violation.symbol,
        kind=GapKind.TRADE_ID,
        start_ns=violation.start_ns,
        end_ns=violation.end_ns,
        cause=f"seen by the validator: {violation.detail}",
        ts_recv_ns=now_ns,
    )
