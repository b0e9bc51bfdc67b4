"""Events/s and last-event age for the ExchangeFeed status columns, from the collectors' totals in Redis.

Each collector adds its published events to the hash `stats:collector:<namespace>.<feed>` in the same round trip
as the events (`events`, `last_recv_ns`). The operator samples it once per resync interval: the rate is the
difference of two samples over the time between them, so it is an average over the interval, never a guess.
The pure part is `FeedStats`; `StatsReader` is the Redis edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis

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


class StatsReader:
    """Reads the statistics hashes of many feeds in one pipelined round trip (sync: runs in a worker thread)."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECS, socket_connect_timeout=REDIS_TIMEOUT_SECS
        )

    def read(self, feeds: Sequence[str], taken_ns: int) -> Mapping[str, Sample | None]:
        pipe = self._client.pipeline(transaction=False)
        for feed in feeds:
            pipe.hmget(collector_stats_key(feed), [COLLECTOR_STATS_EVENTS, COLLECTOR_STATS_LAST_RECV_NS])
        replies = pipe.execute()
        return {feed: parse_sample(reply, taken_ns) for feed, reply in zip(feeds, replies, strict=True)}

    def close(self) -> None:
        self._client.close()
