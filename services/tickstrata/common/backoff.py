"""Capped exponential backoff with jitter: the one retry schedule every service uses. Pure (the caller sleeps).

Equal jitter: each delay is at least half of the exponential step, so a retry loop is never tight, and the rest
is random, so many processes retrying the same server do not retry in lockstep.
"""

from __future__ import annotations

import random
from typing import Final

_MAX_DOUBLINGS: Final = 30  # 2**30 steps is far past any cap; bounds the arithmetic


def backoff_delay_secs(attempt: int, *, initial_secs: float, max_secs: float, rng: random.Random) -> float:
    """The delay before retry number ``attempt`` (0-based): in [step/2, step], step = min(max, initial * 2**attempt)."""
    step = min(max_secs, initial_secs * float(2 ** min(max(attempt, 0), _MAX_DOUBLINGS)))
    return step / 2 + rng.uniform(0, step / 2)


class Backoff:
    """The delays of one retry loop: `next_delay_secs()` after each failure, `reset()` after a success."""

    def __init__(self, initial_secs: float, max_secs: float, *, rng: random.Random | None = None) -> None:
        if not 0 < initial_secs <= max_secs:
            raise ValueError(f"backoff needs 0 < initial_secs <= max_secs, got {initial_secs} and {max_secs}")
        self._initial_secs = initial_secs
        self._max_secs = max_secs
        self._rng = rng or random.Random()
        self.attempt = 0

    def next_delay_secs(self) -> float:
        delay = backoff_delay_secs(
            self.attempt, initial_secs=self._initial_secs, max_secs=self._max_secs, rng=self._rng
        )
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
