"""A local L2 order book kept in sync with a Binance diff-depth stream (spot and USD-M). Pure: no I/O, no clock.

The collector feeds every ``depthUpdate`` to ``on_diff`` and, when ``needs_snapshot`` says so, fetches a REST
depth snapshot and hands it to ``on_snapshot``. Each call returns a ``BookUpdate`` saying what happened; a
``GAP`` result means the book has already discarded itself and is buffering for a fresh snapshot (it is never
patched or merged: ghost levels from a stale book are the classic corruption, ccxt #29210, cryptofeed PR #606).

Synchronization follows the venues' documented procedures:

- spot: a diff covers update ids ``[U, u]`` and consecutive diffs chain by ``U == previous u + 1``. A snapshot
  with ``lastUpdateId = L`` is usable iff the first buffered diff has ``U <= L + 1`` (the doc re-fetches on
  ``L < U``, one stricter than needed: with ``L == U - 1`` the first diff continues the snapshot exactly).
  Diffs with ``u <= L`` are dropped; a diff applies iff ``U <= local + 1 <= u``; ``u <= local`` is a stale
  replay; ``U > local + 1`` means diffs were missed.
- USD-M: ids are not contiguous between diffs, so each diff names its predecessor's final id in ``pu``. Diffs
  with ``u < L`` are dropped; the first applied diff must straddle the snapshot (``U <= L <= u``) or continue it
  exactly (``pu == L``, seen on live streams); from then on ``pu`` must equal the previous ``u``.

Quantities are absolute and ``0`` removes a level, so re-applying a diff the snapshot already reflects is
harmless. Levels deeper than the snapshot's deepest level on a side are unknown (the venue had levels there
that the snapshot cut off), so updates beyond that bound are not stored and never published.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final, Protocol

from tickstrata.common.events import BookLevel, BookSnapshot, Quote

Levels = Sequence[tuple[Decimal, Decimal]]


class DepthDiff(Protocol):
    """One diff-depth message, as the venue adapter parses it (``collector.venues.base.DepthDiff``)."""

    @property
    def symbol(self) -> str: ...
    @property
    def first_update_id(self) -> int: ...  # U
    @property
    def final_update_id(self) -> int: ...  # u
    @property
    def prev_final_update_id(self) -> int | None: ...  # pu (USD-M only)
    @property
    def bids(self) -> Levels: ...
    @property
    def asks(self) -> Levels: ...
    @property
    def ts_event_ns(self) -> int: ...
    @property
    def ts_recv_ns(self) -> int: ...


class DepthSnapshot(Protocol):
    """A REST depth snapshot (``collector.venues.base.DepthSnapshot``)."""

    @property
    def symbol(self) -> str: ...
    @property
    def last_update_id(self) -> int: ...
    @property
    def bids(self) -> Levels: ...
    @property
    def asks(self) -> Levels: ...
    @property
    def ts_recv_ns(self) -> int: ...


class Sequencing(StrEnum):
    """Which of Binance's two sync procedures the stream follows."""

    SPOT = "spot"
    USDM = "usdm"


class BookState(StrEnum):
    BUFFERING = "buffering"  # nothing received since the last reset: wait for a diff before fetching a snapshot
    AWAITING_SNAPSHOT = "awaiting_snapshot"  # diffs are buffered; a REST snapshot is needed
    SYNCED = "synced"  # the book is live and publishable


class UpdateKind(StrEnum):
    BUFFERED = "buffered"
    APPLIED = "applied"
    IGNORED_STALE = "ignored_stale"  # a duplicate or replayed diff the book already reflects
    SYNCED = "synced"  # a snapshot was loaded and the buffered diffs replayed onto it
    SNAPSHOT_TOO_OLD = "snapshot_too_old"  # fetch another one; the buffer is kept
    SNAPSHOT_IGNORED = "snapshot_ignored"  # a snapshot arrived while already synced (a duplicate fetch)
    GAP = "gap"  # the book was discarded and is buffering again; see ``reason``


class ResyncReason(StrEnum):
    SEQUENCE_GAP = "sequence_gap"  # a synced book received a diff that does not continue it
    BUFFER_BREAK = "buffer_break"  # buffered diffs stopped chaining before a snapshot arrived
    BUFFER_OVERFLOW = "buffer_overflow"  # the snapshot took so long that the bounded buffer filled up
    CROSSED = "crossed"  # best bid >= best ask after an update: the book is corrupt
    SIDE_EXHAUSTED = "side_exhausted"  # every known level of a side is gone; the rest lies beyond the snapshot


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """What one ``on_diff``/``on_snapshot`` call did.

    For ``GAP``: ``last_update_id`` is the local id the book had reached, ``diff_first_update_id`` the ``U`` of
    the diff that revealed the loss (None for reasons not tied to one), ``last_applied_ts_event_ns`` the event
    time of the last diff applied before the loss (None if the book never applied one: nothing was published,
    so nothing was lost) and ``ts_event_ns`` the event time of the diff that revealed it.
    """

    kind: UpdateKind
    top_changed: bool = False
    reason: ResyncReason | None = None
    last_update_id: int | None = None
    diff_first_update_id: int | None = None
    last_applied_ts_event_ns: int | None = None
    ts_event_ns: int | None = None


