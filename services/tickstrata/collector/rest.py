"""The venue REST client and the request-weight budget every REST call of a process shares.

Binance counts request weight per IP in fixed one-minute windows (``X-MBX-USED-WEIGHT-1M`` reports the
running total), answers 429 with ``Retry-After`` when it is exceeded, and bans IPs that keep going (418,
2 minutes to 3 days). A snapshot storm (100 symbols resyncing at once, cryptofeed #558) must therefore
queue, not fire. Policy:

- ``RestBudget.acquire(weight)`` admits a request only if it fits under ``limit * (1 - safety_margin)`` in the
  current window, taking the larger of our own count and the venue's header (other processes on the same IP
  count too). Otherwise it waits, FIFO, for the next window. Waiting for weight always happens: it is
  bounded by one window per turn, and callers that cannot wait use ``asyncio.timeout``.
- A 429 pauses every request of the venue until ``Retry-After`` (default: the end of the window); a 418 does
  the same until the ban ends (default 120 s, Binance's shortest) and is logged as an error. A request that
  would have to wait longer than ``max_wait_secs`` for such a pause raises ``RateLimitedError`` /
  ``BannedError`` at once, without touching the venue.
- ``RestClient.get`` retries 5xx (GET is idempotent; Binance says 5xx means "status unknown"), timeouts and
  connection errors with capped, jittered exponential backoff, re-acquiring weight for every attempt (the
  venue counts each). The request that got the 429 retries after the pause; the one that got the 418 raises
  ``BannedError``. Other 4xx raise ``RestError`` with the venue's error code (``-1121`` invalid symbol) at once.
- Bodies are read as they arrive and refused past ``max_body_bytes``, on the wire and decompressed alike
  (``rest_body``): ``BodyRefusedError`` (not retried) for a body too large, an encoding we did not ask for, or a
  2xx that is not JSON (an HTML page from a proxy). It carries the body's head for the caller's quarantine.

Counters are plain attributes; the collector exports them as metrics.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Mapping
from typing import Final, Protocol

import aiohttp

from tickstrata.collector.rest_body import (
    ACCEPT_ENCODING,
    BodyReader,
    BodyRefused,
    is_json_content_type,
    parse_error_body,
)

logger = logging.getLogger(__name__)

USED_WEIGHT_HEADER: Final = "X-MBX-USED-WEIGHT-1M"
DEFAULT_BAN_SECS: Final = 120.0  # Binance's shortest ban, for a 418 without Retry-After
DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
_READ_CHUNK_BYTES: Final = 64 * 1024
_HEAD_BYTES: Final = 64 * 1024  # of a refused body, kept for the caller's quarantine record


class Clock(Protocol):
    """Wall time (windows align to the venue's minutes) and sleeping; injectable for virtual-time tests."""

    def time(self) -> float: ...
    async def sleep(self, secs: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    async def sleep(self, secs: float) -> None:
        await asyncio.sleep(secs)


class RestError(Exception):
    """A REST request failed. ``status`` is None for transport failures, ``code`` the venue's error code."""

    def __init__(self, status: int | None, code: int | None, msg: str) -> None:
        super().__init__(f"HTTP {status} code {code}: {msg}" if status is not None else msg)
        self.status = status
        self.code = code
        self.msg = msg


class RestUnavailableError(RestError):
    """5xx, timeouts or connection errors persisted through every attempt."""


class BodyRefusedError(RestError):
    """A response body broke a limit (``kind``: too_large, encoding, content_type); ``head`` is its first bytes."""

    def __init__(self, status: int, kind: str, msg: str, head: bytes) -> None:
        super().__init__(status, None, msg)
        self.kind = kind
        self.head = head


class RateLimitedError(RestError):
    """The venue asked us to pause (429) for longer than the caller is willing to wait."""

    def __init__(self, msg: str, *, resume_at: float, code: int | None = None) -> None:
        super().__init__(429, code, msg)
        self.resume_at = resume_at  # wall-clock seconds


class BannedError(RestError):
    """The venue banned this IP (418); nothing is sent to it until ``banned_until``."""

    def __init__(self, msg: str, *, banned_until: float, code: int | None = None) -> None:
        super().__init__(418, code, msg)
        self.banned_until = banned_until  # wall-clock seconds


def _parse_retry_after_secs(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        secs = float(value)
    except ValueError:
        return None  # an HTTP-date: Binance sends seconds; fall back to the default pause
    return secs if math.isfinite(secs) and secs >= 0 else None


class RestBudget:
    """One per venue per process: the request weight left in the venue's current window, and its pauses."""

    def __init__(
        self,
        venue: str,
        *,
        limit_weight: int,
        window_secs: float = 60.0,
        safety_margin: float = 0.1,
        clock: Clock | None = None,
    ) -> None:
        if limit_weight <= 0 or window_secs <= 0 or not 0 <= safety_margin < 1:
            raise ValueError("limit_weight and window_secs must be positive and safety_margin within [0, 1)")
        self.venue = venue
        self.limit_weight = limit_weight
        self.window_secs = window_secs
        # The margin absorbs clock skew at window edges and requests in flight from other processes.
        self.capacity_weight = max(1, math.floor(limit_weight * (1 - safety_margin)))
        self._clock: Clock = clock or SystemClock()
        self._lock = asyncio.Lock()  # FIFO: a heavy snapshot cannot be starved by a stream of light requests
        self._window = -1
        self._used_weight = 0
        self.paused_until = 0.0  # wall-clock seconds; 429
        self.banned_until = 0.0  # wall-clock seconds; 418
        # Counters (monotonic totals) for metrics.
        self.weight_used_total = 0
        self.waits_total = 0
        self.wait_secs_total = 0.0
        self.rate_limited_total = 0
        self.banned_total = 0

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def used_weight(self) -> int:
        """Weight used in the current window, as far as we know (a gauge)."""
        self._roll(self._clock.time())
        return self._used_weight

    def _roll(self, now: float) -> None:
        window = math.floor(now / self.window_secs)
        if window != self._window:
            self._window = window
            self._used_weight = 0

    def _window_end(self, now: float) -> float:
        return (math.floor(now / self.window_secs) + 1) * self.window_secs

    def _pause_error(self, now: float, max_wait_secs: float) -> RestError | None:
        if self.banned_until - now > max_wait_secs:
            return BannedError(
                f"{self.venue}: IP banned for {self.banned_until - now:.0f} more s", banned_until=self.banned_until
            )
        if self.paused_until - now > max_wait_secs:
            return RateLimitedError(
                f"{self.venue}: rate limited for {self.paused_until - now:.1f} more s", resume_at=self.paused_until
            )
        return None

    async def acquire(self, weight: int, *, max_wait_secs: float = 60.0) -> None:
        """Wait until ``weight`` fits in the window and no pause is in force, then count it as used.

        Raises ``BannedError``/``RateLimitedError`` if a 418/429 pause outlasts ``max_wait_secs`` (0: never wait
        for one; ``math.inf``: sit out even a 3-day ban), ``ValueError`` if ``weight`` exceeds what one window
        can ever admit.
        """
        if not 0 < weight <= self.capacity_weight:
            raise ValueError(f"weight {weight} outside (0, {self.capacity_weight}] for {self.venue}")
        clock = self._clock
        started = clock.time()
        error = self._pause_error(started, max_wait_secs)
        if error is not None:  # fail fast, without queueing behind requests that will wait
            raise error
        waited = False
        async with self._lock:
            while True:
                now = clock.time()
                pause_end = max(self.paused_until, self.banned_until)
                if pause_end > now:
                    error = self._pause_error(now, max_wait_secs)
                    if error is not None:
                        raise error
                    waited = True
                    await clock.sleep(pause_end - now)
                    continue
                self._roll(now)
                if self._used_weight + weight <= self.capacity_weight:
                    self._used_weight += weight
                    self.weight_used_total += weight
                    if waited:
                        self.waits_total += 1
                        self.wait_secs_total += now - started
                    return
                waited = True
                await clock.sleep(self._window_end(now) - now)

    def record_used_weight(self, used_weight: int) -> None:
        """Adopt the venue's count for the window (``X-MBX-USED-WEIGHT-1M``) when it exceeds ours."""
        self._roll(self._clock.time())
        # Never lower: a response can predate requests we have admitted since.
        self._used_weight = max(self._used_weight, used_weight)

    def rate_limited(self, retry_after_secs: float | None) -> float:
        """Record a 429: pause every request until ``Retry-After`` (or the window's end). Returns the end."""
        now = self._clock.time()
        self.rate_limited_total += 1
        pause_end = now + retry_after_secs if retry_after_secs is not None else self._window_end(now)
        self.paused_until = max(self.paused_until, pause_end)
        logger.warning(
            "%s answered 429: pausing all REST requests for %.1f s",
            self.venue,
            self.paused_until - now,
            extra={"exchange": self.venue, "retry_after_secs": retry_after_secs},
        )
        return self.paused_until

    def banned(self, retry_after_secs: float | None) -> float:
        """Record a 418 ban: nothing is sent until it ends. Returns the end."""
        now = self._clock.time()
        self.banned_total += 1
        ban_end = now + (retry_after_secs if retry_after_secs is not None else DEFAULT_BAN_SECS)
        self.banned_until = max(self.banned_until, ban_end)
        logger.error(
            "%s banned this IP (418) for %.0f s: all REST requests blocked until then",
            self.venue,
            self.banned_until - now,
            extra={"exchange": self.venue, "retry_after_secs": retry_after_secs, "banned_until": self.banned_until},
        )
        return self.banned_until


class RestClient:
    """GET requests against one venue base URL, under the venue's shared ``RestBudget``."""

    def __init__(
        self,
        base_url: str,
        budget: RestBudget,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_secs: float = 10.0,
        max_attempts: int = 4,
        backoff_initial_secs: float = 0.5,
        backoff_max_secs: float = 8.0,
        max_wait_secs: float = 60.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1 or max_body_bytes < 1:
            raise ValueError(f"max_attempts and max_body_bytes must be >= 1, got {max_attempts}, {max_body_bytes}")
        self.base_url = base_url.rstrip("/")
        self.budget = budget
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_secs)
        self.max_attempts = max_attempts
        self._backoff_initial_secs = backoff_initial_secs
        self._backoff_max_secs = backoff_max_secs
        self.max_wait_secs = max_wait_secs
        self.max_body_bytes = max_body_bytes
        self._rng = rng or random.Random()
        # Counters for metrics (429/418 and weight live on the shared budget).
        self.requests_total = 0
        self.retries_total = 0
        self.server_errors_total = 0
        self.transport_errors_total = 0
        self.bodies_refused_total = 0

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _backoff_secs(self, attempt: int) -> float:
        # Equal jitter: at least half the exponential step (never a tight retry loop), the rest random so
        # collectors do not retry in lockstep.
        step = min(self._backoff_max_secs, self._backoff_initial_secs * (1 << min(attempt - 1, 30)))
        return step / 2 + self._rng.uniform(0, step / 2)

    async def get(
        self,
        path: str,
        params: Mapping[str, str | int] | None = None,
        *,
        weight: int,
        max_wait_secs: float | None = None,
    ) -> bytes:
        """GET ``path`` and return the body of a 2xx response; see the module docstring for the policy.

        ``weight`` is the endpoint's documented request weight; ``max_wait_secs`` bounds how long to sit out a
        429/418 pause (None: the client's default; 0: fail at once; ``math.inf``: wait out even a ban).
        """
        if self._session is None:
            self._session = aiohttp.ClientSession()
        session = self._session
        budget = self.budget
        url = self.base_url + path
        max_wait = self.max_wait_secs if max_wait_secs is None else max_wait_secs
        attempt = 0
        while True:
            attempt += 1
            await budget.acquire(weight, max_wait_secs=max_wait)
            self.requests_total += 1
            try:
                async with session.get(
                    url,
                    params=params,
                    timeout=self._timeout,
                    headers={"Accept-Encoding": ACCEPT_ENCODING},
                    auto_decompress=False,  # rest_body inflates, within the cap
                ) as response:
                    status, body, used_header, retry_after = await self._receive(path, response)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.transport_errors_total += 1
                detail = f"GET {path}: {type(exc).__name__}: {exc}"
                if attempt >= self.max_attempts:
                    raise RestUnavailableError(None, None, detail) from exc
                logger.warning("retrying %s (attempt %d)", detail, attempt, extra={"exchange": budget.venue})
                await self._retry_pause(attempt)
                continue
            if used_header is not None and used_header.isdigit():
                budget.record_used_weight(int(used_header))
            if 200 <= status < 300:
                return body
            code, msg = parse_error_body(body)
            if status == 429:
                resume_at = budget.rate_limited(retry_after)
                if attempt >= self.max_attempts:
                    raise RateLimitedError(f"GET {path}: {msg}", resume_at=resume_at, code=code)
                self.retries_total += 1
                continue  # acquire() sits out the pause, or raises if it is longer than max_wait
            if status == 418:
                banned_until = budget.banned(retry_after)
                raise BannedError(f"GET {path}: {msg}", banned_until=banned_until, code=code)
            if status >= 500:
                self.server_errors_total += 1
                if attempt >= self.max_attempts:
                    raise RestUnavailableError(status, code, f"GET {path}: {msg}")
                logger.warning(
                    "retrying GET %s after HTTP %d (attempt %d)",
                    path,
                    status,
                    attempt,
                    extra={"exchange": budget.venue},
                )
                await self._retry_pause(attempt)
                continue
            raise RestError(status, code, f"GET {path}: {msg}")

    async def _receive(
        self, path: str, response: aiohttp.ClientResponse
    ) -> tuple[int, bytes, str | None, float | None]:
        """Status, body (read within the cap), used-weight header and Retry-After; ``BodyRefusedError`` if the
        body breaks a limit or a 2xx is not JSON."""
        status, headers = response.status, response.headers
        try:
            declared = response.content_length
            if declared is not None and declared > self.max_body_bytes:
                raise BodyRefused("too_large", f"Content-Length {declared} is over {self.max_body_bytes} bytes")
            reader = BodyReader(self.max_body_bytes, headers.get("Content-Encoding"), head_bytes=_HEAD_BYTES)
            async for chunk in response.content.iter_chunked(_READ_CHUNK_BYTES):
                reader.feed(chunk)
            body = reader.finish()
            content_type = headers.get("Content-Type")
            if 200 <= status < 300 and not is_json_content_type(content_type):
                raise BodyRefused("content_type", f"content type {content_type!r}, not JSON", body[:_HEAD_BYTES])
        except BodyRefused as refused:
            raise self._refused(path, status, refused) from None
        retry_after = _parse_retry_after_secs(headers.get("Retry-After"))
        return status, body, headers.get(USED_WEIGHT_HEADER), retry_after

    def _refused(self, path: str, status: int, refused: BodyRefused) -> BodyRefusedError:
        """Count and log a refused body; leaving the response unread closes its connection, not the client."""
        self.bodies_refused_total += 1
        logger.warning(
            "refused the body of GET %s (HTTP %d): %s",
            path,
            status,
            refused.detail,
            extra={"exchange": self.budget.venue, "kind": refused.kind, "max_body_bytes": self.max_body_bytes},
        )
        return BodyRefusedError(status, refused.kind, f"GET {path}: {refused.detail}", refused.head)

    async def _retry_pause(self, attempt: int) -> None:
        self.retries_total += 1
        await self.budget.clock.sleep(self._backoff_secs(attempt))
