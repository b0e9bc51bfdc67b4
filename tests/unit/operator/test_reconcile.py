"""The reconciler's decisions against an in-memory API (a fake is fine here: the real API server runs in
tests/integration/test_operator*.py): what it writes, adopts, refuses and prunes, and how it classifies errors."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from tickstrata_operator.kube_io import KubeApiError
from tickstrata_operator.reconcile import PermanentReconcileError, Reconciler, TemporaryReconcileError, classify
from tickstrata_operator.settings import OperatorSettings


class FakeKube:
    """Objects by (kind, namespace, name); records every write."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.fail_next: KubeApiError | None = None

    def _maybe_fail(self) -> None:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._maybe_fail()
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def create(self, kind: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._maybe_fail()
        self.writes.append(("create", kind, body["metadata"]["name"]))
        self.objects[(kind, namespace, body["metadata"]["name"])] = copy.deepcopy(dict(body))
        return copy.deepcopy(dict(body))

    def merge_patch(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], *, status: bool = False
    ) -> None:
        self._maybe_fail()
        self.writes.append(("status" if status else "patch", kind, name))
        target = self.objects.setdefault((kind, namespace, name), {})
        _merge(target, patch)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.writes.append(("delete", kind, name))
        self.objects.pop((kind, namespace, name), None)

    def list_owned(self, kind: str, namespace: str, feed_name: str, feed_label: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in self.objects.items()
            if k == kind and ns == namespace and obj.get("metadata", {}).get("labels", {}).get(feed_label) == feed_name
        ]


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def feed(uid: str = "uid-1", **spec: Any) -> dict[str, Any]:
    body = {
        "metadata": {"name": "btc", "namespace": "md", "uid": uid, "generation": 1},
        "spec": {"exchange": "binance", "market": "spot", "symbols": ["BTC-USDT"], **spec},
    }
    return body


def reconciler() -> tuple[Reconciler, FakeKube]:
    kube = FakeKube()
    return Reconciler(kube, OperatorSettings()), kube  # type: ignore[arg-type]  # the fake has the methods used


def test_first_reconcile_creates_then_a_second_writes_nothing() -> None:
    rec, kube = reconciler()
    body = feed()
    kube.objects[("ExchangeFeed", "md", "btc")] = body
    outcome = rec.reconcile(body)
    assert [w[1] for w in kube.writes if w[0] == "create"] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "CronJob",
        "CronJob",
    ]
    assert len(outcome.changed) == 5
    status = kube.objects[("ExchangeFeed", "md", "btc")]["status"]
    assert status["backfillAddress"] == "btc-collector.md.svc:50051"
    assert status["children"]["service"] == "btc-collector"
    kube.writes.clear()
    body["status"] = kube.objects[("ExchangeFeed", "md", "btc")]["status"]
    again = rec.reconcile(body)
    assert again.changed == []
    # Only the status moves on (Progressing: ChildrenUpdated → WaitingForCollector); then nothing is written at all.
    assert kube.writes == [("status", "ExchangeFeed", "btc")]
    kube.writes.clear()
    body["status"] = kube.objects[("ExchangeFeed", "md", "btc")]["status"]
    rec.reconcile(body)
    assert kube.writes == []