# Shared results for the per-message outcomes: the hot path allocates nothing.
APPLIED_TOP_CHANGED: Final = BookUpdate(UpdateKind.APPLIED, top_changed=True)
APPLIED: Final = BookUpdate(UpdateKind.APPLIED)
BUFFERED: Final = BookUpdate(UpdateKind.BUFFERED)
IGNORED_STALE: Final = BookUpdate(UpdateKind.IGNORED_STALE)
SNAPSHOT_TOO_OLD: Final = BookUpdate(UpdateKind.SNAPSHOT_TOO_OLD)
SNAPSHOT_IGNORED: Final = BookUpdate(UpdateKind.SNAPSHOT_IGNORED)
DEFAULT_MAX_BUFFERED_DIFFS: Final = 4096  # ~7 min of 100 ms diffs: longer than any sane snapshot wait


def _apply_side(
    sizes: dict[Decimal, Decimal], prices: list[Decimal], levels: Levels, low: Decimal | None, high: Decimal | None
) -> None:
    # ``prices`` stays sorted ascending: bisect + list insert is a memmove, faster than any tree in pure Python
    # for books of a few thousand levels.
    for price, size in levels:
        if (low is not None and price < low) or (high is not None and price > high):
            continue  # beyond the snapshot's depth: unknown territory, storing it would invent a partial book
        if size:
            if price not in sizes:
                insort(prices, price)
            sizes[price] = size
        elif price in sizes:  # removing a level we never had is normal (it was below a hidden level), not an error
            del sizes[price]
            del prices[bisect_left(prices, price)]


