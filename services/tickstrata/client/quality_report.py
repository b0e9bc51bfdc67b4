"""The data-quality report a person reads: the model, and its rendering as terminal text or one HTML file. Pure.

The QualityService answers; `tickstrata quality` turns the answer into a ``QualityReport`` and calls
``render_text`` (the terminal, or a file it is piped into: plain text, no colour codes) or ``render_html``
(``--html FILE``: one self-contained page with a completeness heatmap, readable offline).

Every window is half-open, ``[start_ns, end_ns)``, in ns since the epoch; times are shown in UTC. Text that comes
from data (symbols, causes, details) is never trusted: control characters are shown escaped in the terminal, and
everything is HTML-escaped in the page.

This module imports no plotting library and no dataframe library: the CLI must start fast, so ``render_html``
loads plotly only when it is called (see ``quality_html``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from tickstrata.common.completeness import BucketCounts, BucketState, completeness_percent

NS_PER_SEC: Final = 1_000_000_000
HOUR_NS: Final = 3600 * NS_PER_SEC
BUCKETS_PER_HOUR: Final = 60
_MIN_FREE_TEXT: Final = 24
"""A cause or detail column narrower than this moves onto a line of its own under its row."""
DEFAULT_MAX_ROWS: Final = 20
"""Open gaps, violations and instruments listed in the terminal before "... and K more"."""

SEVERITY: Final[tuple[BucketState, ...]] = (
    BucketState.MISSING,
    BucketState.PENDING,
    BucketState.BACKFILLED,
    BucketState.EXCHANGE_EMPTY,
    BucketState.PRESENT,
)
"""Worst first: an hour is shown as the worst state any of its buckets has."""


@dataclass(frozen=True, slots=True)
class FeedSummary:
    """The bucket counts of one exchange's feeds over the report's window."""

    exchange: str
    counts: BucketCounts

    @property
    def percent(self) -> str:
        return completeness_percent(self.counts)


@dataclass(frozen=True, slots=True)
class HourCell:
    """The (up to) 60 one-minute buckets of one hour of one instrument: one cell of the heatmap."""

    exchange: str
    symbol: str
    hour_start_ns: int
    counts: BucketCounts

    def __post_init__(self) -> None:
        if self.hour_start_ns % HOUR_NS:
            raise ValueError(f"hour_start_ns {self.hour_start_ns} is not on an hour boundary")
        if self.counts.total > BUCKETS_PER_HOUR:
            raise ValueError(f"an hour has at most {BUCKETS_PER_HOUR} buckets, got {self.counts.total}")

    @property
    def worst_state(self) -> BucketState | None:
        """The worst state of any bucket of the hour; None when no bucket of it was classified."""
        return next((state for state in SEVERITY if getattr(self.counts, state.value) > 0), None)


@dataclass(frozen=True, slots=True)
class GapRow:
    """A gap of the ledger, ``[start_ns, end_ns)``; ``symbol`` is None for a gap of a whole feed (a disconnect)."""

    gap_id: str
    exchange: str
    symbol: str | None
    data_type: str
    kind: str
    start_ns: int
    end_ns: int
    state: str
    cause: str

    def __post_init__(self) -> None:
        _check_window(self.start_ns, self.end_ns)


@dataclass(frozen=True, slots=True)
class ViolationRow:
    """A broken quality rule with its evidence, over ``[start_ns, end_ns)``."""

    exchange: str
    symbol: str
    kind: str
    start_ns: int
    end_ns: int
    detail: str

    def __post_init__(self) -> None:
        _check_window(self.start_ns, self.end_ns)


@dataclass(frozen=True, slots=True)
class QualityReport:
    """Everything one report shows, over ``[window_start_ns, window_end_ns)``. Sequences are stored as tuples."""

    generated_ns: int
    window_start_ns: int
    window_end_ns: int
    feeds: Sequence[FeedSummary] = field(default=())
    cells: Sequence[HourCell] = field(default=())
    open_gaps: Sequence[GapRow] = field(default=())
    violations: Sequence[ViolationRow] = field(default=())

    def __post_init__(self) -> None:
        _check_window(self.window_start_ns, self.window_end_ns)
        for name in ("feeds", "cells", "open_gaps", "violations"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def total(self) -> BucketCounts:
        """The counts of every feed added up."""
        total = BucketCounts()
        for feed in self.feeds:
            total += feed.counts
        return total


def _check_window(start_ns: int, end_ns: int) -> None:
    if end_ns < start_ns:
        raise ValueError(f"window ends ({end_ns}) before it starts ({start_ns})")


# ---- formatting shared by both renderers -------------------------------------------------------------------------


def iso_utc(ns: int) -> str:
    """``2026-11-24T03:00:00Z`` (whole seconds; the ledger's windows are whole minutes)."""
    return datetime.fromtimestamp(ns // NS_PER_SEC, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table_time(ns: int) -> str:
    """A time in a table row: ``2026-11-24 03:17``, with seconds only when they are not zero."""
    moment = datetime.fromtimestamp(ns // NS_PER_SEC, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M")


def duration(ns: int) -> str:
    """A window's length as people say it: ``45s``, ``12m``, ``1h 05m``, ``2d 03h``."""
    secs = max(ns, 0) // NS_PER_SEC
    days, rest = divmod(secs, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m" if not seconds else f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def newest_first_gaps(gaps: Sequence[GapRow]) -> list[GapRow]:
    return sorted(gaps, key=lambda g: (-g.start_ns, -g.end_ns, g.exchange, g.symbol or "", g.gap_id))


def newest_first_violations(violations: Sequence[ViolationRow]) -> list[ViolationRow]:
    return sorted(violations, key=lambda v: (-v.start_ns, -v.end_ns, v.exchange, v.symbol, v.kind))


def verdict(report: QualityReport) -> str:
    """One sentence: is every classified bucket accounted for?"""
    if not report.feeds:
        return "No feed has classified buckets in this window."
    total = report.total
    classified = total.total - total.pending
    pending = f"; {total.pending:,} pending (ahead of the watermark or being backfilled)" if total.pending else ""
    if total.missing == 0:
        return f"All {classified:,} classified 1-minute buckets are accounted for{pending}."
    return (
        f"{completeness_percent(total)}% accounted for: {total.missing:,} of {classified:,} classified "
        f"1-minute buckets are missing{pending}."
    )


# ---- terminal text -----------------------------------------------------------------------------------------------


def render_text(report: QualityReport, *, width: int = 100, max_rows: int = DEFAULT_MAX_ROWS) -> str:
    """The report for a terminal or a text file: aligned columns, no colour, lines cut to ``width`` where possible.

    Open gaps and violations are listed newest first, at most ``max_rows`` of each, then "... and K more".
    """
    out = [
        "tickstrata data quality",
        f"window     {iso_utc(report.window_start_ns)} .. {iso_utc(report.window_end_ns)}  "
        f"({duration(report.window_end_ns - report.window_start_ns)}, end excluded)",
        f"generated  {iso_utc(report.generated_ns)}",
        "",
        *textwrap.wrap(verdict(report), max(width, 40)),
    ]
    out += _section("Completeness per feed", len(report.feeds), _feed_table(report, width))
    out += _instrument_section(report, width, max_rows)
    gaps = newest_first_gaps(report.open_gaps)
    out += _section("Open gaps, newest first", len(gaps), _gap_table(gaps[:max_rows], width), len(gaps) - max_rows)
    violations = newest_first_violations(report.violations)
    out += _section(
        "Recent violations, newest first",
        len(violations),
        _violation_table(violations[:max_rows], width),
        len(violations) - max_rows,
    )
    return "\n".join(line.rstrip() for line in out) + "\n"


def _section(title: str, count: int, table: list[str], hidden: int = 0) -> list[str]:
    lines = ["", f"{title} ({count:,})" if count else f"{title}: none"]
    if count:
        lines += ["-" * len(lines[1]), *table]
    if hidden > 0:
        lines.append(f"  ... and {hidden:,} more")
    return lines


def _feed_table(report: QualityReport, width: int) -> list[str]:
    feeds = sorted(report.feeds, key=lambda f: f.exchange)
    rows = [[clean(f.exchange), f"{f.percent}%", *_count_cells(f.counts)] for f in feeds]
    if len(feeds) > 1:
        rows.append(["all feeds", f"{completeness_percent(report.total)}%", *_count_cells(report.total)])
    # "empty" for exchange_empty: the full name would push the table past 80 columns.
    states = ["empty" if s is BucketState.EXCHANGE_EMPTY else s.value for s in reversed(SEVERITY)]
    headers = ["exchange", "complete", "buckets", *states]
    return _table(headers, rows, width, right=set(range(1, len(headers))), rule_before_last=len(feeds) > 1)


def _count_cells(counts: BucketCounts) -> list[str]:
    return [f"{counts.total:,}", *(f"{getattr(counts, s.value):,}" for s in reversed(SEVERITY))]


def _instrument_section(report: QualityReport, width: int, max_rows: int) -> list[str]:
    """Instruments with missing or pending buckets, worst first, with their worst hour: where to look."""
    per_instrument: dict[tuple[str, str], list[HourCell]] = {}
    for cell in report.cells:
        per_instrument.setdefault((cell.exchange, cell.symbol), []).append(cell)
    rows: list[tuple[int, int, str, list[str]]] = []
    for (exchange, symbol), cells in per_instrument.items():
        total = BucketCounts()
        for cell in cells:
            total += cell.counts
        if not total.missing and not total.pending:
            continue
        worst = max(cells, key=lambda c: (c.counts.missing, c.counts.pending, -c.hour_start_ns))
        name = f"{exchange}:{symbol}"
        rows.append(
            (
                -total.missing,
                -total.pending,
                name,
                [clean(name), f"{total.missing:,}", f"{total.pending:,}", table_time(worst.hour_start_ns)],
            )
        )
    rows.sort(key=lambda r: r[:3])
    table = _table(
        ["instrument", "missing", "pending", "worst hour"], [r[3] for r in rows[:max_rows]], width, right={1, 2}
    )
    return _section("Instruments with missing or pending buckets", len(rows), table, len(rows) - max_rows)


def _gap_table(gaps: Sequence[GapRow], width: int) -> list[str]:
    rows = [
        [
            clean(g.gap_id),
            clean(g.exchange),
            clean(g.symbol) if g.symbol is not None else "(feed)",
            clean(g.data_type),
            clean(g.kind),
            table_time(g.start_ns),
            duration(g.end_ns - g.start_ns),
            clean(g.state),
            clean(g.cause),
        ]
        for g in gaps
    ]
    headers = ["id", "exchange", "symbol", "type", "kind", "start (UTC)", "length", "state", "cause"]
    return _table(headers, rows, width, right={6}, free_text=True)


def _violation_table(violations: Sequence[ViolationRow], width: int) -> list[str]:
    rows = [
        [
            clean(v.exchange),
            clean(v.symbol),
            clean(v.kind),
            table_time(v.start_ns),
            duration(v.end_ns - v.start_ns),
            clean(v.detail),
        ]
        for v in violations
    ]
    return _table(
        ["exchange", "symbol", "kind", "start (UTC)", "length", "detail"], rows, width, right={4}, free_text=True
    )


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    *,
    right: set[int],
    free_text: bool = False,
    rule_before_last: bool = False,
) -> list[str]:
    """Columns two spaces apart under a header.

    With ``free_text`` the last column (a cause, a detail) is cut with "..." to keep lines within ``width``; when
    that would leave it narrower than ``_MIN_FREE_TEXT``, it moves instead onto an indented line of its own below
    each row, so what it says is not lost.
    """
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    free = width - (2 + sum(widths[:-1]) + 2 * (len(widths) - 1))
    below = free_text and widths[-1] > free and free < _MIN_FREE_TEXT
    if below:
        widths.pop()
    elif free_text:
        widths[-1] = min(widths[-1], max(len(headers[-1]), free))

    def line(cells: Sequence[str]) -> str:
        parts = [
            _cut(cell, w).rjust(w) if i in right else _cut(cell, w).ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=False))
        ]
        return "  " + "  ".join(parts)

    lines = [line(headers)]
    for row in rows:
        lines.append(line(row))
        if below and row[-1]:
            lines.append(_cut(f"      {headers[-1]}: {row[-1]}", max(width, 40)))
    if rule_before_last:
        lines.insert(len(lines) - 1, "  " + "  ".join("-" * w for w in widths))
    return lines


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def clean(text: str) -> str:
    """``text`` with every non-printable character (escape, newline, tab ...) shown as a Python escape."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


# ---- HTML ----------------------------------------------------------------------------------------------------------


def render_html(report: QualityReport) -> str:
    """The report as one self-contained HTML page (plotly.js inlined): see ``quality_html.render_html``.

    Loads plotly on first call, so importing this module stays cheap.
    """
    from tickstrata.client import quality_html  # noqa: PLC0415  (lazy: plotly costs ~1 s at CLI start)

    return quality_html.render_html(report)
