"""The quality report as one self-contained HTML page, with a completeness heatmap (instrument by hour).

Everything is inline (CSS, plotly.js, the figure's data): the file opens with no network, mailed or archived.
The heatmap colours each hour of each instrument by the worst state among its buckets, worst first: missing
(red) > pending (grey) > backfilled (blue) > exchange_empty (pale) > present (green); an hour with no classified
bucket is left blank. Hovering a cell shows its counts.

plotly is imported inside ``render_html`` only: importing this module costs nothing.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from tickstrata.client.quality_report import (
    HOUR_NS,
    NS_PER_SEC,
    SEVERITY,
    FeedSummary,
    GapRow,
    HourCell,
    QualityReport,
    ViolationRow,
    clean,
    duration,
    iso_utc,
    newest_first_gaps,
    newest_first_violations,
    table_time,
    verdict,
)
from tickstrata.common.completeness import BucketCounts, BucketState, completeness_percent

STATE_COLOURS: Final[dict[BucketState, str]] = {
    BucketState.PRESENT: "#2ca02c",
    BucketState.EXCHANGE_EMPTY: "#d9ecd0",
    BucketState.BACKFILLED: "#1f6fd1",
    BucketState.PENDING: "#9a9a9a",
    BucketState.MISSING: "#d62728",
}
"""Cell colours. Tests read them back from a screenshot: keep red, blue and green far apart."""
_CODE: Final = {state: code for code, state in enumerate(reversed(SEVERITY))}
"""Heatmap z value per state, best (present, 0) to worst (missing, 4)."""
MAX_TABLE_ROWS: Final = 1000
"""Gaps and violations listed in the page before "... and K more"."""
HEATMAP_DIV_ID: Final = "completeness-heatmap"

_CSS: Final = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 24px 32px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #555; margin: 0; } .verdict { font-weight: 600; margin: 12px 0 0; }
.verdict.bad { color: #a51d1e; } .verdict.ok { color: #1d6b1d; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e3e3e3; text-align: left; vertical-align: top; }
td:not(:last-child) { white-space: nowrap; }
th { background: #f6f6f6; font-weight: 600; } td.n, th.n { text-align: right; }
tr.total td { font-weight: 600; border-top: 2px solid #bbb; }
.legend { display: flex; gap: 16px; flex-wrap: wrap; margin: 4px 0 6px; color: #444; }
.legend span::before { content: ""; display: inline-block; width: 11px; height: 11px; margin-right: 5px;
  vertical-align: -1px; background: var(--c); border: 1px solid #0002; }
.none, .more { color: #666; font-style: italic; }
"""


def render_html(report: QualityReport) -> str:
    """The whole page; see the module docstring."""
    title = f"tickstrata data quality, {iso_utc(report.window_start_ns)} .. {iso_utc(report.window_end_ns)}"
    bad = report.total.missing > 0
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        "<header><h1>tickstrata data quality</h1>",
        f'<p class="meta">Window {_e(iso_utc(report.window_start_ns))} .. {_e(iso_utc(report.window_end_ns))}'
        f" ({_e(duration(report.window_end_ns - report.window_start_ns))}, end excluded) · generated "
        f"{_e(iso_utc(report.generated_ns))}</p>",
        f'<p class="verdict {"bad" if bad else "ok"}">{_e(verdict(report))}</p></header>',
        "<section><h2>Completeness per feed</h2>",
        _feed_table(report.feeds, report.total),
        "</section>",
        "<section><h2>Completeness by instrument and hour (UTC)</h2>",
        _legend(),
        _heatmap(report),
        "</section>",
        _gap_section(newest_first_gaps(report.open_gaps)),
        _violation_section(newest_first_violations(report.violations)),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _e(text: str) -> str:
    """Data as HTML text: control characters shown as escapes (as in the terminal), then HTML-escaped."""
    return html.escape(clean(text), quote=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: set[int], total: bool = False) -> str:
    """An HTML table; every cell is escaped here. With ``total`` the last row is styled as a sum."""
    head = "".join(
        f'<th class="n">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>" for i, h in enumerate(headers)
    )
    body = []
    for index, row in enumerate(rows):
        cells = "".join(
            f'<td class="n">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>" for i, c in enumerate(row)
        )
        css = ' class="total"' if total and index == len(rows) - 1 else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _feed_table(feeds: Sequence[FeedSummary], total: BucketCounts) -> str:
    if not feeds:
        return '<p class="none">No feed has classified buckets in this window.</p>'
    ordered = sorted(feeds, key=lambda f: f.exchange)
    rows = [[f.exchange, f"{f.percent}%", *_count_cells(f.counts)] for f in ordered]
    if len(ordered) > 1:
        rows.append(["all feeds", f"{completeness_percent(total)}%", *_count_cells(total)])
    headers = ["exchange", "complete", "buckets", *(s.value for s in reversed(SEVERITY))]
    return _table(headers, rows, numeric=set(range(1, len(headers))), total=len(ordered) > 1)


