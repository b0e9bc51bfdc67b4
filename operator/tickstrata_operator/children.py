"""What one ExchangeFeed should own: a ConfigMap, a collector Deployment, the Service in front of the collector's
gRPC BackfillService, and retention CronJobs. Pure: no I/O.

Every child has a deterministic name (`<feed>-collector`, `<feed>-tier-warm`, ...), the standard
`app.kubernetes.io/*` labels plus `tickstrata.io/feed` and `tickstrata.io/exchange`, and a controller owner
reference to the feed, so deleting the feed deletes them (garbage collection) and the watches can find the
feed of any child. Pods meet the restricted Pod Security profile. The collector's pod template carries a
checksum of its ConfigMap, so a change of symbols or channels rolls the pod.

Values are written in the form the API server returns them (canonical quantities, `fieldRef.apiVersion`, ...) so
that comparing a child with its desired form (`diff.py`) finds no difference where there is none.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

import yaml

from tickstrata_operator.feed import API_GROUP, API_VERSION, KIND, Feed
from tickstrata_operator.feed_stats import stats_feed_name
from tickstrata_operator.settings import OperatorSettings

MANAGED_BY: Final = "tickstrata-operator"
FEED_LABEL: Final = "tickstrata.io/feed"
EXCHANGE_LABEL: Final = "tickstrata.io/exchange"
CHECKSUM_ANNOTATION: Final = "tickstrata.io/config-checksum"
FEED_FILE_DIR: Final = "/etc/tickstrata/feed"
FEED_FILE_KEY: Final = "feed.yaml"
COLLECTOR_HEALTH_PORT: Final = 8081
COLLECTOR_GRPC_PORT: Final = 50051
"""The collector's BackfillService port (`COLLECTOR_GRPC_PORT`), in the pod and on its Service. The chart's
NetworkPolicies open the same number, fixed there too, to the validator (`tests/unit/chart` checks they agree)."""
GRPC_PORT_NAME: Final = "grpc"
RUN_AS_USER: Final = 10001

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Child:
    """One desired object: which API it lives in and its full body."""

    kind: str
    name: str
    body: Body


def collector_name(feed: Feed) -> str:
    return f"{feed.name}-collector"


def backfill_address(feed: Feed) -> str:
    """Where the validator reaches the feed's BackfillService: the collector Service's DNS name and port
    (`btc-collector.md.svc:50051`; the cluster domain is left to the resolver's search path)."""
    return f"{collector_name(feed)}.{feed.namespace}.svc:{COLLECTOR_GRPC_PORT}"


def cron_job_names(feed: Feed) -> list[str]:
    names = [f"{feed.name}-tier-warm", f"{feed.name}-tier-cold"]
    if feed.retention.cold_days:
        names.append(f"{feed.name}-expire-cold")
    return names


def selector_labels(feed: Feed, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "tickstrata",
        "app.kubernetes.io/instance": feed.name,
        "app.kubernetes.io/component": component,
    }


def labels(feed: Feed, component: str) -> dict[str, str]:
    return {
        **selector_labels(feed, component),
        "app.kubernetes.io/part-of": "tickstrata",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        FEED_LABEL: feed.name,
        EXCHANGE_LABEL: feed.venue,
    }


def owner_reference(feed: Feed) -> Body:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": feed.name,
        "uid": feed.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(feed: Feed, name: str, component: str) -> Body:
    return {
        "name": name,
        "namespace": feed.namespace,
        "labels": labels(feed, component),
        "ownerReferences": [owner_reference(feed)],
    }


def feed_file(feed: Feed) -> str:
    """The collector's feed file (`COLLECTOR_FEED_FILE`): keys as `tickstrata collector` reads them."""
    content: Body = {
        "exchange": feed.venue,
        "symbols": list(feed.symbols),
        "channels": feed.channels.collector_channels(),
    }
    if feed.ws_url:
        content["ws_url"] = feed.ws_url
    if feed.rest_url:
        content["rest_url"] = feed.rest_url
    return yaml.safe_dump(content, sort_keys=False)


def config_map(feed: Feed) -> Child:
    name = collector_name(feed)
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(feed, name, "collector"),
        "data": {FEED_FILE_KEY: feed_file(feed)},
    }
    return Child("ConfigMap", name, body)


