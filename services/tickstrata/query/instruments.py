"""The instrument list (which (exchange, symbol) pairs the hot tier holds), cached and read single-flight.

Reading it is a `SELECT DISTINCT` over every trade and candle, so it must not run per call: the list is read at
most once per `refresh_secs` (`QUERY_INSTRUMENTS_REFRESH_SECS`), however many calls ask, and concurrent callers
of a stale list share one read. An instrument stored for the first time is therefore answered NOT_FOUND for up to
`refresh_secs`; a known instrument never waits for a re-read (the stale list answers it meanwhile). A failed read
is not cached: its callers get the error, and the next caller reads again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final

from opentelemetry.metrics import Meter

Instrument = tuple[str, str]
"""(exchange, symbol)."""

SCANS_METRIC: Final = "tickstrata.query.instrument_scans"


class InstrumentCache:
    def __init__(
        self,
        load: Callable[[], Awaitable[frozenset[Instrument]]],
        *,
        refresh_secs: float,
        meter: Meter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._refresh_secs = refresh_secs
        self._clock = clock
        self._known: frozenset[Instrument] | None = None
        self._read_at = 0.0
        self._inflight: asyncio.Task[frozenset[Instrument]] | None = None
        self._scans_counter = meter.create_counter(
            SCANS_METRIC, unit="{scan}", description="Reads of the instrument list from the hot tier"
        )
        self.scans = 0

    async def get(self, want: Instrument | None = None) -> frozenset[Instrument]:
        """The cached list, read again first when it is older than `refresh_secs` (or was never read).

        A stale list that holds `want` is returned at once and re-read in the background: a known instrument
        never waits for the scan, only an unknown one does."""
        if self._known is not None and self._clock() - self._read_at < self._refresh_secs:
            return self._known
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._read(), name="read-instruments")
            self._inflight.add_done_callback(_retrieve)  # every waiter may have gone: never "never retrieved"
        if want is not None and self._known is not None and want in self._known:
            return self._known
        # Shielded: a caller that gives up (deadline, cancel) must not cancel the read the others wait for.
        return await asyncio.shield(self._inflight)

    async def _read(self) -> frozenset[Instrument]:
        started = self._clock()
        self.scans += 1
        self._scans_counter.add(1)
        try:
            known = await self._load()
        finally:
            self._inflight = None
        self._known, self._read_at = known, started
        return known

    async def close(self) -> None:
        task = self._inflight
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _retrieve(task: asyncio.Task[frozenset[Instrument]]) -> None:
    if not task.cancelled():
        task.exception()
