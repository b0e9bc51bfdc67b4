"""Series rules: one (exchange, symbol, data type) fed in stream order, checked with bounded memory.

``SeriesChecker`` reports, per event:

- ``non_monotonic_time``: the event is older than the newest seen by more than the tolerance, or (sequential
  trade ids) its id is below the highest seen;
- ``duplicate``: a trade id seen again, or a closed candle seen again from the same source with equal values;
- ``candle_revision`` / ``candle_mismatch``: a closed candle seen again with other values (``rules_candles``);
- ``trade_id_gap``: sequential trade ids that skipped values.

Windows are half-open: a single event's is ``[ts_event_ns, ts_event_ns + 1)``, a candle's is its own, a trade-id
gap's runs from the last trade before the gap to the first after it, ``[before_ns, after_ns + 1)``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from tickstrata.common.events import Candle, CandleSource, DataType, MarketDataEvent, Trade, data_type_of
from tickstrata.validator.rules import Violation, ViolationKind, event_window
from tickstrata.validator.rules_candles import candle_revision, candle_window, same_values

_MISSING: Final = " missing"
DEFAULT_MEMORY_LIMIT: Final = 10_000
"""Trade ids (or closed candles) remembered for duplicate detection: minutes of a busy pair's trades."""


class SeriesChecker:
    """Checks one series (exchange, symbol, data type) event by event, in stream order.

    ``trade_ids_sequential`` is the venue adapter's statement that its trade ids are consecutive decimal
    integers; only then are gaps and out-of-order ids looked for. ``time_tolerance_ns`` is how far an event may
    lag the newest one seen before it counts as out of order. ``memory_limit`` bounds what is remembered: the
    most recent trade ids, or closed candles, up to that many; the newest timestamp and highest id are single
    values. A duplicate older than the memory is therefore not recognized as one: it is reported as out of
    order when the ids are sequential, and not at all otherwise.

    Events the venue's REST history supplied later on purpose (trades with ``backfilled``, ``rest`` candles)
    arrive late by design: they are never reported as out of order, but are checked for duplicates, and can
    still extend the series. Gaps before the first event the checker sees cannot be detected (the ledger finds
    those).
    """

    def __init__(
        self,
        *,
        exchange: str,
        symbol: str,
        data_type: DataType,
        trade_ids_sequential: bool = False,
        time_tolerance_ns: int = 0,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        if time_tolerance_ns < 0:
            raise ValueError(f"time_tolerance_ns must not be negative, got {time_tolerance_ns}")
        if memory_limit < 1:
            raise ValueError(f"memory_limit must be at least 1, got {memory_limit}")
        self.exchange = exchange
        self.symbol = symbol
        self.data_type = data_type
        self.trade_ids_sequential = trade_ids_sequential
        self.time_tolerance_ns = time_tolerance_ns
        self.memory_limit = memory_limit
        self._newest_ns: int | None = None
        # Insertion-ordered, so the oldest entry is evicted first in O(1).
        self._trade_ids: OrderedDict[str, None] = OrderedDict()
        self._candles: OrderedDict[tuple[int, int], Candle] = OrderedDict()  # by (interval_secs, open_time_ns)
        self._highest_id: int | None = None  # sequential ids only
        self._highest_id_ns = 0  # event time of the trade that carried _highest_id

    @property
    def remembered_count(self) -> int:
        """How many trade ids and closed candles are remembered now; never above ``memory_limit``."""
        return len(self._trade_ids) + len(self._candles)

    def check(self, event: MarketDataEvent) -> list[Violation]:
        """Return the violations ``event`` shows given the events before it, and remember it.

        Raises ``ValueError`` for an event of another series: routing is the caller's job.
        """
        if event.exchange != self.exchange or event.symbol != self.symbol or data_type_of(event) != self.data_type:
            raise ValueError(
                f"{type(event).__name__} of {event.exchange} {event.symbol} does not belong to the series "
                f"{self.exchange} {self.symbol} {self.data_type}"
            )
        if isinstance(event, Trade):
            return self._check_trade(event)
        if isinstance(event, Candle):
            return self._check_candle(event)
        late = self._lateness(event.ts_event_ns)
        return [self._non_monotonic(event_window(event.ts_event_ns), late)] if late else []

    def _check_trade(self, trade: Trade) -> list[Violation]:
        window = event_window(trade.ts_event_ns)
        if trade.trade_id in self._trade_ids:
            # The copy's age follows from its being a copy; one violation says all.
            detail = f"trade id {trade.trade_id} seen again (price={trade.price} size={trade.size})"
            return [self._violation(ViolationKind.DUPLICATE, window, detail)]
        self._remember_trade_id(trade.trade_id)
        reasons = self._lateness(trade.ts_event_ns)
        if trade.backfilled:
            reasons = []  # late by design
        violations = []
        if self.trade_ids_sequential:
            trade_id = _decimal_id(trade.trade_id)
            if trade_id is None:
                detail = f"trade id {trade.trade_id!r} is not a decimal integer: continuity is unknown here"
                violations.append(self._violation(ViolationKind.TRADE_ID_GAP, window, detail))
            elif self._highest_id is None or trade_id > self._highest_id:
                if self._highest_id is not None and trade_id > self._highest_id + 1:
                    violations.append(self._id_gap(self._highest_id, trade_id, trade.ts_event_ns))
                self._highest_id, self._highest_id_ns = trade_id, trade.ts_event_ns
            elif not trade.backfilled:
                reasons.append(f"id {trade_id} arrived after id {self._highest_id}")
        if reasons:
            violations.insert(0, self._non_monotonic(window, reasons, subject=f"trade id {trade.trade_id}: "))
        return violations

    def _check_candle(self, candle: Candle) -> list[Violation]:
        window = candle_window(candle)
        violations = []
        # Open candles are updated until they close, so only closed ones can repeat or be revised.
        if candle.closed:
            key = (candle.interval_secs, candle.open_time_ns)
            previous = self._candles.get(key)
            if previous is not None and previous.source == candle.source and same_values(previous, candle):
                detail = f"closed {candle.source} candle seen again with the same values"
                return [self._violation(ViolationKind.DUPLICATE, window, detail)]
            if previous is not None:
                # Built vs the venue's own candle is our reconstruction disagreeing; anything else is a revision.
                built = (previous.source is CandleSource.BUILT) != (candle.source is CandleSource.BUILT)
                kind = ViolationKind.CANDLE_MISMATCH if built else ViolationKind.CANDLE_REVISION
                if (change := candle_revision(previous, candle, kind=kind)) is not None:
                    violations.append(change)
            self._candles[key] = candle
            self._candles.move_to_end(key)
            if len(self._candles) > self.memory_limit:
                self._candles.popitem(last=False)
        reasons = self._lateness(candle.ts_event_ns)
        if reasons and candle.source is not CandleSource.REST:  # REST candles are late by design
            violations.insert(0, self._non_monotonic(window, reasons))
        return violations

    def _lateness(self, ts_event_ns: int) -> list[str]:
        """Advance the newest event time; describe how late ``ts_event_ns`` is, if beyond the tolerance."""
        newest_ns = self._newest_ns
        if newest_ns is None or ts_event_ns > newest_ns:
            self._newest_ns = ts_event_ns
            return []
        if newest_ns - ts_event_ns <= self.time_tolerance_ns:
            return []
        return [f"ts_event_ns={ts_event_ns} is {newest_ns - ts_event_ns} ns older than the newest seen ({newest_ns})"]

    def _remember_trade_id(self, trade_id: str) -> None:
        self._trade_ids[trade_id] = None
        if len(self._trade_ids) > self.memory_limit:
            self._trade_ids.popitem(last=False)

    def _id_gap(self, before_id: int, after_id: int, after_ns: int) -> Violation:
        before_ns = self._highest_id_ns
        first, last = before_id + 1, after_id - 1
        ids = f"id {first}" if first == last else f"ids {first}..{last}"
        # The trade after the gap may carry an older time than the one before it; the window still covers both.
        start_ns, end_ns = min(before_ns, after_ns), max(before_ns, after_ns) + 1
        return self._violation(ViolationKind.TRADE_ID_GAP, (start_ns, end_ns), f"{ids}{_MISSING} ({last - first + 1})")

    def _non_monotonic(self, window: tuple[int, int], reasons: list[str], *, subject: str = "") -> Violation:
        return self._violation(ViolationKind.NON_MONOTONIC_TIME, window, subject + "; ".join(reasons))

    def _violation(self, kind: ViolationKind, window: tuple[int, int], detail: str) -> Violation:
        return Violation(self.exchange, self.symbol, kind, window[0], window[1], detail)


def _decimal_id(trade_id: str) -> int | None:
    # isdigit alone accepts other scripts' digits ("١٢"), which int() would also parse.
    return int(trade_id) if trade_id.isascii() and trade_id.isdigit() else None


def reveals_missing_ids(violation: Violation) -> bool:
    """A ``trade_id_gap`` that names skipped ids (not an id continuity cannot be judged by): data to repair."""
    return violation.kind is ViolationKind.TRADE_ID_GAP and f"{_MISSING} (" in violation.detail