def test_a_predecessor_s_child_is_adopted_a_foreign_one_refused() -> None:
    rec, kube = reconciler()
    rec.reconcile(feed(uid="old"))
    kube.writes.clear()
    rec.reconcile(feed(uid="new"))  # deleted and re-created under the same name
    owners = {
        obj["metadata"]["ownerReferences"][0]["uid"] for (k, _, _), obj in kube.objects.items() if k != "ExchangeFeed"
    }
    assert owners == {"new"}
    assert all(write[0] != "create" for write in kube.writes)

    rec2, kube2 = reconciler()
    kube2.objects[("ConfigMap", "md", "btc-collector")] = {"metadata": {"name": "btc-collector", "ownerReferences": []}}
    with pytest.raises(PermanentReconcileError) as raised:
        rec2.reconcile(feed())
    assert raised.value.field == "ConfigMap/btc-collector.metadata.ownerReferences"
    status = kube2.objects[("ExchangeFeed", "md", "btc")]["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"


def test_children_the_spec_no_longer_wants_are_deleted() -> None:
    rec, kube = reconciler()
    rec.reconcile(feed(retention={"hotDays": 7, "warmDays": 30, "coldDays": 400}))
    assert ("CronJob", "md", "btc-expire-cold") in kube.objects
    outcome = rec.reconcile(feed(retention={"hotDays": 7, "warmDays": 30, "coldDays": 0}))
    assert ("CronJob", "md", "btc-expire-cold") not in kube.objects
    assert "CronJob/btc-expire-cold (deleted)" in outcome.changed


def test_an_invalid_spec_is_reported_not_applied() -> None:
    rec, kube = reconciler()
    with pytest.raises(PermanentReconcileError) as raised:
        rec.reconcile(feed(symbols=["btc"]))
    assert raised.value.field == "spec.symbols[0]"
    assert [w for w in kube.writes if w[0] != "status"] == []


@pytest.mark.parametrize("status", [0, 404, 409, 429, 500, 503])
def test_conflicts_throttling_and_outages_are_temporary(status: int) -> None:
    assert isinstance(classify(KubeApiError(status, "x", {}), "Deployment/btc-collector"), TemporaryReconcileError)
    rec, kube = reconciler()
    kube.fail_next = KubeApiError(status, "x", {"message": "try later"})
    with pytest.raises(TemporaryReconcileError):
        rec.reconcile(feed())


def test_a_refused_child_is_permanent_with_the_api_server_s_field_path() -> None:
    body = {
        "message": "invalid",
        "details": {"causes": [{"field": "spec.template.spec.containers[0].image", "message": "Required value"}]},
    }
    error = classify(KubeApiError(422, "Unprocessable Entity", body), "Deployment/btc-collector")
    assert isinstance(error, PermanentReconcileError)
    assert error.field == "Deployment/btc-collector.spec.template.spec.containers[0].image"
    assert "Required value" in error.message
    forbidden = classify(KubeApiError(403, "Forbidden", {"message": "cannot create"}), "CronJob/x")
    assert isinstance(forbidden, PermanentReconcileError)


def test_a_predecessor_s_child_the_spec_no_longer_wants_is_deleted_not_left_behind() -> None:
    rec, kube = reconciler()
    rec.reconcile(feed(uid="old", retention={"hotDays": 7, "warmDays": 30, "coldDays": 400}))
    assert ("CronJob", "md", "btc-expire-cold") in kube.objects
    rec.reconcile(feed(uid="new"))  # re-created without a cold limit before the garbage collector ran
    assert ("CronJob", "md", "btc-expire-cold") not in kube.objects


def test_a_deleted_or_edited_service_is_restored_and_pruned_with_the_rest() -> None:
    rec, kube = reconciler()
    rec.reconcile(feed())
    key = ("Service", "md", "btc-collector")
    desired = copy.deepcopy(kube.objects[key])
    del kube.objects[key]
    assert "Service/btc-collector" in rec.reconcile(feed()).changed
    assert kube.objects[key] == desired
    kube.objects[key]["spec"]["selector"] = {"app.kubernetes.io/component": "writer"}  # pointed elsewhere by hand
    kube.objects[key]["spec"]["clusterIP"] = "10.0.0.7"  # the API server's, not ours
    kube.writes.clear()
    rec.reconcile(feed())
    assert ("patch", "Service", "btc-collector") in kube.writes
    assert kube.objects[key]["spec"]["selector"] == desired["spec"]["selector"]
    assert kube.objects[key]["spec"]["clusterIP"] == "10.0.0.7"
    # A Service of the feed the spec does not ask for (a leftover under another name) is pruned like the others.
    kube.objects[("Service", "md", "btc-old")] = {**copy.deepcopy(desired), "metadata": {**desired["metadata"]}}
    kube.objects[("Service", "md", "btc-old")]["metadata"]["name"] = "btc-old"
    assert "Service/btc-old (deleted)" in rec.reconcile(feed()).changed
