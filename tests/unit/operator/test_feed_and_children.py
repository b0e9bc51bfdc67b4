"""The operator's pure core: parsing a feed and building its children (no API server here)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.declared_env import undeclared
from tickstrata.common.settings import load_settings
from tickstrata.tierer.settings import Stage, TiererSettings
from tickstrata_operator.children import (
    CHECKSUM_ANNOTATION,
    COLLECTOR_GRPC_PORT,
    FEED_LABEL,
    backfill_address,
    desired_children,
)
from tickstrata_operator.feed import InvalidFeedError, parse_feed
from tickstrata_operator.settings import OperatorSettings

SETTINGS = OperatorSettings(image="registry.example/tickstrata:1.2.3", redis_url="redis://redis:6379/0")


def body(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "btc", "namespace": "md", "uid": "uid-1", "generation": 3},
        "spec": {"exchange": "binance", "market": "spot", "symbols": ["BTC-USDT", "ETH-USDT"], **spec},
    }


def children(**spec: Any) -> dict[str, dict[str, Any]]:
    """The children by name, ConfigMap and Service left out (they share the Deployment's name `btc-collector`)."""
    return {
        child.name: child.body
        for child in desired_children(parse_feed(body(**spec)), SETTINGS)
        if child.kind not in ("ConfigMap", "Service")
    }


def built_service(**spec: Any) -> dict[str, Any]:
    return next(c.body for c in desired_children(parse_feed(body(**spec)), SETTINGS) if c.kind == "Service")


def test_defaults_give_a_collector_its_service_and_two_cron_jobs() -> None:
    kinds = [(child.kind, child.name) for child in desired_children(parse_feed(body()), SETTINGS)]
    assert kinds == [
        ("ConfigMap", "btc-collector"),
        ("Deployment", "btc-collector"),
        ("Service", "btc-collector"),
        ("CronJob", "btc-tier-warm"),
        ("CronJob", "btc-tier-cold"),
    ]


def test_the_service_reaches_the_collector_s_backfill_port_and_nothing_else() -> None:
    service = built_service()
    deployment = children()["btc-collector"]
    spec = service["spec"]
    assert spec["type"] == "ClusterIP"
    # The selector picks exactly the collector's pods: it is the Deployment's own selector (the feed's instance
    # label keeps another feed's collector out), and the pod template carries every label of it.
    assert spec["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert spec["selector"]["app.kubernetes.io/instance"] == "btc"
    assert spec["selector"]["app.kubernetes.io/component"] == "collector"
    assert spec["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # One port: the container's named gRPC port, which is where the collector's settings put BackfillService.
    (port,) = spec["ports"]
    assert port == {"name": "grpc", "protocol": "TCP", "port": COLLECTOR_GRPC_PORT, "targetPort": "grpc"}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    grpc = next(p for p in container["ports"] if p["name"] == "grpc")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert grpc["containerPort"] == int(env["COLLECTOR_GRPC_PORT"]) == COLLECTOR_GRPC_PORT
    # Reachable while the WebSocket is down (readiness), which is when backfill matters.
    assert spec["publishNotReadyAddresses"] is True
    # Suspending the feed changes nothing here (no pod to select, nothing to write).
    assert built_service(suspend=True) == service


def test_the_backfill_address_is_the_service_s_dns_name() -> None:
    feed = parse_feed(body())
    assert backfill_address(feed) == f"btc-collector.md.svc:{COLLECTOR_GRPC_PORT}"
    assert backfill_address(feed).split(".", 1)[0] == built_service()["metadata"]["name"]


def test_the_feed_file_is_what_the_collector_reads() -> None:
    config = next(
        child
        for child in desired_children(
            parse_feed(
                body(
                    market="usdm-futures",
                    symbols=["BTC-USDT-PERP", "ETH-USDT-PERP"],
                    channels={"funding": True, "book": {"enabled": True}},
                )
            ),
            SETTINGS,
        )
        if child.kind == "ConfigMap"
    )
    feed_file = yaml.safe_load(config.body["data"]["feed.yaml"])
    assert feed_file == {
        "exchange": "binance-usdm",
        "symbols": ["BTC-USDT-PERP", "ETH-USDT-PERP"],
        "channels": ["trades", "candles", "books", "funding"],
    }
    # And the collector's own settings loader accepts it.
    from tickstrata.collector.settings import FEED_KEYS  # noqa: PLC0415

    assert set(feed_file) <= set(FEED_KEYS)


def test_every_child_is_labelled_and_owned() -> None:
    built = desired_children(parse_feed(body()), SETTINGS)
    assert {child.kind for child in built} == {"ConfigMap", "Deployment", "Service", "CronJob"}
    for child in built:
        metadata = child.body["metadata"]
        assert metadata["namespace"] == "md"
        assert metadata["labels"][FEED_LABEL] == "btc"
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "tickstrata-operator"
        assert metadata["labels"]["tickstrata.io/exchange"] == "binance"
        (owner,) = metadata["ownerReferences"]
        assert owner == {
            "apiVersion": "tickstrata.io/v1alpha1",
            "kind": "ExchangeFeed",
            "name": "btc",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }


def _pod_specs(built: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    specs = []
    for item in built.values():
        if item["kind"] == "Deployment":
            specs.append(item["spec"]["template"]["spec"])
        elif item["kind"] == "CronJob":
            specs.append(item["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return specs


def test_pods_meet_the_restricted_profile() -> None:
    specs = _pod_specs(children(credentials={"secretRef": {"name": "keys"}}))
    assert len(specs) == 3
    for spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert not any(key in spec for key in ("hostNetwork", "hostPID", "hostIPC"))
        for volume in spec["volumes"]:
            assert set(volume) - {"name"} <= {"configMap", "emptyDir", "secret", "projected"}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}


def test_credentials_are_referenced_never_copied() -> None:
    deployment = children(credentials={"secretRef": {"name": "keys"}})["btc-collector"]
    env = {item["name"]: item for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["COLLECTOR_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "keys", "key": "API_KEY"}}
    assert "value" not in env["COLLECTOR_API_KEY"]


def test_a_symbol_change_changes_the_checksum_and_nothing_else_rolls_without_one() -> None:
    def checksum(**spec: Any) -> str:
        deployment = next(c for c in desired_children(parse_feed(body(**spec)), SETTINGS) if c.kind == "Deployment")
        return str(deployment.body["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION])

    assert checksum() == checksum()
    assert checksum() != checksum(symbols=["BTC-USDT"])
    assert checksum() != checksum(channels={"quotes": True})
    assert checksum() == checksum(retention={"hotDays": 3, "warmDays": 30})  # retention is the CronJobs' business


def test_suspend_scales_to_zero_and_suspends_the_cron_jobs() -> None:
    built = children(suspend=True)
    assert built["btc-collector"]["spec"]["replicas"] == 0
    assert built["btc-tier-warm"]["spec"]["suspend"] is True
    assert built["btc-tier-cold"]["spec"]["suspend"] is True
    assert children()["btc-collector"]["spec"]["replicas"] == 1


def test_cold_expiry_job_only_with_a_cold_limit_and_schedules_follow_the_minute() -> None:
    built = children(retention={"hotDays": 7, "warmDays": 30, "coldDays": 400}, tiering={"schedule": "5 */2 * * *"})
    assert built["btc-tier-warm"]["spec"]["schedule"] == "5 */2 * * *"
    assert built["btc-tier-cold"]["spec"]["schedule"] == "5 2 * * *"
    assert built["btc-expire-cold"]["spec"]["schedule"] == "5 4 * * *"
    env = {
        e["name"]: e["value"]
        for e in built["btc-expire-cold"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
        if "value" in e
    }
    assert (env["TIERER_STAGE"], env["TIERER_COLD_DAYS"], env["TIERER_SYMBOLS"]) == (
        "expire-cold",
        "400",
        "BTC-USDT,ETH-USDT",
    )
    assert "btc-expire-cold" not in children()
    assert children(tiering={"schedule": "@hourly"})["btc-tier-cold"]["spec"]["schedule"] == "0 2 * * *"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"exchange": "kraken"}, "spec.exchange"),
        ({"market": "margin"}, "spec.market"),
        ({"symbols": []}, "spec.symbols"),
        ({"symbols": ["BTC-USDT", "btc"]}, "spec.symbols[1]"),
        ({"symbols": ["BTC-USDT", "BTC-USDT"]}, "spec.symbols"),
        ({"symbols": ["BTC-USDT-PERP"]}, "spec.symbols[0]"),
        ({"market": "usdm-futures"}, "spec.symbols[0]"),
        ({"channels": {"trades": False, "candles": False}}, "spec.channels"),
        ({"channels": {"funding": True}}, "spec.channels.funding"),
        ({"channels": {"book": {"depth": 7}}}, "spec.channels.book.depth"),
        ({"retention": {"hotDays": 9, "warmDays": 9}}, "spec.retention.warmDays"),
        ({"retention": {"warmDays": 30, "coldDays": 20}}, "spec.retention.coldDays"),
        ({"retention": {"hotDays": True}}, "spec.retention.hotDays"),
        ({"suspend": "yes"}, "spec.suspend"),
    ],
)
def test_the_parser_refuses_what_the_crd_refuses_with_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidFeedError) as raised:
        parse_feed(body(**change))
    assert raised.value.field == field


@pytest.mark.parametrize("name", ["x" * 41, "binance.spot", "1inch", "btc-", "BTC"])
def test_a_name_that_cannot_name_every_child_is_refused(name: str) -> None:
    """Too long for the CronJobs, or no DNS label (a dot, a leading digit...): no valid Service name."""
    bad = copy.deepcopy(body())
    bad["metadata"]["name"] = name
    with pytest.raises(InvalidFeedError, match=r"metadata\.name"):
        parse_feed(bad)


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"market": "usdm-futures", "symbols": ["BTC-USDT-PERP"], "channels": {"funding": True, "quotes": True}},
        {"endpoints": {"wsUrl": "ws://simulator:8765/ws", "restUrl": "http://simulator:8765"}},
    ],
)
def test_the_collector_loads_the_feed_file_the_operator_writes(spec: dict[str, Any], tmp_path: Any) -> None:
    from tickstrata.collector.settings import CollectorSettings  # noqa: PLC0415

    feed = parse_feed(body(**spec))
    config = next(child for child in desired_children(feed, SETTINGS) if child.kind == "ConfigMap")
    path = tmp_path / "feed.yaml"
    path.write_text(config.body["data"]["feed.yaml"])
    settings = CollectorSettings(feed_file=path)
    assert settings.exchange == feed.venue
    assert settings.symbols == list(feed.symbols)
    assert settings.channels == feed.channels.collector_channels()
    assert settings.ws_url == feed.ws_url


def test_every_variable_the_operator_sets_is_a_setting_of_the_role_it_runs() -> None:
    """The tierer, collector and every other role refuse an undeclared variable with their prefix (exit 2)."""
    names: list[str] = []
    for spec in (
        {},
        {"retention": {"hotDays": 3, "warmDays": 30, "coldDays": 400}},
        {"market": "usdm-futures", "symbols": ["BTC-USDT-PERP"]},
        {"credentials": {"secretRef": {"name": "keys"}}},
    ):
        built = children(**spec)
        for pod in _pod_specs(built):
            for container in pod["containers"]:
                names += [item["name"] for item in container.get("env", [])]
    assert any(name.startswith("TIERER_STAGE") for name in names)  # the check reaches the CronJobs
    assert "COLLECTOR_API_KEY" in names
    assert undeclared(names) == []


def test_the_cron_jobs_run_the_tierer_job_with_its_stage() -> None:
    built = children(retention={"hotDays": 3, "warmDays": 30, "coldDays": 400})
    stages = {}
    for child in built.values():
        if child["kind"] == "CronJob":
            (container,) = child["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
            assert container["args"] == ["tierer"]  # the image's entry point is `tickstrata`
            env = {item["name"]: item.get("value") for item in container["env"]}
            stages[child["metadata"]["name"]] = load_settings(TiererSettings, env).stage
    assert sorted(stages.values()) == sorted([Stage.HOT_TO_WARM, Stage.WARM_TO_COLD, Stage.EXPIRE_COLD])


def test_the_operator_refuses_an_embedded_warm_tier_for_its_cronjobs() -> None:
    # A chdb:// directory would be inside the tierer pod: the moved days would leave QuestDB for a disk that dies.
    with pytest.raises(ValueError, match="clickhouse_dsn"):
        OperatorSettings(image="registry.example/tickstrata:1.2.3", clickhouse_dsn="chdb:///var/lib/warm")
