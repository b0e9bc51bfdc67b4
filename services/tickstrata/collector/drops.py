"""What the collector let go under backpressure, kept as exact windows until they can be published as gaps. Pure.

The stream contract (docs/architecture.md) ranks data by what a venue can give back: trades and candles can be
backfilled from REST, so they are never dropped — the collector waits and the venue's socket pushes back. Quotes and
book snapshots cannot be fetched again, and waiting for them would stall the trades on the same socket, so they give
way first: each dropped event widens the window of its (data type, symbol), and the window is published as a
`backpressure` gap as soon as Redis takes writes again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeGuard

from tickstrata.common.events import BookSnapshot, DataType, Event, Gap, GapKind, Quote, data_type_of

DROPPABLE_TYPES: Final = frozenset({Quote, BookSnapshot})
"""Event types that give way under backpressure: the venue cannot resend them, and nothing waits on them."""


def is_droppable(event: Event) -> TypeGuard[Quote | BookSnapshot]:
    return type(event) in DROPPABLE_TYPES


@dataclass(slots=True)
class _Window:
    start_ns: int
    end_ns: int
    events: int


class DropLedger:
    """Windows of dropped events per (data type, symbol); `take_gaps` empties it into gap events."""

    def __init__(self, exchange: str) -> None:
        self._exchange = exchange
        self._windows: dict[tuple[DataType, str], _Window] = {}
        self.dropped_events = 0

    def __bool__(self) -> bool:
        return bool(self._windows)

    def drop(self, event: Quote | BookSnapshot) -> DataType:
        """Record one dropped event; return its data type (for the caller's counter)."""
        data_type = data_type_of(event)
        key = (data_type, event.symbol)
        window = self._windows.get(key)
        if window is None:
            self._windows[key] = _Window(event.ts_event_ns, event.ts_event_ns, 1)
        else:
            window.start_ns = min(window.start_ns, event.ts_event_ns)
            window.end_ns = max(window.end_ns, event.ts_event_ns)
            window.events += 1
        self.dropped_events += 1
        return data_type

    def take_gaps(self, *, now_ns: int, reason: str) -> list[Gap]:
        """One gap per (data type, symbol) with the exact window of what was dropped, half-open
        ``[first dropped stamp, last dropped stamp + 1 ns)``; the ledger is emptied."""
        gaps = [
            Gap(
                exchange=self._exchange,
                data_type=data_type,
                symbol=symbol,
                kind=GapKind.BACKPRESSURE,
                start_ns=window.start_ns,
                end_ns=window.end_ns + 1,  # half-open: the last dropped event's stamp is inside
                cause=f"{window.events} {data_type.value} events dropped: {reason}",
                ts_recv_ns=now_ns,
            )
            for (data_type, symbol), window in sorted(self._windows.items())
        ]
        self._windows.clear()
        return gaps
