"""Events/s, last-event age and completeness for the ExchangeFeed status columns, from Redis.

Each collector adds its published events to the hash `stats:collector:<namespace>.<feed>` in the same round trip
as the events (`events`, `last_recv_ns`). The operator samples it once per resync interval: the rate is the
difference of two samples over the time between them, so it is an average over the interval, never a guess.

The validator publishes per-symbol bucket counts in `quality:completeness:<exchange>` (the contract is
`tickstrata.common.completeness`); the feed's completeness is the sum over its symbols.

The pure parts are `status_fields` and `completeness_text`; `StatsReader` is the Redis edge, reading every
feed's statistics and every exchange's counts in one pipelined round trip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis

from tickstrata.common.backfill_routes import backfill_routes_key
from tickstrata.common.completeness import completeness_key, completeness_percent, sum_symbols
from tickstrata.common.streams import COLLECTOR_STATS_EVENTS, COLLECTOR_STATS_LAST_RECV_NS, collector_stats_key

NS_PER_SEC: Final = 1_000_000_000
REDIS_TIMEOUT_SECS: Final = 2.0


def stats_feed_name(namespace: str, name: str) -> str:
    """The collector's `COLLECTOR_FEED_NAME` for a feed: unique across namespaces."""
    return f"{namespace}.{name}"


@dataclass(frozen=True, slots=True)
class Sample:
    events: int
    last_recv_ns: int | None
    taken_ns: int


def parse_sample(fields: Sequence[bytes | str | None], taken_ns: int) -> Sample | None:
    """A sample from HMGET events last_recv_ns; None when the collector has published nothing yet."""
    events, last_recv = fields
    if events is None:
        return None
    return Sample(int(events), int(last_recv) if last_recv is not None else None, taken_ns)


def age_text(age_ns: int) -> str:
    """`850ms`, `12s`, `5m`, `3h`, `2d`: short enough for a printer column."""
    secs = max(age_ns, 0) / NS_PER_SEC
    if secs < 1:
        return f"{int(secs * 1000)}ms"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if secs >= size:
            return f"{int(secs // size)}{unit}"
    return f"{int(secs)}s"


def status_fields(previous: Sample | None, current: Sample | None, now_wall_ns: int) -> dict[str, Any]:
    """`eventsPerSec` (needs two samples; a counter that went back, a restarted Redis, gives none) and
    `lastEventAge`; an empty mapping when there is nothing to say."""
    fields: dict[str, Any] = {}
    if current is None:
        return fields
    if previous is not None and current.taken_ns > previous.taken_ns and current.events >= previous.events:
        rate = (current.events - previous.events) * NS_PER_SEC / (current.taken_ns - previous.taken_ns)
        fields["eventsPerSec"] = round(rate, 1)
    if current.last_recv_ns is not None:
        fields["lastEventAge"] = age_text(now_wall_ns - current.last_recv_ns)
    return fields


def completeness_text(fields: Mapping[bytes, bytes] | Mapping[str, str], symbols: Sequence[str]) -> str | None:
    """`status.completeness` of a feed from its exchange's completeness hash: the counts of `symbols` summed, as
    `99.999809%` (six decimals, rounded down: a single missing minute shows). None when the validator has counted
    none of them yet (an empty column, not "0%"). A malformed count of one of them raises `ValueError`."""
    widened: dict[bytes | str, bytes | str] = dict(fields.items())
    counts = sum_symbols(widened, symbols)
    return None if counts is None else f"{completeness_percent(counts)}%"


@dataclass(frozen=True, slots=True)
class Reading:
    """One round trip's worth: each feed's sample, and each exchange's completeness hash (empty when absent; a
    Redis error instead of the fields when the key holds something else than a hash)."""

    samples: Mapping[str, Sample | None]
    completeness: Mapping[str, Mapping[bytes, bytes] | redis.RedisError]


class StatsReader:
    """Reads the statistics hashes of many feeds and the completeness hashes of their exchanges in one pipelined
    round trip (sync: runs in a worker thread)."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECS, socket_connect_timeout=REDIS_TIMEOUT_SECS
        )

    def read(self, feeds: Sequence[str], exchanges: Sequence[str], taken_ns: int) -> Reading:
        pipe = self._client.pipeline(transaction=False)
        for feed in feeds:
            pipe.hmget(collector_stats_key(feed), [COLLECTOR_STATS_EVENTS, COLLECTOR_STATS_LAST_RECV_NS])
        for exchange in exchanges:
            pipe.hgetall(completeness_key(exchange))
        # Errors come back in place: a key of the wrong type spoils its own reply, not the whole reading.
        replies = pipe.execute(raise_on_error=False)
        stats, counts = replies[: len(feeds)], replies[len(feeds) :]
        for reply in stats:
            if isinstance(reply, Exception):
                raise reply
        return Reading(
            samples={feed: parse_sample(reply, taken_ns) for feed, reply in zip(feeds, stats, strict=True)},
            completeness={
                exchange: reply if isinstance(reply, redis.RedisError) else dict(reply)
                for exchange, reply in zip(exchanges, counts, strict=True)
            },
        )

    def write_routes(self, routes: Mapping[str, Mapping[str, str]], ttl_secs: int) -> None:
        """Replace each exchange's routes hash atomically, with a time to live (a deleted feed's routes go)."""
        pipe = self._client.pipeline(transaction=True)
        for exchange, by_symbol in routes.items():
            key = backfill_routes_key(exchange)
            pipe.delete(key)
            fields: dict[str | bytes, str | bytes] = dict(by_symbol.items())
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's Mapping is invariant in its key
            pipe.expire(key, ttl_secs)
        if routes:
            pipe.execute()

    def close(self) -> None:
        self._client.close()
