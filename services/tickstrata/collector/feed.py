"""One feed at run time: the venue's connections, local books and continuity checks, feeding the publisher.

Everything that decides lives in pure modules (the adapter parses, `LocalBook` sequences, the trackers find gaps);
this module only routes their results: events to the publisher, depth diffs to books, losses to gap events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final

from opentelemetry import metrics
from opentelemetry.metrics import Observation

from tickstrata.collector.book import LocalBook, Sequencing, UpdateKind
from tickstrata.collector.connection import DisconnectHandler, DisconnectKind, MessageHandler, VenueConnection
from tickstrata.collector.continuity import DisconnectTracker, Duplicate, TradeIdTracker, book_sequence_gap
from tickstrata.collector.publisher import Publisher
from tickstrata.collector.quarantine_budget import QuarantineBudget
from tickstrata.collector.rest import BodyRefusedError, RestClient, RestError
from tickstrata.collector.settings import CollectorSettings
from tickstrata.collector.validation import MAX_FRAME_BYTES, InvalidPayloadError, Reason
from tickstrata.collector.venues.base import Channel, ConnectionSpec, ControlKind, DepthDiff, VenueAdapter
from tickstrata.common.backoff import Backoff
from tickstrata.common.clock import market_time_ns
from tickstrata.common.events import DataType, Gap, GapKind, InstrumentSpec, Quarantine, Quote, Trade, data_type_of

logger = logging.getLogger(__name__)

SNAPSHOT_WORKERS: Final = 2  # parallel depth fetches; the shared weight budget paces them anyway
SNAPSHOT_RETRY_SECS: Final = 0.5  # a snapshot older than the buffered diffs: the venue catches up within ms
DETAIL_LIMIT: Final = 300  # characters of a quarantine detail
SKIPPED_WARNINGS_MAX: Final = 50  # exchangeInfo entries named one by one in the log; the rest are summed up
# A refused REST body as a quarantine reason: the stable codes live in validation.Reason.
_BODY_REASONS: Final = {"too_large": Reason.OVERSIZED_FRAME, "content_type": Reason.MALFORMED_JSON}


class FeedConfigError(ValueError):
    """The feed asks for something the venue does not have (an unknown or halted symbol)."""


class Feed:
    def __init__(
        self,
        settings: CollectorSettings,
        adapter: VenueAdapter,
        rest: RestClient,
        publisher: Publisher,
        meter: metrics.Meter,
    ) -> None:
        self._settings = settings
        self._adapter = adapter
        self._rest = rest
        self._publisher = publisher
        self.exchange = adapter.exchange
        self.symbols = list(settings.symbols)
        self.channels = [Channel(name) for name in settings.channels]
        self.connections: list[VenueConnection] = []
        self._trackers: list[DisconnectTracker] = []
        self._trade_ids = {symbol: TradeIdTracker(self.exchange, symbol) for symbol in self.symbols}
        sequencing = Sequencing.USDM if self.exchange == "binance-usdm" else Sequencing.SPOT
        self.books: dict[str, LocalBook] = {}
        if Channel.BOOKS in self.channels:
            self.books = {
                symbol: LocalBook(symbol, sequencing, snapshot_depth=settings.depth_snapshot_limit)
                for symbol in self.symbols
            }
        self._book_connection: dict[str, int] = {}
        self._snapshot_queue: asyncio.Queue[str] = asyncio.Queue()
        self._snapshot_pending: set[str] = set()
        # Quotes come from the venue's best-bid/offer channel when subscribed; otherwise from the local book.
        self._quotes_from_book = Channel.QUOTES not in self.channels
        self.messages_received = 0
        self.duplicates_dropped = 0
        self._messages = meter.create_counter("tickstrata.collector.messages", unit="{message}")
        self._reconnects = meter.create_counter("tickstrata.collector.reconnects", unit="{reconnect}")
        self._gaps = meter.create_counter("tickstrata.collector.gaps", unit="{gap}")
        self._quarantined = meter.create_counter("tickstrata.collector.quarantined", unit="{message}")
        self._quarantine_budget = QuarantineBudget(settings.quarantine_max_bytes_per_sec)
        self._quarantine_dropped = meter.create_counter(
            "tickstrata.collector.quarantine.dropped",
            unit="{message}",
            description="Quarantine records dropped whole by the byte-rate budget",
        )
        self._quarantine_cut = meter.create_counter(
            "tickstrata.collector.quarantine.cut_bytes",
            unit="By",
            description="Payload bytes of quarantine records cut or dropped by the byte-rate budget",
        )
        self._snapshot_backoff = {
            symbol: Backoff(
                settings.snapshot_retry_initial_secs,
                max(settings.snapshot_retry_initial_secs, settings.snapshot_retry_max_secs),
            )
            for symbol in self.symbols
        }
        self.instruments_skipped = 0
        self.unusable_symbols: list[str] = []
        meter.create_observable_gauge(
            "tickstrata.collector.instruments.skipped",
            callbacks=[lambda _options: [Observation(self.instruments_skipped, {"exchange": self.exchange})]],
            unit="{instrument}",
            description="exchangeInfo entries skipped as unsupported (precision, filter or shape)",
        )
        meter.create_observable_gauge(
            "tickstrata.collector.symbols.unusable",
            callbacks=[lambda _options: [Observation(len(self.unusable_symbols), {"exchange": self.exchange})]],
            unit="{symbol}",
            description="Configured symbols not collected because the venue describes them unsupportedly",
        )

    # ---- start-up ---------------------------------------------------------------------------------------

    async def load_instruments(self) -> None:
        """Read the venue's instrument list and check every configured symbol is listed and trading.

        An entry the venue describes in a way we cannot represent is skipped with a WARNING; a configured symbol
        among them is dropped from this feed (WARNING, gauge ``symbols.unusable``) and the others go on. A
        configured symbol that is not listed or not trading is a configuration error (``FeedConfigError``), as
        is a feed left with no symbol at all.
        """
        request = self._adapter.exchange_info_request()
        body = await self._rest.get(request.path, request.params, weight=request.weight)
        listing = self._adapter.read_exchange_info(body)
        self._adapter.registry.replace(listing.instruments)
        self.instruments_skipped = len(listing.skipped)
        for skipped in listing.skipped[:SKIPPED_WARNINGS_MAX]:
            logger.warning(
                "skipped instrument %s: %s",
                skipped.venue_symbol,
                skipped.reason,
                extra={"exchange": self.exchange, "venue_symbol": skipped.venue_symbol, "reason": skipped.reason},
            )
        if len(listing.skipped) > SKIPPED_WARNINGS_MAX:
            logger.warning(
                "skipped %d more instruments",
                len(listing.skipped) - SKIPPED_WARNINGS_MAX,
                extra={"exchange": self.exchange},
            )
        unsupported = {skipped.symbol: skipped.reason for skipped in listing.skipped if skipped.symbol}
        problems = []
        for symbol in self.symbols:
            instrument = self._adapter.registry.by_symbol(symbol)
            if instrument is None and symbol in unsupported:
                self.unusable_symbols.append(symbol)
                logger.warning(
                    "configured symbol %s is not collected: the venue describes it unsupportedly (%s)",
                    symbol,
                    unsupported[symbol],
                    extra={"exchange": self.exchange, "symbol": symbol},
                )
            elif instrument is None:
                problems.append(f"{symbol} is not listed on {self.exchange}")
            elif not instrument.is_trading:
                problems.append(f"{symbol} is not trading on {self.exchange} (status {instrument.status})")
        if not problems and len(self.unusable_symbols) == len(self.symbols):
            problems.append(f"no configured symbol is usable on {self.exchange}")
        if problems:
            raise FeedConfigError("; ".join(problems))
        self._drop_symbols(self.unusable_symbols)
        logger.info("instruments loaded", extra={"exchange": self.exchange, "instruments": len(listing.instruments)})

    def instrument_specs(self, *, loaded_ns: int) -> list[InstrumentSpec]:
        """The precision of every symbol this feed collects, as loaded (published so the tiers can scale exactly)."""
        specs = []
        for symbol in self.symbols:
            instrument = self._adapter.registry.by_symbol(symbol)
            if instrument is not None:  # load_instruments checked every kept symbol is listed
                specs.append(instrument.spec(loaded_ns=loaded_ns))
        return specs

    def _drop_symbols(self, symbols: Sequence[str]) -> None:
        for symbol in symbols:
            self.symbols.remove(symbol)
            self._trade_ids.pop(symbol, None)
            self.books.pop(symbol, None)

    def build_connections(self, ws_base_url: str) -> list[VenueConnection]:
        plan: Sequence[ConnectionSpec] = self._adapter.connection_plan(self.symbols, self.channels)
        for index, spec in enumerate(plan):
            tracker = DisconnectTracker(self.exchange)
            self._trackers.append(tracker)
            self.connections.append(
                VenueConnection(
                    name=f"{self.exchange}-{index}",
                    url=ws_base_url + spec.path,
                    on_message=self._message_handler(index, tracker),
                    on_disconnect=self._disconnect_handler(index, tracker),
                    watchdog_timeout_secs=self._settings.watchdog_timeout_secs,
                    backoff_initial_secs=self._settings.reconnect_initial_secs,
                    backoff_max_secs=self._settings.reconnect_max_secs,
                    max_age_secs=self._settings.connection_max_age_secs,
                )
            )
        return self.connections

    # ---- messages ---------------------------------------------------------------------------------------

    def _message_handler(self, index: int, tracker: DisconnectTracker) -> MessageHandler:
        adapter, publisher = self._adapter, self._publisher

        async def on_message(raw: str | bytes, ts_recv_ns: int) -> None:
            self.messages_received += 1
            result = adapter.parse(raw, ts_recv_ns)
            for event in result.events:
                if type(event) is Trade and not await self._trade_continues(event):
                    continue
                gap = tracker.observe(event.symbol, data_type_of(event), event.ts_event_ns, ts_recv_ns)
                if gap is not None:
                    await self._publish_gap(gap)
                await publisher.put(event)
            for diff in result.depth:
                await self._on_depth(index, tracker, diff)
            for quarantined in result.quarantined:
                await self._quarantine(quarantined)
            if result.control is not None:
                self._on_control(index, result.control.kind, result.control.detail)

        return on_message

    async def _trade_continues(self, trade: Trade) -> bool:
        """Feed the trade-id chain; False for a duplicate (the overlap of two connections, a venue replay)."""
        tracker = self._trade_ids.get(trade.symbol)
        if tracker is None or not trade.trade_id.isdigit():
            return True
        outcome = tracker.observe(int(trade.trade_id), trade.ts_event_ns, trade.ts_recv_ns)
        if isinstance(outcome, Duplicate):
            self.duplicates_dropped += 1
            return False
        if outcome is not None:
            await self._publish_gap(outcome)
        return True

    async def _on_depth(self, index: int, tracker: DisconnectTracker, diff: DepthDiff) -> None:
        book = self.books.get(diff.symbol)
        if book is None:
            return
        self._book_connection[diff.symbol] = index
        update = book.on_diff(diff)
        kind = update.kind
        if kind is UpdateKind.APPLIED:
            gap = tracker.observe(diff.symbol, Channel.BOOKS.data_type, diff.ts_event_ns, diff.ts_recv_ns)
            if gap is not None:
                await self._publish_gap(gap)
            if update.top_changed and self._quotes_from_book:
                await self._publish_quote(book.quote_event(self.exchange, diff.ts_recv_ns))
            return
        if kind is UpdateKind.GAP:
            gap = book_sequence_gap(
                self.exchange,
                diff.symbol,
                last_applied_ts_event_ns=update.last_applied_ts_event_ns,
                revealed_ts_event_ns=update.ts_event_ns,
                cause=f"book {update.reason}: local id {update.last_update_id}, diff U={update.diff_first_update_id}",
                ts_recv_ns=diff.ts_recv_ns,
            )
            if gap is not None:
                await self._publish_gap(gap)
            logger.warning("book resync", extra={"symbol": diff.symbol, "reason": str(update.reason)})
        if book.needs_snapshot:
            self._request_snapshot(diff.symbol)

    async def _publish_quote(self, quote: Quote | None) -> None:
        if quote is not None:
            await self._publisher.put(quote)

    async def _publish_gap(self, gap: Gap) -> None:
        self._gaps.add(1, {"exchange": self.exchange, "kind": gap.kind.value})
        logger.warning("continuity lost", extra={"gap": repr(gap)})
        await self._publisher.put(gap)

    async def _quarantine(self, quarantined: Quarantine) -> None:
        """Count a refused input, and publish it within the quarantine byte budget (cut or dropped beyond it)."""
        self._quarantined.add(1, {"exchange": self.exchange, "reason": quarantined.reason})
        admission = self._quarantine_budget.admit(quarantined)
        if admission.cut_bytes:
            self._quarantine_cut.add(admission.cut_bytes, {"exchange": self.exchange})
        if admission.quarantine is None:
            self._quarantine_dropped.add(1, {"exchange": self.exchange, "reason": quarantined.reason})
        else:
            await self._publisher.put(admission.quarantine)
        report = self._quarantine_budget.take_report()
        if report is not None:
            logger.warning(
                "quarantine over its byte budget: %d records dropped, %d cut, %d payload bytes lost",
                report.dropped,
                report.truncated,
                report.cut_bytes,
                extra={"exchange": self.exchange, "dropped_by_reason": report.dropped_by_reason},
            )

    def _on_control(self, index: int, kind: ControlKind, detail: str) -> None:
        if kind == "error":
            logger.error("venue refused a request", extra={"connection": index, "detail": detail})
        elif kind == "server_shutdown":
            logger.warning("venue announced a server shutdown", extra={"connection": index})

    # ---- disconnects --------------------------------------------------------------------------------------

    def _disconnect_handler(self, index: int, tracker: DisconnectTracker) -> DisconnectHandler:
        async def on_disconnect(kind: DisconnectKind, cause: str, at_ns: int) -> None:
            gap_kind = GapKind.STALE if kind is DisconnectKind.STALE else GapKind.DISCONNECT
            opened = tracker.lost(cause, kind=gap_kind)
            self._reconnects.add(1, {"exchange": self.exchange, "kind": kind.value})
            logger.warning("connection lost", extra={"connection": index, "cause": cause, "windows_opened": opened})
            if kind is DisconnectKind.OVERSIZED:
                # The library refused the frame unread: the record says so, without a payload.
                detail = f"a frame over {MAX_FRAME_BYTES} bytes; the connection was closed (1009) and replaced"
                await self._quarantine(
                    Quarantine.capture(
                        b"",
                        exchange=self.exchange,
                        reason=Reason.OVERSIZED_FRAME.value,
                        detail=detail,
                        ts_recv_ns=at_ns,
                    )
                )
            # Diffs were lost with the socket: the books it carried restart from a fresh snapshot.
            for symbol, carrier in self._book_connection.items():
                if carrier == index:
                    self.books[symbol].reset()

        return on_disconnect

    # ---- book snapshots -------------------------------------------------------------------------------------

    def _request_snapshot(self, symbol: str) -> None:
        if symbol not in self._snapshot_pending:
            self._snapshot_pending.add(symbol)
            self._snapshot_queue.put_nowait(symbol)

    async def run_snapshot_worker(self) -> None:
        """Fetch REST depth snapshots for books that need one, under the venue's weight budget.

        No answer stops this worker: a failed request or a refused snapshot (crossed, not JSON, too large) is
        logged, quarantined when there was a body, and fetched again after a capped, jittered backoff.
        """
        while True:
            symbol = await self._snapshot_queue.get()
            self._snapshot_pending.discard(symbol)
            book = self.books.get(symbol)
            if book is None or not book.needs_snapshot:
                continue
            request = self._adapter.depth_request(symbol, self._settings.depth_snapshot_limit)
            body = b""
            try:
                body = await self._rest.get(request.path, request.params, weight=request.weight)
                snapshot = self._adapter.parse_depth_snapshot(body, symbol, market_time_ns())
            except BodyRefusedError as refused:
                reason = _BODY_REASONS.get(refused.kind, Reason.MALFORMED_JSON)
                await self._snapshot_failed(symbol, refused, reason, refused.head)
                continue
            except InvalidPayloadError as invalid:
                await self._snapshot_failed(symbol, invalid, invalid.reason, body)
                continue
            except RestError as error:
                await self._snapshot_failed(symbol, error, None, b"")
                continue
            update = book.on_snapshot(snapshot)
            if update.kind is UpdateKind.SYNCED:
                self._snapshot_backoff[symbol].reset()
                logger.info("book synced", extra={"symbol": symbol, "last_update_id": book.last_update_id})
                await self._publish_book(symbol)
            elif book.needs_snapshot:
                # Too old (the venue's snapshot predates our first diff) or the buffer broke: fetch again.
                await asyncio.sleep(SNAPSHOT_RETRY_SECS if update.kind is UpdateKind.SNAPSHOT_TOO_OLD else 0)
                self._request_snapshot(symbol)

    async def _snapshot_failed(self, symbol: str, error: Exception, reason: Reason | None, body: bytes) -> None:
        """Quarantine a refused snapshot body (``reason`` set), then schedule the next attempt with backoff."""
        backoff = self._snapshot_backoff[symbol]
        delay_secs = backoff.next_delay_secs()
        logger.warning(
            "depth snapshot failed; retrying",
            extra={
                "symbol": symbol,
                "error": repr(error),
                "attempt": backoff.attempt,
                "delay_secs": round(delay_secs, 3),
            },
        )
        if reason is not None:
            quarantine = Quarantine.capture(
                body,
                exchange=self.exchange,
                reason=reason.value,
                detail=f"depth snapshot: {error}"[:DETAIL_LIMIT],
                ts_recv_ns=market_time_ns(),
                data_type=DataType.BOOKS,
                symbol=symbol,
            )
            await self._quarantine(quarantine)
        # Scheduled, not slept: the worker stays free for the other symbols meanwhile.
        asyncio.get_running_loop().call_later(delay_secs, self._request_snapshot, symbol)

    async def _publish_book(self, symbol: str) -> None:
        snapshot = self.books[symbol].snapshot_event(self.exchange, self._settings.book_levels, market_time_ns())
        if snapshot is not None:
            await self._publisher.put(snapshot)

    async def run_book_sampler(self) -> None:
        """Publish every synced book's top N at the configured interval."""
        interval_secs = self._settings.book_snapshot_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_secs)
            for symbol in self.books:
                await self._publish_book(symbol)

    def flush_open_gaps(self) -> list[Gap]:
        """Windows still open at shutdown close now: their end is the moment we stopped listening."""
        now_ns = market_time_ns()
        return [gap for tracker in self._trackers for gap in tracker.flush(now_ns, now_ns)]
