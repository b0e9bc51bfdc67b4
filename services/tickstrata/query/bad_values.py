"""Stored values the query service refuses to serve: the checks (pure), and how a refusal is counted and logged.

Redis and QuestDB are writable by more than our collector and writer, so whatever the query service reads back is
checked against the magnitude bounds shared with the collector (`tickstrata.common.bounds`) before it is formatted:
a price of ``1e999999999`` is finite, and formatting it would build a billion-character string. A refused value is
left out of the answer like a missing venue or row, counted (`tickstrata.query.bad_values`, attribute `source`),
and logged at most once per key per `LOG_INTERVAL_NS`, so a flood of bad values costs counter increments, not logs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Final, Literal

from opentelemetry.metrics import Meter

from tickstrata.common.bounds import decimal_in_range, float_in_range, is_positive_in_range
from tickstrata.common.streams import LatestPrice

Source = Literal["cache", "stream", "questdb"]
"""Where a bad value was read: the `px:*` cache, a `md:*:trades` stream (SubscribeLatest), or the hot tier."""

BAD_VALUES_METRIC: Final = "tickstrata.query.bad_values"
LOG_INTERVAL_NS: Final = 60 * 1_000_000_000
"""A key is logged again at most this often while it stays bad."""
MAX_LOGGED_KEYS: Final = 4096
"""Keys remembered by the log limiter: bounds its memory, and so the log lines per interval."""
MAX_REASON_CHARS: Final = 200

logger = logging.getLogger(__name__)


# ---- the checks (pure) -------------------------------------------------------------------------------------


def _decimal_problem(name: str, value: Decimal, *, positive: bool) -> str | None:
    if positive and not is_positive_in_range(value):
        return f"{name} is not a positive number within the stored bounds"
    if not positive and not (decimal_in_range(value) and value >= 0):
        return f"{name} is not a non-negative number within the stored bounds"
    return None


def latest_price_problem(value: LatestPrice) -> str | None:
    """Why a latest price (from the cache or a trade) must not be served, or None when it may be.

    The message never quotes the number: ``1e999999999`` formatted is what this check prevents."""
    problem = _decimal_problem("price", value.price, positive=True)
    if problem is None and value.size is not None:
        problem = _decimal_problem("size", value.size, positive=False)
    return problem


def float_problem(name: str, value: float | None, *, positive: bool = False, nullable: bool = False) -> str | None:
    """Why a DOUBLE read back from QuestDB must not be served (None: it may be). Null is NaN or None."""
    if value is None or math.isnan(value):  # NaN is QuestDB's null DOUBLE
        return None if nullable else f"{name} is null"
    if not float_in_range(value):
        return f"{name} is out of the stored bounds"
    if value < 0 or (positive and value == 0):
        return f"{name} must be {'positive' if positive else 'non-negative'}"
    return None


# ---- counting and logging ----------------------------------------------------------------------------------


class LogLimiter:
    """Says whether a key may be logged now: once per `interval_ns` per key, at most `max_keys` keys remembered
    (when full, keys not logged within the interval are forgotten; if none is, the line is dropped). Pure."""

    def __init__(self, *, interval_ns: int = LOG_INTERVAL_NS, max_keys: int = MAX_LOGGED_KEYS) -> None:
        self.interval_ns = interval_ns
        self.max_keys = max_keys
        self._logged_at: dict[str, int] = {}

    def allow(self, key: str, now_ns: int) -> bool:
        last = self._logged_at.get(key)
        if last is not None and now_ns - last < self.interval_ns:
            return False
        if last is None and len(self._logged_at) >= self.max_keys:
            self._logged_at = {k: t for k, t in self._logged_at.items() if now_ns - t < self.interval_ns}
            if len(self._logged_at) >= self.max_keys:
                return False
        self._logged_at[key] = now_ns
        return True


class BadValues:
    """Counts and logs refused values for one service instance (the counter comes from the service's meter)."""

    def __init__(self, meter: Meter, *, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._counter = meter.create_counter(
            BAD_VALUES_METRIC,
            unit="{value}",
            description="Stored values left out of an answer: undecodable, or outside the magnitude bounds",
        )
        self._limiter = LogLimiter()
        self._clock_ns = clock_ns
        self.count = 0
        """Refusals since start (the counter's value, for tests and the log)."""

    def record(self, source: Source, key: str, reason: str) -> None:
        """One value from `source` at `key` (a cache key, stream name or table/instrument) was left out."""
        self.count += 1
        self._counter.add(1, {"source": source})
        if self._limiter.allow(f"{source}:{key}", self._clock_ns()):
            logger.warning(
                "stored value left out: it cannot be served",
                extra={"source": source, "key": key[:MAX_REASON_CHARS], "reason": reason[:MAX_REASON_CHARS]},
            )
