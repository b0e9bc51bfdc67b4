"""Never let an older, open version of a candle overwrite its closed version in the hot tier.

A candle is upserted by its key (exchange, symbol, interval, open time): every update of the open minute replaces
the stored row, and the closed version, published last, ends it. Dedup keeps the *last write*, not the newest
version, so a re-delivery can regress a minute: after a Redis `kill -9` with `appendfsync everysec`, the entry
holding the closed version may be gone (its XADD was not yet on disk) while older entries with open versions come
back (their XACKs were lost too), and writing them again would leave the minute open for good. The validator had
already seen the closed candle, so nothing would ask for it again (the validator scenario caught this: one minute
of BTC left open after a day with a Redis crash).

The guard remembers, per writer process, the keys it has written closed (the most recent `capacity` of them: a few
hours of every instrument's minutes) and drops an open version of such a key. A closed version always passes (a
revision of a closed candle is newer by definition: the venue's REST candle, a rebuilt one).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from tickstrata.writer.wire import WireCandle, WireEvent

DEFAULT_CAPACITY: Final = 200_000
"""Keys remembered: 200 instruments x 1,000 minutes; about 30 MB at most."""

CandleKey = tuple[str, str, int, int]


class ClosedCandles:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._closed: OrderedDict[CandleKey, None] = OrderedDict()
        self.dropped = 0
        """Open versions dropped because their key was already written closed."""

    def keep(self, event: WireEvent) -> bool:
        """Whether to write `event` (any event: only candles are judged); call in write order."""
        if type(event) is not WireCandle:
            return True
        key = (event.exchange, event.symbol, event.interval_secs, event.open_time_ns)
        if event.closed:
            self._closed[key] = None
            self._closed.move_to_end(key)
            if len(self._closed) > self._capacity:
                self._closed.popitem(last=False)
            return True
        if key in self._closed:
            self.dropped += 1
            return False
        return True
