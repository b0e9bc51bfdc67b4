"""Drift detection (`diff.py`) and status conditions (`status.py`), pure."""

from __future__ import annotations

from typing import Any

from tickstrata_operator.diff import matches, merge_patch
from tickstrata_operator.status import (
    Outcome,
    conditions,
    status_differs,
    status_patch,
    symbols_summary,
    with_transition_times,
)

DESIRED: dict[str, Any] = {
    "metadata": {"labels": {"a": "1"}},
    "spec": {
        "replicas": 1,
        "template": {
            "spec": {
                "containers": [
                    {"name": "c", "env": [{"name": "X", "value": "1"}], "resources": {"requests": {"cpu": "500m"}}}
                ]
            }
        },
    },
}


def actual(**overrides: Any) -> dict[str, Any]:
    """What the API server returns: our fields plus defaults and fields of other controllers."""
    container = {
        "name": "c",
        "env": [{"name": "X", "value": "1"}],
        "resources": {"requests": {"cpu": "500m"}},
        "terminationMessagePath": "/dev/termination-log",
    }
    container.update(overrides.pop("container", {}))
    body: dict[str, Any] = {
        "metadata": {
            "labels": {"a": "1", "added-by-someone": "x"},
            "annotations": {"deployment.kubernetes.io/revision": "2"},
        },
        "spec": {
            "replicas": 1,
            "progressDeadlineSeconds": 600,
            "template": {"spec": {"containers": [container], "dnsPolicy": "ClusterFirst"}},
        },
        "status": {"replicas": 0},
    }
    body["spec"].update(overrides)
    return body


def test_defaults_and_foreign_fields_are_not_drift() -> None:
    assert matches(actual(), DESIRED)
    assert merge_patch(actual(), DESIRED) == {}


def test_an_equal_quantity_in_another_form_is_not_drift() -> None:
    assert merge_patch(actual(container={"resources": {"requests": {"cpu": "0.5"}}}), DESIRED) == {}
    assert merge_patch(actual(container={"resources": {"requests": {"cpu": "0.6"}}}), DESIRED) != {}


def test_a_changed_scalar_is_patched_alone() -> None:
    assert merge_patch(actual(replicas=3), DESIRED) == {"spec": {"replicas": 1}}


def test_an_added_env_variable_replaces_the_whole_list() -> None:
    edited = actual(container={"env": [{"name": "X", "value": "1"}, {"name": "HACK", "value": "1"}]})
    patch = merge_patch(edited, DESIRED)
    assert patch == {"spec": {"template": {"spec": {"containers": DESIRED["spec"]["template"]["spec"]["containers"]}}}}


def test_a_removed_label_is_restored() -> None:
    edited = actual()
    del edited["metadata"]["labels"]["a"]
    assert merge_patch(edited, DESIRED) == {"metadata": {"labels": {"a": "1"}}}


def by_type(outcome: Outcome) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in conditions(outcome)}


def test_conditions_follow_the_outcome() -> None:
    assert by_type(Outcome(1, changed=["Deployment/x"])) == {
        "Ready": ("False", "CollectorUnavailable"),
        "Progressing": ("True", "ChildrenUpdated"),
        "Degraded": ("False", "Reconciled"),
    }
    assert by_type(Outcome(1, collector_available=True)) == {
        "Ready": ("True", "CollectorAvailable"),
        "Progressing": ("False", "UpToDate"),
        "Degraded": ("False", "Reconciled"),
    }
    assert by_type(Outcome(1, suspended=True))["Ready"] == ("False", "Suspended")
    rejected = conditions(Outcome(2, rejected_field="spec.retention.warmDays", rejected_message="must be greater"))
    degraded = next(c for c in rejected if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert degraded["message"].startswith("spec.retention.warmDays: ")


def test_transition_time_moves_only_when_the_status_changes() -> None:
    old = [
        {"type": "Ready", "status": "False", "lastTransitionTime": "T0"},
        {"type": "Degraded", "status": "False", "lastTransitionTime": "T0"},
    ]
    new = with_transition_times(
        [{"type": "Ready", "status": "True"}, {"type": "Degraded", "status": "False"}], old, "T1"
    )
    assert [c["lastTransitionTime"] for c in new] == ["T1", "T0"]


def test_an_unchanged_status_is_not_written_again() -> None:
    outcome = Outcome(4, symbols=["BTC-USDT"], children={"deployment": "x"})
    first = status_patch(outcome, {}, "T0")
    assert first["observedGeneration"] == 4
    assert status_differs(first, {})
    assert not status_differs(status_patch(outcome, first, "T1"), first)
    rejected = status_patch(Outcome(5, rejected_field="spec", rejected_message="bad"), first, "T2")
    assert "observedGeneration" not in rejected  # a refused generation is not observed


def test_symbols_summary() -> None:
    assert symbols_summary(["A-B"]) == "A-B"
    assert symbols_summary(["A-B", "C-D", "E-F", "G-H", "I-J"]) == "A-B,C-D,E-F +2"
