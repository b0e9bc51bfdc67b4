"""The status columns from the collectors' totals: a collector stand-in publishes ~300 events/s into the feed's
statistics hash in a real Redis, and `kubectl get exchangefeeds` shows the rate and the last event's age."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.operator_harness import (
    apply_feed,
    feed_body,
    fresh_namespace,
    get_feed,
    kubectl,
    running_operator,
    wait_until,
)
from tickstrata.common.streams import COLLECTOR_STATS_EVENTS, COLLECTOR_STATS_LAST_RECV_NS, collector_stats_key
from tickstrata.localstack.kube import KubeCluster
from tickstrata.localstack.redis import RedisServer

EVENTS_PER_TICK = 30
TICK_SECS = 0.1  # 300 events/s


@pytest.fixture
def namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    with fresh_namespace(kube_cluster, "stats") as name:
        yield name


def publish(client: redis.Redis, key: str, stop: threading.Event) -> None:
    """What the collector's publisher does per batch: HINCRBY events, HSET last_recv_ns."""
    while not stop.is_set():
        client.hincrby(key, COLLECTOR_STATS_EVENTS, EVENTS_PER_TICK)
        client.hset(key, COLLECTOR_STATS_LAST_RECV_NS, str(time.time_ns()))
        time.sleep(TICK_SECS)


def test_events_per_second_and_last_event_age(
    kube_cluster: KubeCluster, namespace: str, redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    key = collector_stats_key(f"{namespace}.live")
    stop = threading.Event()
    writer = threading.Thread(target=publish, args=(redis_client, key, stop), daemon=True)
    writer.start()
    try:
        with running_operator(
            kube_cluster, namespace, tmp_path, stats_redis_url=redis_server.url, resync_interval_secs="2"
        ):
            apply_feed(kube_cluster, namespace, feed_body("live"))

            def measured() -> dict[str, Any] | None:
                status = (get_feed(kube_cluster, namespace, "live") or {}).get("status", {})
                return status if "eventsPerSec" in status and "lastEventAge" in status else None

            status = wait_until(measured, "eventsPerSec and lastEventAge in the status", timeout_secs=60)
            # ~300/s offered (its sleeps and a busy machine make it less); a 2 s window can catch one tick more (+15%).
            assert 100 <= status["eventsPerSec"] <= 400, status
            assert re.fullmatch(r"\d+(ms|s)", status["lastEventAge"]), status
            table = kubectl(kube_cluster, "get", "exchangefeeds", "live", "-n", namespace, "-o", "wide")
            header, row = table.splitlines()
            columns = dict(zip(header.split(), row.split(), strict=False))
            assert float(columns["EVENTS/S"]) > 0, table
            stop.set()
            writer.join()
            # Silence: the rate falls to 0 and the age grows.
            stopped = wait_until(
                lambda: (
                    s
                    if (s := (get_feed(kube_cluster, namespace, "live") or {}).get("status", {})).get("eventsPerSec")
                    == 0
                    else None
                ),
                "the rate to fall to 0",
                timeout_secs=30,
            )
            assert stopped["lastEventAge"].endswith("s"), stopped
    finally:
        stop.set()
