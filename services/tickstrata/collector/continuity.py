"""Continuity tracking: turn lost trade ids, dropped connections and book sequence breaks into ``Gap`` events.

Pure: callers pass event times in; nothing here reads a clock or does I/O.

Window semantics (what every consumer of these gaps may assume)
----------------------------------------------------------------
Every window is **half-open**, ``[start_ns, end_ns)`` (docs/architecture.md, "Time windows"): events with
``start_ns <= ts_event_ns < end_ns`` may be missing. ``start_ns`` is the event time of the last event received
before the loss; ``end_ns`` is that of the first event received after it **plus 1 ns**. Binance stamps events in
milliseconds: several trades share one timestamp, so a trade stamped exactly ``start_ns`` (after the last one
received) or exactly at the first good time (before the first one received again) may be among the missing, and
the +1 keeps that stamp inside the window. A backfill fetches the window and de-duplicates by trade id; the two
bounding events themselves were received.

- ``TRADE_ID``: exact by id as well: the ``cause`` names the missing id range, which a backfill can fetch by id.
- ``DISCONNECT``/``STALE``: one gap per (symbol, data type) that had an event before the loss, closed by that
  key's first event after it. A key with no event yet has no known-good start and yields no gap. A key that
  stays quiet after reconnecting keeps its window open (``open_windows``) until its next event or ``flush``.
- ``SEQUENCE`` (books): from the last diff applied to the published book to the diff that revealed the jump.
  The book republishes only once resynced; the diffs buffered meanwhile are not lost, they are replayed.

Gaps may overlap (a disconnect also breaks the trade-id chain): consumers take the union.
"""

from __future__ import annotations

from dataclasses import dataclass

