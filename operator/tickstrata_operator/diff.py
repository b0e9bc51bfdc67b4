"""Compare a child as it is with its desired form and say what to change. Pure: no I/O.

Only what the operator sets is compared: a field the API server defaults (`terminationMessagePath`,
`protocol`...) or another controller adds (`deployment.kubernetes.io/revision`) is not ours and is left alone.
Within what is ours, a mapping is compared key by key and a list as a whole (same length, each item compared the
same way), so a hand-added env variable or container counts as drift.

The change is a JSON merge patch (RFC 7386) holding only the differing parts: mappings recurse, anything else
(lists included, as merge patches replace lists) is sent whole. An empty patch means no API write at all.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

_parse_quantity: Callable[[Any], Decimal] = parse_quantity  # untyped in the kubernetes package

QUANTITY_PARENTS = frozenset({"requests", "limits"})
"""Keys under which strings are quantities: `0.5` and `500m` are the same CPU."""


def _same_quantity(actual: Any, desired: Any) -> bool:
    try:
        return _parse_quantity(actual) == _parse_quantity(desired)
    except (ValueError, TypeError):
        return False


def matches(actual: Any, desired: Any, *, quantities: bool = False) -> bool:
    """True when `actual` holds everything `desired` says (extra keys in mappings are not ours).

    `quantities`: the values compared are quantities (the mapping was under `requests` or `limits`)."""
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return False
        return all(
            key in actual and matches(actual[key], value, quantities=quantities or key in QUANTITY_PARENTS)
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(actual) != len(desired):
            return False
        return all(matches(a, d) for a, d in zip(actual, desired, strict=True))
    if actual == desired:
        return True
    return quantities and _same_quantity(actual, desired)


def merge_patch(actual: Any, desired: dict[str, Any], *, quantities: bool = False) -> dict[str, Any]:
    """The smallest merge patch making `actual` match `desired`; `{}` when it already does."""
    patch: dict[str, Any] = {}
    current = actual if isinstance(actual, dict) else {}
    for key, value in desired.items():
        inner = quantities or key in QUANTITY_PARENTS
        if key in current and matches(current[key], value, quantities=inner):
            continue
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            patch[key] = merge_patch(current[key], value, quantities=inner)
        else:
            patch[key] = value
    return patch