def config_checksum(config: Child) -> str:
    """sha256 of the ConfigMap's data: a pod template annotation, so a config change rolls the pods."""
    return hashlib.sha256(json.dumps(config.body["data"], sort_keys=True).encode()).hexdigest()


def _pod_security_context() -> Body:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security_context() -> Body:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _common_env(feed: Feed, settings: OperatorSettings) -> list[Body]:
    env: list[Body] = [
        {
            "name": "OTEL_SERVICE_NAME",
            "valueFrom": {
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels['app.kubernetes.io/component']"}
            },
        },
        {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": f"tickstrata.feed={feed.name},tickstrata.exchange={feed.venue}"},
    ]
    if settings.otel_exporter_otlp_endpoint:
        env.append({"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": settings.otel_exporter_otlp_endpoint})
    return env


def _probe(path: str, port: str, *, period_secs: int, failures: int) -> Body:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period_secs,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def deployment(feed: Feed, settings: OperatorSettings, checksum: str) -> Child:
    name = collector_name(feed)
    env: list[Body] = [
        {"name": "COLLECTOR_FEED_FILE", "value": f"{FEED_FILE_DIR}/{FEED_FILE_KEY}"},
        {"name": "COLLECTOR_FEED_NAME", "value": stats_feed_name(feed.namespace, feed.name)},
        {"name": "COLLECTOR_REDIS_URL", "value": settings.redis_url},
        {"name": "COLLECTOR_HEALTH_PORT", "value": str(COLLECTOR_HEALTH_PORT)},
        {"name": "COLLECTOR_GRPC_PORT", "value": str(COLLECTOR_GRPC_PORT)},
        {"name": "COLLECTOR_BOOK_LEVELS", "value": str(feed.channels.book_depth)},
        {"name": "COLLECTOR_BOOK_SNAPSHOT_INTERVAL_MS", "value": str(feed.channels.book_snapshot_interval_ms)},
        *_common_env(feed, settings),
    ]
    if feed.credentials_secret:
        for variable, key in (("COLLECTOR_API_KEY", "API_KEY"), ("COLLECTOR_API_SECRET", "API_SECRET")):
            env.append({"name": variable, "valueFrom": {"secretKeyRef": {"name": feed.credentials_secret, "key": key}}})
    container: Body = {
        "name": "collector",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": ["collector"],
        "env": env,
        "ports": [
            {"name": "health", "containerPort": COLLECTOR_HEALTH_PORT, "protocol": "TCP"},
            {"name": GRPC_PORT_NAME, "containerPort": COLLECTOR_GRPC_PORT, "protocol": "TCP"},
        ],
        "startupProbe": _probe("/healthz", "health", period_secs=2, failures=30),
        "livenessProbe": _probe("/healthz", "health", period_secs=10, failures=3),
        "readinessProbe": _probe("/readyz", "health", period_secs=5, failures=3),
        "resources": {kind: dict(values) for kind, values in feed.resources.items()},
        "securityContext": _container_security_context(),
        "volumeMounts": [
            {"name": "feed", "mountPath": FEED_FILE_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    template: Body = {
        "metadata": {"labels": labels(feed, "collector"), "annotations": {CHECKSUM_ANNOTATION: checksum}},
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": _pod_security_context(),
            "terminationGracePeriodSeconds": 30,
            "containers": [container],
            "volumes": [
                {"name": "feed", "configMap": {"name": name}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }
    body: Body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(feed, name, "collector"),
        "spec": {
            "replicas": 0 if feed.suspend else 1,
            # One collector per feed: two would both publish every event (harmless through dedup, but double the
            # venue's rate limits), so the old pod stops before the new one starts.
            "strategy": {"type": "Recreate"},
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(feed, "collector")},
            "template": template,
        },
    }
    return Child("Deployment", name, body)


def service(feed: Feed) -> Child:
    """A ClusterIP Service selecting the feed's collector pod, on its gRPC port (BackfillService).

    `publishNotReadyAddresses`: the collector's readiness is its WebSocket connections (`/readyz`), but backfill
    runs over the venue's REST API and matters most while the stream is down, so the address is published
    whatever the readiness. There is one collector pod (`Recreate`); a call that meets a pod not yet serving is
    refused and the validator retries."""
    name = collector_name(feed)
    body: Body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(feed, name, "collector"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(feed, "collector"),
            "publishNotReadyAddresses": True,
            "ports": [
                {"name": GRPC_PORT_NAME, "protocol": "TCP", "port": COLLECTOR_GRPC_PORT, "targetPort": GRPC_PORT_NAME}
            ],
        },
    }
    return Child("Service", name, body)


def _minute_of(schedule: str) -> str:
    """The minute field of a cron schedule when it is one number (the daily jobs run at that minute), else 0."""
    first = schedule.split(" ", 1)[0]
    return first if first.isdigit() else "0"


def _schedules(feed: Feed) -> dict[str, tuple[str, str]]:
    minute = _minute_of(feed.tiering_schedule)
    # The cold move and the expiry run daily, at the feed's minute, at hours apart from each other.
    stages = {
        f"{feed.name}-tier-warm": ("hot-to-warm", feed.tiering_schedule),
        f"{feed.name}-tier-cold": ("warm-to-cold", f"{minute} 2 * * *"),
    }
    if feed.retention.cold_days:
        stages[f"{feed.name}-expire-cold"] = ("expire-cold", f"{minute} 4 * * *")
    return stages


def cron_jobs(feed: Feed, settings: OperatorSettings) -> list[Child]:
    children = []
    for name, (stage, schedule) in _schedules(feed).items():
        env: list[Body] = [
            {"name": "TIERER_STAGE", "value": stage},
            {"name": "TIERER_EXCHANGE", "value": feed.venue},
            {"name": "TIERER_SYMBOLS", "value": ",".join(feed.symbols)},
            {"name": "TIERER_HOT_DAYS", "value": str(feed.retention.hot_days)},
            {"name": "TIERER_WARM_DAYS", "value": str(feed.retention.warm_days)},
            {"name": "TIERER_COLD_DAYS", "value": str(feed.retention.cold_days)},
            {"name": "TIERER_QUESTDB_HTTP_URL", "value": settings.questdb_http_url},
            {"name": "TIERER_CLICKHOUSE_DSN", "value": settings.clickhouse_dsn},
            {"name": "TIERER_COLD_STORE_URL", "value": settings.cold_store_url},
            *_common_env(feed, settings),
        ]
        container: Body = {
            "name": "tierer",
            "image": settings.image,
            "imagePullPolicy": settings.image_pull_policy,
            "args": ["tierer"],
            "env": env,
            "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
            "securityContext": _container_security_context(),
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }
        if settings.s3_secret_name:
            container["envFrom"] = [{"secretRef": {"name": settings.s3_secret_name}}]
        pod_spec: Body = {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "restartPolicy": "OnFailure",
            "securityContext": _pod_security_context(),
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }
        body: Body = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": _metadata(feed, name, "tierer"),
            "spec": {
                "schedule": schedule,
                "timeZone": feed.tiering_time_zone,
                "suspend": feed.suspend,
                # A move still running when the next is due: skip the next, never run two over the same data.
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 600,
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "metadata": {"labels": labels(feed, "tierer")},
                    "spec": {
                        "backoffLimit": 2,
                        "activeDeadlineSeconds": 6 * 3600,
                        "ttlSecondsAfterFinished": 86_400,
                        "template": {"metadata": {"labels": labels(feed, "tierer")}, "spec": pod_spec},
                    },
                },
            },
        }
        children.append(Child("CronJob", name, body))
    return children


def desired_children(feed: Feed, settings: OperatorSettings) -> list[Child]:
    """Every child `feed` should own, ConfigMap first (the Deployment mounts it)."""
    config = config_map(feed)
    return [config, deployment(feed, settings, config_checksum(config)), service(feed), *cron_jobs(feed, settings)]