def _count_cells(counts: BucketCounts) -> list[str]:
    return [f"{counts.total:,}", *(f"{getattr(counts, s.value):,}" for s in reversed(SEVERITY))]


def _legend() -> str:
    items = "".join(f'<span style="--c:{STATE_COLOURS[s]}">{_e(s.value)}</span>' for s in reversed(SEVERITY))
    return f'<div class="legend">{items}<span style="--c:#fff">no data</span></div>'


def _more(hidden: int) -> str:
    return f'<p class="more">... and {hidden:,} more</p>' if hidden > 0 else ""


def _gap_section(gaps: Sequence[GapRow]) -> str:
    if not gaps:
        return '<section><h2>Open gaps</h2><p class="none">None.</p></section>'
    rows = [
        [
            g.gap_id,
            g.exchange,
            g.symbol if g.symbol is not None else "(whole feed)",
            g.data_type,
            g.kind,
            table_time(g.start_ns),
            table_time(g.end_ns),
            duration(g.end_ns - g.start_ns),
            g.state,
            g.cause,
        ]
        for g in gaps[:MAX_TABLE_ROWS]
    ]
    headers = [
        "id",
        "exchange",
        "symbol",
        "type",
        "kind",
        "start (UTC)",
        "end (UTC, excluded)",
        "length",
        "state",
        "cause",
    ]
    table = _table(headers, rows, numeric={7})
    return (
        f"<section><h2>Open gaps ({len(gaps):,}), newest first</h2>{table}{_more(len(gaps) - MAX_TABLE_ROWS)}</section>"
    )


def _violation_section(violations: Sequence[ViolationRow]) -> str:
    if not violations:
        return '<section><h2>Recent violations</h2><p class="none">None.</p></section>'
    rows = [
        [
            v.exchange,
            v.symbol,
            v.kind,
            table_time(v.start_ns),
            table_time(v.end_ns),
            duration(v.end_ns - v.start_ns),
            v.detail,
        ]
        for v in violations[:MAX_TABLE_ROWS]
    ]
    headers = ["exchange", "symbol", "kind", "start (UTC)", "end (UTC, excluded)", "length", "detail"]
    table = _table(headers, rows, numeric={5})
    return (
        f"<section><h2>Recent violations ({len(violations):,}), newest first</h2>{table}"
        f"{_more(len(violations) - MAX_TABLE_ROWS)}</section>"
    )


# ---- the heatmap -----------------------------------------------------------------------------------------------------


