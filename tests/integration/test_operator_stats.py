"""The status columns from Redis: a collector stand-in publishes ~300 events/s into the feed's statistics hash in a
real Redis, and `kubectl get exchangefeeds` shows the rate and the last event's age; a validator stand-in writes
per-symbol bucket counts into the exchange's completeness hash, and the Completeness column shows the feed's share."""

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
    printer_columns,
    running_operator,
    wait_converged,
    wait_until,
)
from tickstrata.common.backfill_routes import backfill_routes_key
from tickstrata.common.completeness import FIELD_UPDATED_NS, FIELD_WINDOW_SECS, BucketCounts, completeness_key
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


YEAR_MINUTES = 525_600
RESYNC_SECS = 2
MALFORMED_WARNING = "completeness counts malformed"


def _status(kube_cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    return dict((get_feed(kube_cluster, namespace, name) or {}).get("status") or {})


def _completeness_is(kube_cluster: KubeCluster, namespace: str, name: str, text: str) -> dict[str, Any] | None:
    status = _status(kube_cluster, namespace, name)
    return status if status.get("completeness") == text else None


def test_the_completeness_column_fills_from_the_validator_s_counts(
    kube_cluster: KubeCluster, namespace: str, redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    key = completeness_key("binance")
    with running_operator(
        kube_cluster, namespace, tmp_path, stats_redis_url=redis_server.url, resync_interval_secs=str(RESYNC_SECS)
    ) as operator:
        apply_feed(kube_cluster, namespace, feed_body("done"))  # binance spot: BTC-USDT, ETH-USDT
        wait_converged(kube_cluster, namespace, "done")
        # Counts for other symbols and another exchange only: nothing to say about this feed, so nothing said.
        redis_client.hset(key, mapping={"SOL-USDT": BucketCounts(missing=5).encode(), FIELD_WINDOW_SECS: "86400"})
        redis_client.hset(completeness_key("binance-usdm"), "BTC-USDT-PERP", BucketCounts(missing=5).encode())
        time.sleep(2.5 * RESYNC_SECS)
        assert "completeness" not in _status(kube_cluster, namespace, "done")
        (row,) = printer_columns(kubectl(kube_cluster, "get", "exchangefeeds", "done", "-n", namespace))
        assert row["COMPLETENESS"] == ""

        # A year of two symbols, one minute missing in BTC-USDT; pending minutes are not counted either way.
        redis_client.hset(
            key,
            mapping={
                "BTC-USDT": BucketCounts(present=YEAR_MINUTES - 3, backfilled=2, missing=1).encode(),
                "ETH-USDT": BucketCounts(present=YEAR_MINUTES - 7, exchange_empty=7, pending=30).encode(),
                FIELD_UPDATED_NS: str(time.time_ns()),
            },
        )
        wait_until(
            lambda: _completeness_is(kube_cluster, namespace, "done", "99.999904%"),
            "status.completeness 99.999904%",
            timeout_secs=30,
        )
        (row,) = printer_columns(kubectl(kube_cluster, "get", "exchangefeeds", "done", "-n", namespace))
        assert row["NAME"] == "done"
        assert row["COMPLETENESS"] == "99.999904%"

        # Malformed counts: the previous value stays, and the operator says so once, not every interval.
        redis_client.hset(key, "BTC-USDT", "not,counts")
        wait_until(
            lambda: MALFORMED_WARNING in operator.log_path.read_text(errors="replace"),
            "the malformed-counts warning",
            timeout_secs=30,
        )
        time.sleep(2.5 * RESYNC_SECS)
        assert operator.log_path.read_text(errors="replace").count(MALFORMED_WARNING) == 1
        assert _status(kube_cluster, namespace, "done")["completeness"] == "99.999904%"

        # Healed: the column follows again.
        redis_client.hset(key, "BTC-USDT", BucketCounts(present=YEAR_MINUTES).encode())
        wait_until(
            lambda: _completeness_is(kube_cluster, namespace, "done", "100.000000%"),
            "status.completeness 100.000000%",
            timeout_secs=30,
        )


def test_the_operator_publishes_each_feeds_backfill_route_and_a_deleted_feeds_route_expires(
    kube_cluster: KubeCluster, namespace: str, redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    key = backfill_routes_key("binance")
    with running_operator(
        kube_cluster, namespace, tmp_path, stats_redis_url=redis_server.url, resync_interval_secs=str(RESYNC_SECS)
    ):
        apply_feed(kube_cluster, namespace, feed_body("routed"))  # binance spot: BTC-USDT, ETH-USDT
        address = f"routed-collector.{namespace}.svc:50051"
        wait_until(
            lambda: redis_client.hgetall(key) == {b"BTC-USDT": address.encode(), b"ETH-USDT": address.encode()},
            "the feed's routes in Redis",
            timeout_secs=30,
        )
        assert 0 < int(redis_client.ttl(key)) <= 3 * RESYNC_SECS + 1
        kubectl(kube_cluster, "delete", "exchangefeed", "routed", "-n", namespace)
        # No feed of that exchange is left: nothing rewrites the hash, and it expires.
        wait_until(lambda: not redis_client.exists(key), "the deleted feed's routes gone", timeout_secs=30)