class LocalBook:
    """One symbol's local book. One instance per (venue, symbol); not thread-safe (one event loop)."""

    __slots__ = (
        "_ask_high",
        "_ask_prices",
        "_asks",
        "_bid_low",
        "_bid_prices",
        "_bids",
        "_bridged",
        "_buffer",
        "_last_applied_ts_event_ns",
        "_last_update_id",
        "_max_buffered",
        "_sequencing",
        "_snapshot_depth",
        "_state",
        "symbol",
    )

    def __init__(
        self,
        symbol: str,
        sequencing: Sequencing,
        *,
        snapshot_depth: int | None = None,
        max_buffered_diffs: int = DEFAULT_MAX_BUFFERED_DIFFS,
    ) -> None:
        """``snapshot_depth`` is the ``limit`` the snapshots are requested with: a side with fewer levels is
        the venue's whole side and bounds nothing. None treats every side as cut off at its deepest level.
        """
        if max_buffered_diffs < 1:
            raise ValueError(f"max_buffered_diffs must be >= 1, got {max_buffered_diffs}")
        self.symbol = symbol  # normalized; used for the events this book builds
        self._sequencing = sequencing
        self._snapshot_depth = snapshot_depth
        self._max_buffered = max_buffered_diffs
        self._buffer: deque[DepthDiff] = deque()
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        self._bid_prices: list[Decimal] = []
        self._ask_prices: list[Decimal] = []
        self._bid_low: Decimal | None = None
        self._ask_high: Decimal | None = None
        self._last_update_id: int | None = None
        self._bridged = False
        self._state = BookState.BUFFERING
        # Survives resets: a gap window starts at the last state we published, however many resyncs ago.
        self._last_applied_ts_event_ns: int | None = None

    # -- state ----------------------------------------------------------------------------------------------

    @property
    def state(self) -> BookState:
        return self._state

    @property
    def needs_snapshot(self) -> bool:
        """True when the collector should fetch a REST snapshot (diffs are buffered and none is loaded)."""
        return self._state is BookState.AWAITING_SNAPSHOT

    @property
    def last_update_id(self) -> int | None:
        """The venue update id the book reflects; None unless synced."""
        return self._last_update_id

    @property
    def buffered_diffs(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        """Discard the book and the buffer (e.g. after a reconnect: the new stream starts a new buffer)."""
        self._buffer.clear()
        self._clear_book()
        self._state = BookState.BUFFERING

    def _clear_book(self) -> None:
        self._bids = {}
        self._asks = {}
        self._bid_prices = []
        self._ask_prices = []
        self._bid_low = None
        self._ask_high = None
        self._last_update_id = None
        self._bridged = False

    def _gap(self, reason: ResyncReason, diff: DepthDiff | None) -> BookUpdate:
        update = BookUpdate(
            UpdateKind.GAP,
            reason=reason,
            last_update_id=self._last_update_id,
            diff_first_update_id=diff.first_update_id if diff is not None else None,
            last_applied_ts_event_ns=self._last_applied_ts_event_ns,
            ts_event_ns=diff.ts_event_ns if diff is not None else None,
        )
        self._clear_book()
        self._buffer.clear()
        if diff is not None:
            # The diff that revealed the problem is well-formed venue data: it starts the new buffer, so the
            # next snapshot can be fetched at once instead of after one more diff.
            self._buffer.append(diff)
            self._state = BookState.AWAITING_SNAPSHOT
        else:
            self._state = BookState.BUFFERING
        return update

    # -- diffs ----------------------------------------------------------------------------------------------

    def on_diff(self, diff: DepthDiff) -> BookUpdate:
        if self._state is BookState.SYNCED:
            return self._on_synced_diff(diff)
        buffer = self._buffer
        if buffer:
            last = buffer[-1]
            if diff.final_update_id <= last.final_update_id:
                return IGNORED_STALE
            # Check the chain while buffering: a broken buffer can never yield a correct book.
            if self._sequencing is Sequencing.SPOT:
                chained = diff.first_update_id <= last.final_update_id + 1  # the same rule as when synced
            else:
                chained = diff.prev_final_update_id == last.final_update_id
            if not chained:
                return self._gap(ResyncReason.BUFFER_BREAK, diff)
            if len(buffer) >= self._max_buffered:
                return self._gap(ResyncReason.BUFFER_OVERFLOW, diff)
        buffer.append(diff)
        self._state = BookState.AWAITING_SNAPSHOT
        return BUFFERED

    def _continues(self, diff: DepthDiff, local_id: int) -> bool | None:
        """True: apply; None: stale, ignore; False: diffs were missed."""
        first, final = diff.first_update_id, diff.final_update_id
        if self._sequencing is Sequencing.SPOT:
            if final <= local_id:
                return None
            return first <= local_id + 1
        if self._bridged:
            if final <= local_id:
                return None
            return diff.prev_final_update_id == local_id
        if final < local_id:
            return None
        return first <= local_id or diff.prev_final_update_id == local_id

    def _on_synced_diff(self, diff: DepthDiff) -> BookUpdate:
        local_id = self._last_update_id
        assert local_id is not None  # SYNCED always has one
        verdict = self._continues(diff, local_id)
        if verdict is None:
            return IGNORED_STALE
        if not verdict:
            return self._gap(ResyncReason.SEQUENCE_GAP, diff)
        before = self._top_key()
        problem = self._apply(diff)
        if problem is not None:
            return self._gap(problem, diff)
        return APPLIED_TOP_CHANGED if self._top_key() != before else APPLIED

    def _top_key(self) -> tuple[Decimal | None, Decimal | None, Decimal | None, Decimal | None]:
        bid_prices, ask_prices = self._bid_prices, self._ask_prices
        bid = bid_prices[-1] if bid_prices else None
        ask = ask_prices[0] if ask_prices else None
        return (
            bid,
            self._bids[bid] if bid is not None else None,
            ask,
            self._asks[ask] if ask is not None else None,
        )

    def _apply(self, diff: DepthDiff) -> ResyncReason | None:
        had_bids, had_asks = bool(self._bid_prices), bool(self._ask_prices)
        _apply_side(self._bids, self._bid_prices, diff.bids, self._bid_low, None)
        _apply_side(self._asks, self._ask_prices, diff.asks, None, self._ask_high)
        self._last_update_id = diff.final_update_id
        self._last_applied_ts_event_ns = diff.ts_event_ns
        self._bridged = True
        bid_prices, ask_prices = self._bid_prices, self._ask_prices
        if bid_prices and ask_prices and bid_prices[-1] >= ask_prices[0]:
            return ResyncReason.CROSSED
        # Only a truncated side can run dry into unknown levels; a side the snapshot had empty may stay empty.
        if (had_bids and not bid_prices and self._bid_low is not None) or (
            had_asks and not ask_prices and self._ask_high is not None
        ):
            return ResyncReason.SIDE_EXHAUSTED
        return None

    # -- snapshots ------------------------------------------------------------------------------------------

    def on_snapshot(self, snapshot: DepthSnapshot) -> BookUpdate:
        """Load a REST snapshot and replay the buffered diffs onto it."""
        if self._state is BookState.SYNCED:
            return SNAPSHOT_IGNORED
        last_id = snapshot.last_update_id
        spot = self._sequencing is Sequencing.SPOT
        buffer = self._buffer
        if buffer:
            first = buffer[0]
            # The buffer is one unbroken chain from its first diff, so only that diff can prove the snapshot
            # predates the stream (updates between the snapshot and the stream start were never seen).
            if spot:
                too_old = first.first_update_id > last_id + 1
            else:
                too_old = first.first_update_id > last_id and first.prev_final_update_id != last_id
            if too_old:
                return SNAPSHOT_TOO_OLD
        self._clear_book()
        self._load(snapshot)
        self._last_update_id = local_id = last_id
        self._state = BookState.SYNCED
        pending = list(buffer)
        buffer.clear()
        for index, diff in enumerate(pending):
            verdict = self._continues(diff, local_id)
            if verdict is None:
                continue  # already in the snapshot
            problem = self._apply(diff) if verdict else ResyncReason.SEQUENCE_GAP
            if problem is not None:
                # A non-continuing diff is unreachable for a chained buffer that passed the age check; kept as
                # a guard. Either way the book is discarded, and the still-chained rest is kept for the next try.
                update = self._gap(problem, diff)
                buffer.extend(pending[index + 1 :])
                return update
            local_id = diff.final_update_id
        if self._bid_prices and self._ask_prices and self._bid_prices[-1] >= self._ask_prices[0]:
            return self._gap(ResyncReason.CROSSED, None)
        if local_id == last_id:
            # Nothing replayed: the book is published as of the snapshot, so a later loss starts there. REST
            # snapshots carry no event time; their receipt time bounds it.
            self._last_applied_ts_event_ns = snapshot.ts_recv_ns
        return BookUpdate(UpdateKind.SYNCED, top_changed=True, last_update_id=self._last_update_id)

    def _load(self, snapshot: DepthSnapshot) -> None:
        for price, size in snapshot.bids:
            if size:
                self._bids[price] = size
        for price, size in snapshot.asks:
            if size:
                self._asks[price] = size
        self._bid_prices = sorted(self._bids)
        self._ask_prices = sorted(self._asks)
        # A side cut off at the requested depth is known only down to its deepest level; a shorter one is whole.
        depth = self._snapshot_depth
        if self._bid_prices and (depth is None or len(snapshot.bids) >= depth):
            self._bid_low = self._bid_prices[0]
        if self._ask_prices and (depth is None or len(snapshot.asks) >= depth):
            self._ask_high = self._ask_prices[-1]

    # -- reading --------------------------------------------------------------------------------------------

    def best(self) -> tuple[BookLevel, BookLevel] | None:
        """Best bid and best ask, or None unless synced with both sides non-empty."""
        if self._state is not BookState.SYNCED or not self._bid_prices or not self._ask_prices:
            return None
        bid, ask = self._bid_prices[-1], self._ask_prices[0]
        return BookLevel(price=bid, size=self._bids[bid]), BookLevel(price=ask, size=self._asks[ask])

    def top(self, n: int) -> tuple[tuple[BookLevel, ...], tuple[BookLevel, ...]]:
        """The best ``n`` levels per side: bids descending, asks ascending (empty unless synced)."""
        if self._state is not BookState.SYNCED or n <= 0:
            return (), ()
        bids = tuple(BookLevel(price=p, size=self._bids[p]) for p in reversed(self._bid_prices[-n:]))
        asks = tuple(BookLevel(price=p, size=self._asks[p]) for p in self._ask_prices[:n])
        return bids, asks

    def _event_time_ns(self, ts_recv_ns: int) -> int:
        # A spot REST snapshot carries no event time: until the first diff applies, our receipt time stands in.
        return self._last_applied_ts_event_ns if self._last_applied_ts_event_ns is not None else ts_recv_ns

    def snapshot_event(self, exchange: str, n: int, ts_recv_ns: int) -> BookSnapshot | None:
        """Top-``n`` snapshot for publishing, with the update id it reflects; None unless synced."""
        if self._state is not BookState.SYNCED:
            return None
        bids, asks = self.top(n)
        return BookSnapshot(
            exchange=exchange,
            symbol=self.symbol,
            bids=bids,
            asks=asks,
            sequence=self._last_update_id,
            ts_event_ns=self._event_time_ns(ts_recv_ns),
            ts_recv_ns=ts_recv_ns,
        )

    def quote_event(self, exchange: str, ts_recv_ns: int) -> Quote | None:
        """Best bid/offer for publishing; None unless synced with both sides non-empty."""
        best = self.best()
        if best is None:
            return None
        bid, ask = best
        return Quote(
            exchange=exchange,
            symbol=self.symbol,
            bid_price=bid.price,
            bid_size=bid.size,
            ask_price=ask.price,
            ask_size=ask.size,
            ts_event_ns=self._event_time_ns(ts_recv_ns),
            ts_recv_ns=ts_recv_ns,
        )
