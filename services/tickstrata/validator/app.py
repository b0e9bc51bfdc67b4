"""Validator: the completeness ledger, its repairs through the collectors' BackfillService, and QualityService.

start: QuestDB ledger tables → the persisted horizon reloaded → consumers (trades, candles, qa:gaps)
       → backfill driver → every flush interval: persist what the watermark settled, publish completeness
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar, Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tickstrata.common.clock import market_time_ns
from tickstrata.common.grpc_app import GrpcRedisApp
from tickstrata.common.grpc_server import Registrar
from tickstrata.common.health import CheckResult
from tickstrata.common.lifecycle import ServiceContext
from tickstrata.common.questdb_rest import QuestDBError
from tickstrata.quality.v1 import quality_service_pb2_grpc
from tickstrata.validator.backfill_driver import BackfillDriver, DriverConfig
from tickstrata.validator.book import BookConfig, LedgerBook
from tickstrata.validator.consumer import ValidatorConsumer, ValidatorConsumerConfig
from tickstrata.validator.publisher import CompletenessPublisher, read_backfill_routes
from tickstrata.validator.servicer import QualityService
from tickstrata.validator.settings import ValidatorSettings
from tickstrata.validator.store import QualityStore
from tickstrata.validator.watch import Watch, WatchConfig

logger = logging.getLogger(__name__)

NS_PER_SEC: Final = 1_000_000_000
START_RETRY_SECS: Final = 1.0


class ValidatorApp(GrpcRedisApp[ValidatorSettings]):
    name: ClassVar[str] = "validator"
    grpc_service_names: ClassVar[Sequence[str]] = ("tickstrata.quality.v1.QualityService",)

    def __init__(self, settings: ValidatorSettings) -> None:
        super().__init__(settings)
        self.book = LedgerBook(
            BookConfig(
                grace_ns=int(settings.grace_secs * NS_PER_SEC),
                max_ask_minutes=settings.max_ask_minutes,
                volume_matches_trades_exchanges=settings.volume_matching_exchanges(),
            )
        )
        self.store = QualityStore(settings.questdb_http_url)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.consumer: ValidatorConsumer | None = None
        self.driver: BackfillDriver | None = None
        self._started = False

    def registrars(self) -> Sequence[Registrar]:
        servicer = QualityService(self.book, self.store)
        return [functools.partial(quality_service_pb2_grpc.add_QualityServiceServicer_to_server, servicer)]

    async def start(self, context: ServiceContext) -> None:
        await super().start(context)
        context.health.add_check("ledger", self._ledger_ready)
        self.consumer = ValidatorConsumer(
            self.redis,
            self.book,
            self.store,
            ValidatorConsumerConfig(
                consumer_name=self.settings.consumer_name,
                batch_entries=self.settings.batch_entries,
                block_ms=self.settings.block_ms,
                sequential_trade_id_exchanges=self.settings.sequential_exchanges(),
            ),
            watch=Watch(
                WatchConfig(
                    stale_after_secs=self.settings.stale_after_secs,
                    deviation_fraction=Decimal(str(self.settings.price_deviation_percent)) / 100,
                )
            ),
            meter=context.telemetry.meter,
        )
        self.driver = BackfillDriver(
            self.book,
            self.settings.backfill_address_map(),
            DriverConfig(
                max_jobs_per_exchange=self.settings.max_jobs_per_exchange,
                poll_interval_secs=self.settings.backfill_poll_secs,
            ),
            routes=functools.partial(read_backfill_routes, self.redis),
        )
        publisher = CompletenessPublisher(
            self.redis, self.book, window_secs=self.settings.completeness_window_secs, meter=context.telemetry.meter
        )
        self._tasks.append(context.spawn(self._run(self.consumer, self.driver, publisher), name="validator"))

    async def _run(self, consumer: ValidatorConsumer, driver: BackfillDriver, publisher: CompletenessPublisher) -> None:
        # The ledger's tables and its persisted horizon come first; QuestDB may still be starting.
        while not self._stop.is_set():
            try:
                await self.store.create_tables()
                await self._restore()
                break
            except (TimeoutError, OSError, QuestDBError) as error:
                logger.warning("ledger not ready yet", extra={"error": f"{type(error).__name__}: {error}"})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=START_RETRY_SECS)
        if self._stop.is_set():
            return
        self._started = True
        await asyncio.gather(consumer.run(), driver.run(self._stop), self._tick(consumer, publisher))

    async def _restore(self) -> None:
        since_ns = market_time_ns() - int(self.settings.horizon_hours * 3600 * NS_PER_SEC)
        buckets = await self.store.load_buckets(since_ns)
        firsts: dict[tuple[str, str], int] = {}
        for row in buckets:
            firsts.setdefault((row.exchange, row.symbol), row.minute_start_ns)
        for (exchange, symbol), first in firsts.items():
            self.book.restore(exchange, symbol, first)
        for row in buckets:
            self.book.ledgers[(row.exchange, row.symbol)].restore(row.minute_start_ns, row.record)
            self.book.mark_persisted(row.exchange, row.symbol, row.minute_start_ns, row.state)
        for gap in await self.store.load_open_gaps():
            self.book.gaps.restore(gap)
        logger.info("ledger restored", extra={"buckets": len(buckets), "instruments": len(firsts)})

    async def _tick(self, consumer: ValidatorConsumer, publisher: CompletenessPublisher) -> None:
        horizon_ns = int(self.settings.horizon_hours * 3600 * NS_PER_SEC)
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.settings.flush_interval_secs)
            try:
                await consumer.flush(consumer.watch.check(market_time_ns()), stop_requested=self._stop.is_set)
                await publisher.publish()
                self.book.forget_before(market_time_ns() - horizon_ns)
            except (RedisConnectionError, RedisTimeoutError) as error:
                # Redis away (restarting, loading its AOF): expected, and the next tick publishes again.
                logger.warning("Redis unavailable; completeness not published", extra={"error": f"{error!r}"[:200]})
            except Exception:  # the next tick tries again; the consumer keeps the entries meanwhile
                logger.exception("validator tick failed")

    async def _ledger_ready(self) -> CheckResult:
        return CheckResult(self._started, "ledger restored" if self._started else "waiting for QuestDB")

    async def stop_intake(self) -> None:
        self._stop.set()
        if self.consumer is not None:
            self.consumer.request_stop()
        await super().stop_intake()

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        if self.driver is not None:
            await self.driver.close()
        await self.store.close()
        await super().close()
