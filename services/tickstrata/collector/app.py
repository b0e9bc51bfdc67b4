"""Collector: exchange WebSockets → Redis Streams and the latest-price cache; serves BackfillService.

Start: read the venue's instruments (fail fast on an unknown symbol), start the publisher, open the connections,
then serve gRPC. Stop: close the sockets (intake), publish what is queued plus the gap windows still open
(drain), then close REST and Redis.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import ClassVar, Final

from opentelemetry.metrics import Observation

from tickstrata.backfill.v1 import backfill_service_pb2_grpc as pb_grpc
from tickstrata.collector.backfill import BackfillJobs, JobLimits
from tickstrata.collector.feed import Feed
from tickstrata.collector.instruments import InstrumentRegistry
from tickstrata.collector.publisher import Publisher
from tickstrata.collector.rest import RestBudget, RestClient
from tickstrata.collector.servicer import BackfillService
from tickstrata.collector.settings import CollectorSettings
from tickstrata.collector.venues import ADAPTERS
from tickstrata.common.clock import market_time_ns
from tickstrata.common.grpc_app import GrpcRedisApp
from tickstrata.common.grpc_server import Registrar
from tickstrata.common.health import CheckResult
from tickstrata.common.lifecycle import ServiceContext
from tickstrata.common.streams import collector_stats_key

logger = logging.getLogger(__name__)

FLUSH_SHARE_OF_SHUTDOWN: Final = 0.6  # of the shutdown bound, for publishing what is still queued


class CollectorApp(GrpcRedisApp[CollectorSettings]):
    name: ClassVar[str] = "collector"
    grpc_service_names: ClassVar[Sequence[str]] = ("tickstrata.backfill.v1.BackfillService",)

    def __init__(self, settings: CollectorSettings) -> None:
        super().__init__(settings)
        adapter_cls = ADAPTERS[settings.exchange]
        self.adapter = adapter_cls(
            InstrumentRegistry(settings.exchange), future_tolerance_ns=settings.future_tolerance_ms * 1_000_000
        )
        self.budget = RestBudget(
            settings.exchange,
            limit_weight=adapter_cls.rest_weight_limit_per_min,
            safety_margin=1 - settings.rest_weight_safety_ratio,
        )
        self.rest = RestClient(
            settings.rest_url or adapter_cls.default_rest_url, self.budget, max_body_bytes=settings.rest_max_body_bytes
        )
        self.publisher: Publisher | None = None
        self.feed: Feed | None = None
        self.jobs: BackfillJobs | None = None
        self._intake: list[asyncio.Task[None]] = []

    def registrars(self) -> Sequence[Registrar]:
        assert self.jobs is not None, "registrars are read during start, after the jobs exist"
        return [functools.partial(pb_grpc.add_BackfillServiceServicer_to_server, BackfillService(self.jobs))]

    async def start(self, context: ServiceContext) -> None:
        settings = self.settings
        telemetry = context.telemetry
        redis = self._open_redis(context)
        self.publisher = Publisher(
            redis,
            exchange=settings.exchange,
            queue_events=settings.publish_queue_events,
            batch_events=settings.publish_batch_events,
            quarantine_max_entries=settings.quarantine_max_entries,
            linger_ms=settings.publish_linger_ms,
            stats_key=collector_stats_key(settings.feed_name or settings.exchange),
            tracer=telemetry.tracer,
            meter=telemetry.meter,
        )
        self.feed = Feed(settings, self.adapter, self.rest, self.publisher, telemetry.meter)
        await self.feed.load_instruments()
        self.jobs = BackfillJobs(
            self.adapter, self.rest, self.publisher, limits=JobLimits.from_settings(settings), meter=telemetry.meter
        )
        context.spawn(self.publisher.run(), name="publisher")
        # The precision of what this feed collects, before any of its data: the warm and cold tiers scale prices by
        # it, valid from now (docs/architecture.md, "Instruments").
        await self.publisher.put_many(self.feed.instrument_specs(loaded_ns=market_time_ns()))
        ws_base_url = settings.ws_url or self.adapter.default_ws_url
        for connection in self.feed.build_connections(ws_base_url):
            self._intake.append(context.spawn(connection.run(), name=connection.name))
        if self.feed.books:
            for worker in range(2):
                self._intake.append(context.spawn(self.feed.run_snapshot_worker(), name=f"snapshots-{worker}"))
            self._intake.append(context.spawn(self.feed.run_book_sampler(), name="book-sampler"))
        context.health.add_check("venue", self._venue_check)
        await super().start(context)
        telemetry.meter.create_observable_gauge(
            "tickstrata.collector.rest.weight_used",
            callbacks=[lambda _options: [self._weight_observation()]],
            unit="{weight}",
            description="REST request weight used in the venue's current minute",
        )
        logger.info(
            "collector started",
            extra={"exchange": settings.exchange, "symbols": settings.symbols, "channels": settings.channels},
        )

    def _weight_observation(self) -> Observation:
        return Observation(self.budget.used_weight, {"exchange": self.settings.exchange})

    async def _venue_check(self) -> CheckResult:
        """Ready while every connection is open and has spoken within the watchdog timeout."""
        assert self.feed is not None
        silent = [
            connection.name
            for connection in self.feed.connections
            if not connection.connected or connection.seconds_since_last_message() > self.settings.watchdog_timeout_secs
        ]
        if silent:
            return CheckResult(False, f"not receiving: {', '.join(silent)}")
        return CheckResult(True, f"{len(self.feed.connections)} connections receiving")

    async def stop_intake(self) -> None:
        for task in self._intake:
            task.cancel()
        await asyncio.gather(*self._intake, return_exceptions=True)
        if self.jobs is not None:
            await self.jobs.cancel_all()
        await super().stop_intake()

    async def drain(self) -> None:
        if self.publisher is None or self.feed is None:
            return
        await self.publisher.put_many(self.feed.flush_open_gaps())
        left = await self.publisher.flush(timeout_secs=self.settings.shutdown_timeout_secs * FLUSH_SHARE_OF_SHUTDOWN)
        logger.info(
            "publisher drained", extra={"events_unpublished": left, "published": self.publisher.published_events}
        )

    async def close(self) -> None:
        await self.rest.close()
        await super().close()
