"""Binance's REST request-weight limiter: used weight per minute, 429 with Retry-After, then 418 bans.

Binance counts weight per IP per calendar minute and reports it in `X-MBX-USED-WEIGHT-1M`. Going over the limit
answers 429 with `Retry-After` (seconds); a client that keeps calling while told to back off is banned with 418
and a longer `Retry-After`, and repeated bans grow longer. Pure: every call takes the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_MINUTE_MS: Final = 60_000
_MAX_BAN_SECS: Final = 3 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Decision:
    status: int  # 200 (go ahead), 429 or 418
    used_weight: int
    retry_after_secs: int = 0
    banned_until_ms: int = 0


class WeightLimiter:
    def __init__(self, *, limit_per_min: int, ban_secs: int) -> None:
        self.limit_per_min = limit_per_min
        self.ban_secs = ban_secs
        self.used_weight = 0
        self._minute = -1
        self.backoff_until_ms = 0
        self.banned_until_ms = 0
        self.bans = 0
        self._forced_429: list[int] = []  # Retry-After of each forced 429 still to answer
        self.responses: dict[str, int] = {}

    def force_429(self, count: int, retry_after_secs: int) -> None:
        """Answer the next `count` requests with 429 (a fault), as if the limit had been hit."""
        self._forced_429.extend([retry_after_secs] * count)

    def used(self, now_ms: int) -> int:
        self._roll(now_ms)
        return self.used_weight

    def _roll(self, now_ms: int) -> None:
        minute = now_ms // _MINUTE_MS
        if minute != self._minute:
            self._minute = minute
            self.used_weight = 0

    def check(self, now_ms: int, weight: int) -> Decision:
        self._roll(now_ms)
        decision = self._decide(now_ms, weight)
        key = str(decision.status)
        self.responses[key] = self.responses.get(key, 0) + 1
        return decision

    def _decide(self, now_ms: int, weight: int) -> Decision:
        if now_ms < self.banned_until_ms:
            return Decision(418, self.used_weight, _ceil_secs(self.banned_until_ms - now_ms), self.banned_until_ms)
        if now_ms < self.backoff_until_ms:
            # Called again while told to back off: ban, twice as long each time (Binance: 2 minutes to 3 days).
            self.bans += 1
            ban_secs = min(_MAX_BAN_SECS, self.ban_secs * 2 ** (self.bans - 1))
            self.banned_until_ms = now_ms + ban_secs * 1000
            self.backoff_until_ms = 0
            return Decision(418, self.used_weight, ban_secs, self.banned_until_ms)
        self.used_weight += weight
        if self._forced_429:
            retry = self._forced_429.pop(0)
            self.backoff_until_ms = now_ms + retry * 1000
            return Decision(429, self.used_weight, retry)
        if self.used_weight > self.limit_per_min:
            next_minute_ms = (now_ms // _MINUTE_MS + 1) * _MINUTE_MS
            self.backoff_until_ms = next_minute_ms
            return Decision(429, self.used_weight, _ceil_secs(next_minute_ms - now_ms))
        return Decision(200, self.used_weight)


def _ceil_secs(ms: int) -> int:
    return max(1, -(-ms // 1000))