from tickstrata.common.events import DataType, Gap, GapKind


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A trade id at or below the last one seen: a replay to drop, not a gap."""

    trade_id: int
    last_trade_id: int


class TradeIdTracker:
    """Consecutive numeric trade ids for one (exchange, symbol) (Binance ``t`` or aggTrade ``a``)."""

    __slots__ = ("_last_id", "_last_ts_event_ns", "exchange", "symbol")

    def __init__(self, exchange: str, symbol: str) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self._last_id: int | None = None
        self._last_ts_event_ns = 0

    @property
    def last_trade_id(self) -> int | None:
        return self._last_id

    def observe(self, trade_id: int, ts_event_ns: int, ts_recv_ns: int) -> Gap | Duplicate | None:
        """Record a received trade. Returns a ``TRADE_ID`` gap if ids were skipped, ``Duplicate`` for a replay."""
        last_id = self._last_id
        if last_id is None or trade_id == last_id + 1:  # the hot path: one comparison
            self._last_id, self._last_ts_event_ns = trade_id, ts_event_ns
            return None
        if trade_id <= last_id:
            return Duplicate(trade_id=trade_id, last_trade_id=last_id)
        start_ns = self._last_ts_event_ns
        self._last_id, self._last_ts_event_ns = trade_id, ts_event_ns
        first_missing, last_missing = last_id + 1, trade_id - 1
        return Gap(
            exchange=self.exchange,
            data_type=DataType.TRADES,
            symbol=self.symbol,
            kind=GapKind.TRADE_ID,
            # min/max: a venue clock stepping back must not produce an invalid (reversed) window.
            start_ns=min(start_ns, ts_event_ns),
            end_ns=max(start_ns, ts_event_ns) + 1,
            cause=f"trade ids {first_missing}..{last_missing} missing ({last_missing - first_missing + 1})",
            ts_recv_ns=ts_recv_ns,
        )


@dataclass(frozen=True, slots=True)
class _OpenWindow:
    start_ns: int
    kind: GapKind
    cause: str


class DisconnectTracker:
    """Disconnect and watchdog (stale) windows for every (symbol, data type) on one connection.

    Call ``observe`` for every event received (it closes an open window on that key's first event after a
    loss), ``lost`` when the connection drops or the watchdog kills it. Keys are the subscriptions, so the
    maps are bounded by the feed's configuration.
    """

    __slots__ = ("_last_ts_event_ns", "_open", "exchange")

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self._last_ts_event_ns: dict[tuple[str | None, DataType], int] = {}
        self._open: dict[tuple[str | None, DataType], _OpenWindow] = {}

    def observe(self, symbol: str | None, data_type: DataType, ts_event_ns: int, ts_recv_ns: int) -> Gap | None:
        """Record an event; returns the gap it closes if it is the key's first event since a loss."""
        key = (symbol, data_type)
        last = self._last_ts_event_ns
        previous = last.get(key)
        # Keep the newest time: venues may deliver slightly out of order, and the window starts at the newest.
        if previous is None or ts_event_ns > previous:
            last[key] = ts_event_ns
        if not self._open:
            return None
        window = self._open.pop(key, None)
        if window is None:
            return None
        return self._gap(key, window, ts_event_ns, ts_recv_ns)

    def lost(self, cause: str, *, kind: GapKind = GapKind.DISCONNECT) -> int:
        """The connection dropped (``DISCONNECT``) or the watchdog killed it (``STALE``); returns windows opened.

        A key already open keeps its original start: a second drop before recovery only lengthens the window.
        """
        if kind not in (GapKind.DISCONNECT, GapKind.STALE, GapKind.RESTART):
            raise ValueError(f"a connection loss is DISCONNECT, STALE or RESTART, not {kind}")
        opened = 0
        for key, start_ns in self._last_ts_event_ns.items():
            if key not in self._open:
                self._open[key] = _OpenWindow(start_ns=start_ns, kind=kind, cause=cause)
                opened += 1
        return opened

    def open_windows(self) -> dict[tuple[str | None, DataType], int]:
        """Keys still waiting for their first event after a loss, with the window start (event-time ns)."""
        return {key: window.start_ns for key, window in self._open.items()}

    def flush(self, last_ns: int, ts_recv_ns: int) -> list[Gap]:
        """Close every open window as if ``last_ns`` were the first good time (e.g. at shutdown, or for a symbol
        that went quiet): events up to and including ``last_ns`` may be missing, so each gap ends at ``last_ns + 1``.
        """
        gaps = [self._gap(key, window, last_ns, ts_recv_ns) for key, window in self._open.items()]
        self._open.clear()
        return gaps

    def _gap(self, key: tuple[str | None, DataType], window: _OpenWindow, good_ns: int, ts_recv_ns: int) -> Gap:
        """The window from its start to ``good_ns`` (the first known-good time again), which it includes."""
        symbol, data_type = key
        return Gap(
            exchange=self.exchange,
            data_type=data_type,
            symbol=symbol,
            kind=window.kind,
            start_ns=min(window.start_ns, good_ns),
            end_ns=max(window.start_ns, good_ns) + 1,
            cause=window.cause,
            ts_recv_ns=ts_recv_ns,
        )


def book_sequence_gap(
    exchange: str,
    symbol: str,
    *,
    last_applied_ts_event_ns: int | None,
    revealed_ts_event_ns: int | None,
    cause: str,
    ts_recv_ns: int,
) -> Gap | None:
    """The ``SEQUENCE`` gap for a book that lost continuity (from ``LocalBook``'s ``GAP`` result fields).

    None when the book never published a state (nothing was lost). Without a revealing diff (a crossed
    snapshot) the window ends just after the last applied diff's time.
    """
    if last_applied_ts_event_ns is None:
        return None
    good_ns = last_applied_ts_event_ns if revealed_ts_event_ns is None else revealed_ts_event_ns
    return Gap(
        exchange=exchange,
        data_type=DataType.BOOKS,
        symbol=symbol,
        kind=GapKind.SEQUENCE,
        start_ns=min(last_applied_ts_event_ns, good_ns),
        end_ns=max(last_applied_ts_event_ns, good_ns) + 1,
        cause=cause,
        ts_recv_ns=ts_recv_ns,
    )
