"""An in-process copy of the latest-price cache, kept coherent by Redis invalidations. Pure: no I/O here.

Why: a GetLatestPrice answered from the process never pays a Redis round trip (nor redis-py's per-command cost),
which is most of the service's share of the call's latency; the all-venues path also stops SCANning, because
the mirror keeps its own index of the venues holding each symbol.

How it stays coherent (the I/O is in ``mirror_tracker.py``): one connection has server-assisted client-side
caching on in broadcast mode for the ``px:`` prefix (``CLIENT TRACKING on BCAST PREFIX px:``), so Redis names
every ``px:*`` key that is set, deleted, expired, evicted or flushed. A named key is dropped from the copy at
once (the next read goes to Redis, or a background refresh puts the new value back) and its venue joins the
index. Values enter the copy only from reads issued while the mirror is live, and a read's reply is not stored
if an invalidation of that key arrived after the read was sent (``Seq``): a reply that raced a newer write is
served to its own caller (it was Redis's value when read) but never kept.

Bound on staleness: the tracker pings on the invalidation connection; a pong arrives after every invalidation
Redis emitted before it, so once the pong of a ping sent at P is processed, every write Redis made before P has
been applied. The copy is served only while such a P is at most ``max_lag_ns`` old (`serves`); otherwise (and
whenever the tracking connection is down) every read goes to Redis, which fails with UNAVAILABLE when Redis is
down. So a served value is never superseded in Redis for longer than ``max_lag_ns`` plus one Redis event-loop
iteration (broadcast invalidations leave at the end of the iteration of the write).

Bad values: with a `check`, a value read back that must not be served (undecodable, or a price outside the
stored bounds) is never kept; the copy keeps only the reason (`rejected`), which is forgotten like a value when
the key is invalidated, so a bad key costs neither memory nor a Redis read per call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final

from tickstrata.common.streams import parse_latest_price_key

KEY_PREFIX: Final = "px:"
MAX_REASON_CHARS: Final = 200

ValueCheck = Callable[[bytes], str | None]
"""Why a raw cache value must not be kept (None: it may)."""

Seq = int
"""Position in the mirror's history of invalidations and resets: taken when a read is sent (`read_started`)."""


class PriceMirror:
    """Raw cache values by key, the venues of each symbol, and what makes serving them safe."""

    def __init__(self, *, max_lag_ns: int, check: ValueCheck | None = None) -> None:
        if max_lag_ns <= 0:
            raise ValueError(f"max_lag_ns must be positive, got {max_lag_ns}")
        self.max_lag_ns = max_lag_ns
        self._check = check
        self._values: dict[str, bytes] = {}
        self._rejected: dict[str, str] = {}
        """Keys whose current value failed `check`, with the reason (the value itself is not kept)."""
        self._venues: dict[str, set[str]] = {}
        self._indexed: set[str] = set()
        """Keys whose venue is in `_venues`: an invalidation of a known key (the usual case) skips parsing it."""
        self._invalidated_at: dict[str, Seq] = {}
        self._seq: Seq = 0
        self._floor: Seq = 0
        self._live = False
        self._confirmed_ns: int | None = None

    # ---- what the tracker tells the mirror ----

    def reset(self) -> None:
        """Tracking is (re)starting or was lost: forget everything and refuse to serve until `go_live`."""
        self._live = False
        self._confirmed_ns = None
        self._values.clear()
        self._rejected.clear()
        self._venues.clear()
        self._indexed.clear()
        self._invalidated_at.clear()
        self._seq += 1
        self._floor = self._seq  # replies to reads sent before now may predate lost invalidations

    def go_live(self, venue_keys: Iterable[bytes | str]) -> None:
        """Tracking is on and `venue_keys` (a SCAN made after it was turned on) seeded the venue index.

        Reads sent from now on may fill the copy; it serves once the first pong `confirm`s it.
        """
        for key in venue_keys:
            self._add_venue(key)
        self._live = True

    def confirm(self, ping_sent_ns: int) -> None:
        """The pong of a ping sent at `ping_sent_ns` arrived: every invalidation before it has been applied."""
        if self._confirmed_ns is None or ping_sent_ns > self._confirmed_ns:
            self._confirmed_ns = ping_sent_ns

    def invalidate(self, keys: Iterable[bytes | str] | None) -> list[str]:
        """Apply one invalidation message (None: the database was flushed); return the dropped keys, which the
        tracker may refresh (they were being read, so they will likely be read again)."""
        self._seq += 1
        if keys is None:
            self._values.clear()
            self._rejected.clear()
            self._venues.clear()
            self._indexed.clear()
            self._invalidated_at.clear()
            self._floor = self._seq
            return []
        dropped: list[str] = []
        seq = self._seq
        for raw in keys:
            key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            self._invalidated_at[key] = seq
            self._rejected.pop(key, None)
            if self._values.pop(key, None) is not None:
                dropped.append(key)
            if key not in self._indexed:
                self._add_venue(key)
        return dropped

    # ---- what the RPCs ask ----

    def serves(self, now_ns: int) -> bool:
        """True when the copy may answer: live, and confirmed coherent within `max_lag_ns`."""
        return self._live and self._confirmed_ns is not None and now_ns - self._confirmed_ns <= self.max_lag_ns

    def venues(self, symbol: str) -> list[str]:
        """The exchanges holding `symbol`, sorted; meaningful only while `serves()`."""
        return sorted(self._venues.get(symbol, ()))

    def holds(self, exchange: str, symbol: str) -> bool:
        """False when Redis has no key for (exchange, symbol), as far as the index knows (every creation of a
        key is invalidated, so the index has every key; it may still list one deleted since)."""
        return exchange in self._venues.get(symbol, ())

    def get(self, key: str) -> bytes | None:
        return self._values.get(key)

    def rejected(self, key: str) -> str | None:
        """Why the current value of `key` cannot be served, when a read found it bad (else None)."""
        return self._rejected.get(key)

    def read_started(self) -> Seq:
        """Call just before sending a read whose reply goes to `read_done`."""
        return self._seq

    def read_done(self, started: Seq, keys: Sequence[str], values: Sequence[bytes | str | None]) -> None:
        """Keep what a read returned, unless an invalidation (or a reset) came after it was sent."""
        if not self._live or started < self._floor:
            return
        for key, value in zip(keys, values, strict=True):
            if self._invalidated_at.get(key, -1) > started:
                continue
            self._rejected.pop(key, None)
            if value is None:
                self._values.pop(key, None)
                self._drop_venue(key)
                continue
            raw = value if isinstance(value, bytes) else value.encode()
            problem = None if self._check is None else self._check(raw)
            if problem is None:
                self._values[key] = raw
            else:
                self._values.pop(key, None)
                self._rejected[key] = problem[:MAX_REASON_CHARS]

    def __len__(self) -> int:
        return len(self._values)

    def _add_venue(self, key: bytes | str) -> None:
        text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if text in self._indexed:
            return
        try:
            exchange, symbol = parse_latest_price_key(text)
        except ValueError:
            return  # not a well-formed px:<exchange>:<symbol> key: never a venue
        self._venues.setdefault(symbol, set()).add(exchange)
        self._indexed.add(text)

    def _drop_venue(self, key: str) -> None:
        try:
            exchange, symbol = parse_latest_price_key(key)
        except ValueError:
            return
        self._indexed.discard(key)
        exchanges = self._venues.get(symbol)
        if exchanges is not None:
            exchanges.discard(exchange)
            if not exchanges:
                del self._venues[symbol]
