"""The market clock: what "now" means for event times. Wall time, unless a scaled clock is shared by every process.

A scaled clock replays a backdated day fast (the validator's scenario test): the simulator's markets, the
collectors' receive times and gap windows, and the validator's watermark all read

    market now = start + (wall now - anchor) * speed

from one environment variable, ``TICKSTRATA_MARKET_CLOCK="<anchor_wall_ms>:<start_ms>:<speed>"``, set alike for
every process of a run. Because each process computes it from the same wall clock, they agree to within the
machine's clock resolution; a minute that ended for the simulator has ended for the collector that asks about it.

Only event time is scaled. Everything that protects a real peer stays on the wall clock whatever the variable
says: REST weight windows and ``Retry-After``, WebSocket pings, pong deadlines and incoming-message limits,
reconnect backoff, timeouts. A venue's limits hold per real second, so a fast replay cannot hide a ban.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

MARKET_CLOCK_ENV: Final = "TICKSTRATA_MARKET_CLOCK"
NS_PER_MS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class ScaledClock:
    anchor_wall_ms: int
    start_ms: int
    speed: float

    def now_ns(self, wall_ns: int | None = None) -> int:
        wall = time.time_ns() if wall_ns is None else wall_ns
        return self.start_ms * NS_PER_MS + round((wall - self.anchor_wall_ms * NS_PER_MS) * self.speed)

    def wall_secs(self, market_secs: float) -> float:
        """How long `market_secs` of market time takes on the wall clock."""
        return market_secs / self.speed

    def env_value(self) -> str:
        return f"{self.anchor_wall_ms}:{self.start_ms}:{self.speed:g}"


def parse_market_clock(value: str) -> ScaledClock:
    """``<anchor_wall_ms>:<start_ms>:<speed>``; raises ValueError naming the variable on anything else."""
    parts = value.strip().split(":")
    try:
        if len(parts) != 3:
            raise ValueError("three fields expected")
        clock = ScaledClock(int(parts[0]), int(parts[1]), float(parts[2]))
    except ValueError as error:
        raise ValueError(
            f"{MARKET_CLOCK_ENV} must be '<anchor_wall_ms>:<start_ms>:<speed>' (e.g. '1764720000000:1764633600000:60'):"
            f" {error}"
        ) from None
    if not clock.speed > 0 or clock.speed > 10_000:
        raise ValueError(f"{MARKET_CLOCK_ENV}: speed must be in (0, 10000], got {clock.speed:g}")
    return clock


def scaled_clock_from_env(environ: Mapping[str, str] | None = None) -> ScaledClock | None:
    value = (os.environ if environ is None else environ).get(MARKET_CLOCK_ENV, "").strip()
    return parse_market_clock(value) if value else None


# Read once at import: a process runs on one clock for its whole life, and a malformed value stops it at start.
SCALED_CLOCK: Final = scaled_clock_from_env()

market_time_ns: Callable[[], int] = SCALED_CLOCK.now_ns if SCALED_CLOCK is not None else time.time_ns
"""Now, in event time (ns since the epoch). Wall time unless ``TICKSTRATA_MARKET_CLOCK`` is set."""


def market_time_ms() -> int:
    return market_time_ns() // NS_PER_MS


def market_speed() -> float:
    """Market seconds per wall second (1 on the wall clock)."""
    return SCALED_CLOCK.speed if SCALED_CLOCK is not None else 1.0
