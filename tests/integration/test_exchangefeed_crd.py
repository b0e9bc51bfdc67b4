"""The ExchangeFeed CRD on a real API server: bad resources refused with the field path, good ones accepted.

Every case is sent as a server-side dry-run create with strict field validation (what `kubectl apply` does), so
the API server runs the schema, the CEL rules and the decoding exactly as for a real apply.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.integration.exchangefeed_cases import INVALID, VALID, Case, valid_feed
from tests.integration.servers.kube_fixtures import CRD_PATH, admin_api, install_crd
from tickstrata.localstack.kube import KubeCluster

GROUP, VERSION, PLURAL = "tickstrata.io", "v1alpha1", "exchangefeeds"


def _objects(cluster: KubeCluster) -> Any:
    from kubernetes import client  # noqa: PLC0415 - only the Kubernetes tests pay for the import

    return client.CustomObjectsApi(admin_api(cluster))


@pytest.fixture(scope="module")
def feeds_api(kube_cluster: KubeCluster) -> Any:
    install_crd(kube_cluster)
    return _objects(kube_cluster)


def _dry_run_create(api: Any, namespace: str, body: dict[str, Any]) -> Any:
    return api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, dry_run="All", field_validation="Strict"
    )


def _refusal(api: Any, namespace: str, body: dict[str, Any]) -> str:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    with pytest.raises(ApiException) as raised:
        _dry_run_create(api, namespace, body)
    assert raised.value.status in (400, 422), raised.value
    answer = str(raised.value.body)
    return str(json.loads(answer).get("message", answer))


def test_the_corpus_is_big_enough() -> None:
    assert len(INVALID) >= 40
    assert len(VALID) >= 10
    assert len({case.id for case in INVALID}) == len(INVALID)


@pytest.mark.parametrize("case", INVALID, ids=[case.id for case in INVALID])
def test_an_invalid_feed_is_refused_with_its_field_path(feeds_api: Any, kube_namespace: str, case: Case) -> None:
    message = _refusal(feeds_api, kube_namespace, case.body("invalid"))
    assert case.field in message, f"the refusal should name {case.field!r}: {message}"


@pytest.mark.parametrize(("label", "change"), VALID, ids=[label for label, _ in VALID])
def test_a_valid_feed_is_accepted(feeds_api: Any, kube_namespace: str, label: str, change: Any) -> None:
    body = valid_feed("valid")
    change(body)
    created = _dry_run_create(feeds_api, kube_namespace, body)
    assert created["spec"]["exchange"] == body["spec"]["exchange"]
    assert created["spec"]["symbols"] == body["spec"]["symbols"]


def test_defaults_are_filled_in(feeds_api: Any, kube_namespace: str) -> None:
    created = _dry_run_create(feeds_api, kube_namespace, valid_feed("defaults"))
    spec = created["spec"]
    assert spec["channels"] == {
        "trades": True,
        "candles": True,
        "quotes": False,
        "funding": False,
        "book": {"enabled": False, "depth": 20, "snapshotIntervalMs": 1000},
    }
    assert spec["retention"] == {"hotDays": 7, "warmDays": 365, "coldDays": 0}
    assert spec["tiering"] == {"schedule": "17 * * * *", "timeZone": "Etc/UTC"}
    assert spec["suspend"] is False


def test_the_market_is_immutable(feeds_api: Any, kube_namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    feeds_api.create_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, valid_feed("immutable"))
    patch = {"spec": {"market": "usdm-futures"}}
    with pytest.raises(ApiException) as raised:
        feeds_api.patch_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "immutable", patch)
    message = str(raised.value.body)
    assert "spec.market" in message, message
    assert "immutable" in message, message
    # A mutable field still changes.
    patched = feeds_api.patch_namespaced_custom_object(
        GROUP, VERSION, kube_namespace, PLURAL, "immutable", {"spec": {"symbols": ["SOL-USDT"]}}
    )
    assert patched["spec"]["symbols"] == ["SOL-USDT"]


def test_the_exchange_carries_the_same_immutability_rule() -> None:
    # With one venue in the enum, any other value is refused by the enum first; the rule is checked statically.
    crd = yaml.safe_load(CRD_PATH.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    for field in ("exchange", "market"):
        rules = [rule["rule"] for rule in spec[field].get("x-kubernetes-validations", [])]
        assert "self == oldSelf" in rules, field
