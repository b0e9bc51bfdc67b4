"""Which whole days and months are due to leave a tier. Pure: no I/O, no clock of its own.

Age is measured from a reference day: the earlier of the wall clock and the newest row stored. A row stamped ten
years ahead (a venue's clock gone wrong, a bad backfill) therefore cannot make the present look old, and a
pipeline that stopped receiving data keeps its last `hot_days` of history hot instead of emptying the tier.

Moves go by whole partitions: QuestDB drops whole day partitions, ClickHouse and the cold tier are partitioned by
month. A day is due when all of it is more than `keep_days` whole days before the reference day; a month when its
last day is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Final

NS_PER_SEC: Final = 1_000_000_000


def reference_day(*, wall_ns: int, newest_ns: int | None) -> dt.date:
    """The UTC day ages are counted from: min(wall clock, newest stored row); the wall clock when nothing is stored."""
    reference_ns = wall_ns if newest_ns is None else min(wall_ns, newest_ns)
    return dt.datetime.fromtimestamp(reference_ns / NS_PER_SEC, tz=dt.UTC).date()


def due_days(days: Iterable[dt.date], *, reference: dt.date, keep_days: int) -> list[dt.date]:
    """The days (oldest first) that lie wholly more than `keep_days` days before `reference`.

    With `keep_days=7` and a reference of the 10th, the 3rd and earlier are due; the 4th to the 10th stay.
    """
    if keep_days < 1:
        raise ValueError(f"keep_days must be at least 1, got {keep_days}")
    last_due = reference - dt.timedelta(days=keep_days)
    return sorted(day for day in set(days) if day <= last_due)


def month_of(day: dt.date) -> dt.date:
    return day.replace(day=1)


def last_day_of_month(month: dt.date) -> dt.date:
    following = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return following - dt.timedelta(days=1)


def due_months(months: Iterable[dt.date], *, reference: dt.date, keep_days: int) -> list[dt.date]:
    """The months (their first day, oldest first) whose last day is more than `keep_days` days before `reference`."""
    if keep_days < 1:
        raise ValueError(f"keep_days must be at least 1, got {keep_days}")
    last_due = reference - dt.timedelta(days=keep_days)
    return sorted(month for month in {month_of(m) for m in months} if last_day_of_month(month) <= last_due)
