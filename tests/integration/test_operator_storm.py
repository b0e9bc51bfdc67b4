"""Kill -9 the operator 10 times during a storm of 50 feed changes: it must converge to exactly the right children.

Changes are seeded-random (the seed is printed): creates, symbol and retention changes, suspends and deletes over
10 feeds. The operator is SIGKILLed at 10 random points and restarted at once (sometimes killed again before it
was ready). At the end every live feed has exactly its expected children, each matching its desired form, with a
current status; deleted feeds have none; and nothing else of ours is left in the namespace.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from tests.integration.operator_harness import (
    apply_feed,
    children_of,
    converged,
    convergence_gap,
    feed_body,
    fresh_namespace,
    kubectl,
    running_operator,
    wait_until,
)
from tickstrata.localstack.kube import KubeCluster

FEEDS = 10
CHANGES = 50
KILLS = 10
SYMBOL_POOL = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "ADA-USDT", "DOGE-USDT")


@pytest.fixture
def storm_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    with fresh_namespace(kube_cluster, "storm") as name:
        yield name


def no_children(cluster: KubeCluster, namespace: str, name: str) -> bool:
    return not children_of(cluster, namespace, name)


def random_spec(rng: random.Random) -> dict[str, Any]:
    spec: dict[str, Any] = {"symbols": rng.sample(SYMBOL_POOL, rng.randint(1, 4))}
    if rng.random() < 0.4:
        spec["retention"] = {"hotDays": 3, "warmDays": 30, "coldDays": rng.choice([0, 400])}
    if rng.random() < 0.2:
        spec["suspend"] = True
    if rng.random() < 0.3:
        spec["channels"] = {"quotes": True}
    return spec


def test_kill_the_operator_10_times_during_50_changes(
    kube_cluster: KubeCluster, storm_namespace: str, tmp_path: Any
) -> None:
    seed = int(os.environ.get("TICKSTRATA_STORM_SEED", random.randrange(2**31)))
    print(f"storm seed {seed} (TICKSTRATA_STORM_SEED={seed} repeats it)")
    rng = random.Random(seed)
    names = [f"storm-{index}" for index in range(FEEDS)]
    live: set[str] = set()
    kill_after = set(rng.sample(range(CHANGES), KILLS))
    with running_operator(kube_cluster, storm_namespace, tmp_path) as operator:
        for step in range(CHANGES):
            name = rng.choice(names)
            if name in live and rng.random() < 0.2:
                kubectl(
                    kube_cluster, "delete", "exchangefeeds.tickstrata.io", name, "-n", storm_namespace, "--wait=false"
                )
                live.discard(name)
            else:
                apply_feed(kube_cluster, storm_namespace, feed_body(name, **random_spec(rng)))
                live.add(name)
            if step in kill_after:
                operator.kill()
                time.sleep(rng.uniform(0.0, 1.0))
                operator.start(wait_ready=False)
            time.sleep(rng.uniform(0.0, 0.2))
        assert operator.starts == KILLS + 1

        for name in sorted(live):
            try:
                wait_until(
                    partial(converged, kube_cluster, storm_namespace, name), f"{name} to converge", timeout_secs=120
                )
            except AssertionError as error:
                gap = convergence_gap(kube_cluster, storm_namespace, name)
                raise AssertionError(f"{error}\nseed {seed}; still: {gap}\n{operator.log_tail(40)}") from None
        for name in sorted(set(names) - live):
            wait_until(
                partial(no_children, kube_cluster, storm_namespace, name),
                f"{name}'s children to be deleted (seed {seed})",
            )

        # Nothing of ours beyond the live feeds' children: no duplicates under other names, no orphans.
        listed = json.loads(
            kubectl(
                kube_cluster,
                "get",
                "configmaps,deployments,services,cronjobs",
                "-n",
                storm_namespace,
                "-l",
                "app.kubernetes.io/managed-by=tickstrata-operator",
                "-o",
                "json",
            )
        )
        owners = {item["metadata"]["labels"]["tickstrata.io/feed"] for item in listed["items"]}
        assert owners == live
        expected_count = sum(len(children_of(kube_cluster, storm_namespace, name)) for name in live)
        assert len(listed["items"]) == expected_count