def heatmap_grid(report: QualityReport) -> tuple[list[str], list[int], list[list[HourCell | None]]]:
    """Rows (``exchange:symbol``, sorted), columns (hour starts: every hour of the window plus any hour a cell has)
    and the cell of each (None where the report has none). Cells of the same instrument and hour are added up."""
    by_key: dict[tuple[str, int], HourCell] = {}
    for cell in report.cells:
        key = (f"{cell.exchange}:{cell.symbol}", cell.hour_start_ns)
        seen = by_key.get(key)
        by_key[key] = (
            cell
            if seen is None
            else HourCell(cell.exchange, cell.symbol, cell.hour_start_ns, seen.counts + cell.counts)
        )
    first = report.window_start_ns - report.window_start_ns % HOUR_NS
    hours = set(range(first, report.window_end_ns, HOUR_NS)) | {hour for _, hour in by_key}
    columns = sorted(hours)
    rows = sorted({name for name, _ in by_key})
    return rows, columns, [[by_key.get((row, hour)) for hour in columns] for row in rows]


def _hover(name: str, hour_ns: int, cell: HourCell | None) -> str:
    span = f"{_hour_label(hour_ns)}–{datetime.fromtimestamp((hour_ns + HOUR_NS) // NS_PER_SEC, UTC):%H:00} UTC"
    head = f"<b>{_e(name)}</b><br>{span}<br>"
    if cell is None or cell.worst_state is None:
        return head + "no classified bucket"
    counts = "<br>".join(f"{s.value}: {getattr(cell.counts, s.value)}" for s in SEVERITY)
    return f"{head}shown as <b>{cell.worst_state.value}</b><br>{counts}"


def _column_labels(columns: Sequence[int]) -> list[str]:
    """Short hour labels (``Nov 24 16:00``); with the year when the columns span more than one."""
    moments = [datetime.fromtimestamp(hour // NS_PER_SEC, UTC) for hour in columns]
    same_year = len({moment.year for moment in moments}) == 1
    return [moment.strftime("%b %d %H:%M" if same_year else "%Y-%m-%d %H:%M") for moment in moments]


def _hour_label(hour_ns: int) -> str:
    return datetime.fromtimestamp(hour_ns // NS_PER_SEC, UTC).strftime("%Y-%m-%d %H:%M")


def _heatmap(report: QualityReport) -> str:
    rows, columns, grid = heatmap_grid(report)
    if not rows:
        return '<p class="none">No instrument has classified buckets in this window.</p>'
    import plotly.graph_objects as go  # type: ignore[import-untyped]  # noqa: PLC0415  (lazy: ~1 s to import)
    import plotly.io as pio  # type: ignore[import-untyped]  # noqa: PLC0415

    z: list[list[int | None]] = [
        [None if c is None or c.worst_state is None else _CODE[c.worst_state] for c in line] for line in grid
    ]
    hover = [
        [_hover(name, hour, c) for hour, c in zip(columns, line, strict=True)]
        for name, line in zip(rows, grid, strict=True)
    ]
    last = len(_CODE) - 1
    scale: list[tuple[float, str]] = []
    for state, code in _CODE.items():  # one flat band per state: the z codes are categories, not a gradient
        scale += [
            (max(code - 0.5, 0) / last, STATE_COLOURS[state]),
            (min(code + 0.5, last) / last, STATE_COLOURS[state]),
        ]
    labels = [_e(name) for name in rows]  # plotly renders its own small tag set in labels: escape data
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=_column_labels(columns),
            y=labels,
            text=hover,
            hovertemplate="%{text}<extra></extra>",
            zmin=0,
            zmax=last,
            colorscale=scale,
            showscale=False,
            xgap=1,
            ygap=1,
            hoverongaps=True,
        )
    )
    row_px = 22 if len(rows) <= 60 else 14
    height = 110 + row_px * len(rows)
    figure.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 90},
        plot_bgcolor="#ffffff",
        font={"family": "system-ui, sans-serif", "size": 12},
        xaxis={"type": "category", "tickangle": -45, "automargin": True, "showgrid": False},
        yaxis={"type": "category", "autorange": "reversed", "automargin": True, "showgrid": False},
    )
    page: str = pio.to_html(
        figure,
        full_html=False,
        include_plotlyjs=True,
        div_id=HEATMAP_DIV_ID,
        default_height=f"{height}px",
        default_width="100%",
        config={"displaylogo": False, "responsive": True},
    )
    return page
