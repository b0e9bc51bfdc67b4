"""Times and intervals as people type them, turned into what the API takes (ns since the epoch, seconds). Pure.

Times: an aware `datetime`; an ISO-8601 string with a zone (`2026-11-24T00:00Z`, `2026-11-24T01:00+01:00`; a
date alone means 00:00 UTC); `now`; a relative offset from now (`-1h`, `-30m`, `-7d`, `-90s`); or int ns. A naive
datetime or zone-less ISO time is refused: guessing a zone silently shifts a backtest by hours.
Intervals: `1m 5m 15m 1h 4h 1d`, any `<n>m|h|d`, or int seconds; the service takes any multiple of 60 s.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Final

_UNIT_SECS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE: Final = re.compile(r"^-(\d+(?:\.\d+)?)([smhdw])$")
_INTERVAL: Final = re.compile(r"^(\d+)([mhdw])$")

TimeArg = datetime | str | int


class TimeArgumentError(ValueError):
    """A time or interval that cannot be read; the message shows accepted forms."""


def to_ns(value: TimeArg, *, now_ns: int) -> int:
    """`value` as ns since the epoch (UTC)."""
    if isinstance(value, bool):
        raise TimeArgumentError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return _datetime_ns(value, str(value))
    text = value.strip()
    if text.lower() == "now":
        return now_ns
    relative = _RELATIVE.match(text)
    if relative:
        return now_ns - int(float(relative.group(1)) * _UNIT_SECS[relative.group(2)] * 1_000_000_000)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = date.fromisoformat(text)
        return _datetime_ns(datetime(day.year, day.month, day.day, tzinfo=UTC), text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimeArgumentError(
            f"cannot read the time {value!r}: use ISO-8601 with a zone (2026-11-24T00:00Z), a date, "
            "'now', or an offset such as -1h"
        ) from None
    return _datetime_ns(parsed, text)


def _datetime_ns(value: datetime, shown: str) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise TimeArgumentError(f"the time {shown!r} has no zone; add one (e.g. 'Z' for UTC)")
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def interval_secs(value: str | int) -> int:
    """`1m` → 60, `4h` → 14400, `1d` → 86400; ints are seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        secs = value
    else:
        match = _INTERVAL.match(str(value).strip().lower())
        if not match:
            raise TimeArgumentError(f"cannot read the interval {value!r}: use 1m 5m 15m 1h 4h 1d, <n>m|h|d, or seconds")
        secs = int(match.group(1)) * _UNIT_SECS[match.group(2)]
    if secs <= 0 or secs % 60:
        raise TimeArgumentError(f"an interval must be a positive multiple of 60 s (got {value!r})")
    return secs


def join_relative_times(argv: Sequence[str]) -> list[str]:
    """`--from -1h` → `--from=-1h`: argparse would otherwise take `-1h` for an option."""
    joined: list[str] = []
    items = list(argv)
    index = 0
    while index < len(items):
        item = items[index]
        if item in ("--from", "--to") and index + 1 < len(items) and items[index + 1].startswith("-"):
            joined.append(f"{item}={items[index + 1]}")
            index += 2
            continue
        joined.append(item)
        index += 1
    return joined
