"""The ExchangeFeed's status from a reconciliation's outcome: conditions, observed generation, children. Pure.

Conditions follow the Kubernetes API conventions: `Ready` (the collector is running the current spec),
`Progressing` (the operator or the Deployment is still moving towards it) and `Degraded` (something is wrong that
retrying will not fix: the condition's message names the field). A condition's `lastTransitionTime` moves only
when its status changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

SYMBOLS_SHOWN: Final = 3


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one reconciliation did and saw."""

    generation: int
    symbols: Sequence[str] = ()
    changed: Sequence[str] = ()
    """Children created, patched or deleted (`Deployment/btc-collector`)."""
    children: Mapping[str, Any] = field(default_factory=dict)
    backfill_address: str = ""
    """`host:port` of the collector's BackfillService (its Service), for `status.backfillAddress`."""
    suspended: bool = False
    collector_available: bool = False
    rejected_field: str | None = None
    """Set when the spec (or a child built from it) was refused: a permanent error."""
    rejected_message: str = ""


def symbols_summary(symbols: Sequence[str]) -> str:
    """`BTC-USDT,ETH-USDT` or `BTC-USDT,ETH-USDT,SOL-USDT +4` for the printer column."""
    shown = ",".join(symbols[:SYMBOLS_SHOWN])
    return shown if len(symbols) <= SYMBOLS_SHOWN else f"{shown} +{len(symbols) - SYMBOLS_SHOWN}"


def _condition(kind: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def conditions(outcome: Outcome) -> list[dict[str, Any]]:
    gen = outcome.generation
    if outcome.rejected_field is not None:
        message = f"{outcome.rejected_field}: {outcome.rejected_message}"
        return [
            _condition("Ready", False, "InvalidSpec", message, gen),
            _condition("Progressing", False, "InvalidSpec", "fix the field named in Degraded", gen),
            _condition("Degraded", True, "InvalidSpec", message, gen),
        ]
    applied = f"applied {', '.join(outcome.changed)}" if outcome.changed else "children match the spec"
    if outcome.suspended:
        return [
            _condition("Ready", False, "Suspended", "spec.suspend is true: no collector runs, CronJobs suspended", gen),
            _condition("Progressing", False, "Suspended", applied, gen),
            _condition("Degraded", False, "Suspended", "nothing is wrong", gen),
        ]
    if outcome.collector_available:
        ready = _condition("Ready", True, "CollectorAvailable", "the collector runs the current spec", gen)
    else:
        ready = _condition("Ready", False, "CollectorUnavailable", "the collector Deployment has no available pod", gen)
    if outcome.changed:
        progressing = _condition("Progressing", True, "ChildrenUpdated", applied, gen)
    elif not outcome.collector_available:
        progressing = _condition("Progressing", True, "WaitingForCollector", applied, gen)
    else:
        progressing = _condition("Progressing", False, "UpToDate", applied, gen)
    return [ready, progressing, _condition("Degraded", False, "Reconciled", "nothing is wrong", gen)]


def with_transition_times(
    new: Sequence[dict[str, Any]], old: Sequence[Mapping[str, Any]], now_iso: str
) -> list[dict[str, Any]]:
    """`new` with each `lastTransitionTime` kept from `old` when the status did not change, else `now_iso`."""
    previous = {str(item.get("type")): item for item in old}
    stamped = []
    for condition in new:
        before = previous.get(condition["type"])
        same = before is not None and before.get("status") == condition["status"] and before.get("lastTransitionTime")
        stamped.append(
            {**condition, "lastTransitionTime": before["lastTransitionTime"] if same and before else now_iso}
        )
    return stamped


def status_patch(outcome: Outcome, old_status: Mapping[str, Any], now_iso: str) -> dict[str, Any]:
    """The status subresource's new content (the statistics fields and `completeness` are written separately: the
    resync loop samples the collectors' totals and the validator's counts)."""
    old_conditions = old_status.get("conditions") or []
    patch: dict[str, Any] = {
        "conditions": with_transition_times(conditions(outcome), old_conditions, now_iso),
        "symbols": symbols_summary(outcome.symbols),
    }
    if outcome.rejected_field is None:
        patch["observedGeneration"] = outcome.generation
        patch["children"] = dict(outcome.children)
        if outcome.backfill_address:
            patch["backfillAddress"] = outcome.backfill_address
    return patch


def status_differs(patch: Mapping[str, Any], old_status: Mapping[str, Any]) -> bool:
    """False when writing `patch` would change nothing (no write, no watch event, no loop)."""
    return any(old_status.get(key) != value for key, value in patch.items())
