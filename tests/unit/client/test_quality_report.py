"""The quality report as a person reads it: terminal text and the self-contained HTML page."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tickstrata.client.quality_html import STATE_COLOURS, heatmap_grid
from tickstrata.client.quality_report import (
    HOUR_NS,
    FeedSummary,
    GapRow,
    HourCell,
    QualityReport,
    ViolationRow,
    clean,
    duration,
    render_html,
    render_text,
)
from tickstrata.common.completeness import BucketCounts, BucketState

T0_NS = 1_764_000_000_000_000_000  # 2025-11-24T16:00:00Z, on an hour
MIN_NS = 60 * 10**9
ROOT = Path(__file__).resolve().parents[3]
XSS = '<img src=x onerror="alert(1)">'


def gap(index: int, *, symbol: str | None = "BTC-USDT", cause: str = "socket closed") -> GapRow:
    start = T0_NS + index * MIN_NS
    return GapRow(f"g{index}", "binance", symbol, "trades", "disconnect", start, start + 3 * MIN_NS, "open", cause)


def violation(index: int, *, detail: str = "high < open") -> ViolationRow:
    start = T0_NS + index * MIN_NS
    return ViolationRow("binance", "ETH-USDT", "ohlcv", start, start + MIN_NS, detail)


def grid_report() -> QualityReport:
    """3 instruments x 4 hours, all present except one missing and one backfilled hour; two feeds."""
    cells = []
    for symbol in ("BTC-USDT", "ETH-USDT", "SOL-USDT"):
        for hour in range(4):
            counts = BucketCounts(present=60)
            if (symbol, hour) == ("BTC-USDT", 1):
                counts = BucketCounts(present=57, missing=3)
            if (symbol, hour) == ("SOL-USDT", 3):
                counts = BucketCounts(present=50, backfilled=10)
            cells.append(HourCell("binance", symbol, T0_NS + hour * HOUR_NS, counts))
    feeds = [
        FeedSummary("okx", BucketCounts(present=100, exchange_empty=5, pending=2)),
        FeedSummary("binance", BucketCounts(present=707, backfilled=10, missing=3)),
    ]
    return QualityReport(
        generated_ns=T0_NS + 4 * HOUR_NS + 5 * 10**9,
        window_start_ns=T0_NS,
        window_end_ns=T0_NS + 4 * HOUR_NS,
        feeds=feeds,
        cells=cells,
        open_gaps=[gap(1), gap(7, symbol=None), gap(3)],
        violations=[violation(2), violation(30)],
    )


def empty_report() -> QualityReport:
    return QualityReport(generated_ns=T0_NS, window_start_ns=T0_NS - HOUR_NS, window_end_ns=T0_NS)


# ---- the model --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "worst"),
    [
        (BucketCounts(present=60), BucketState.PRESENT),
        (BucketCounts(present=59, exchange_empty=1), BucketState.EXCHANGE_EMPTY),
        (BucketCounts(exchange_empty=50, backfilled=10), BucketState.BACKFILLED),
        (BucketCounts(backfilled=10, pending=1, present=49), BucketState.PENDING),
        (BucketCounts(pending=59, missing=1), BucketState.MISSING),
        (BucketCounts(), None),
    ],
)
def test_an_hour_shows_its_worst_state(counts: BucketCounts, worst: BucketState | None) -> None:
    assert HourCell("binance", "BTC-USDT", T0_NS, counts).worst_state is worst


def test_model_refuses_impossible_values() -> None:
    with pytest.raises(ValueError, match="hour boundary"):
        HourCell("binance", "BTC-USDT", T0_NS + MIN_NS, BucketCounts(present=1))
    with pytest.raises(ValueError, match="at most 60"):
        HourCell("binance", "BTC-USDT", T0_NS, BucketCounts(present=61))
    with pytest.raises(ValueError, match="before it starts"):
        GapRow("g", "binance", None, "trades", "drop", T0_NS, T0_NS - 1, "open", "")
    with pytest.raises(ValueError, match="before it starts"):
        QualityReport(generated_ns=T0_NS, window_start_ns=T0_NS, window_end_ns=T0_NS - 1)


def test_report_keeps_its_sequences_as_tuples() -> None:
    report = grid_report()
    assert isinstance(report.feeds, tuple)
    assert isinstance(report.cells, tuple)
    assert isinstance(report.open_gaps, tuple)
    assert report.total == BucketCounts(present=807, backfilled=10, exchange_empty=5, missing=3, pending=2)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (45 * 10**9, "45s"),
        (12 * MIN_NS, "12m"),
        (90 * 10**9, "1m 30s"),
        (65 * MIN_NS, "1h 05m"),
        (51 * HOUR_NS, "2d 03h"),
    ],
)
def test_durations_read_as_people_say_them(ns: int, text: str) -> None:
    assert duration(ns) == text


# ---- terminal text ------------------------------------------------------------------------------------------------


def test_text_has_the_window_the_verdict_and_every_section() -> None:
    text = render_text(grid_report())
    assert "window     2025-11-24T16:00:00Z .. 2025-11-24T20:00:00Z  (4h 00m, end excluded)" in text
    assert "generated  2025-11-24T20:00:05Z" in text
    assert "99.636363% accounted for: 3 of 825 classified 1-minute buckets are missing; 2 pending" in text
    for title in (
        "Completeness per feed (2)",
        "Instruments with missing or pending buckets (1)",
        "Open gaps, newest first (3)",
        "Recent violations, newest first (2)",
    ):
        assert title in text
    assert re.search(r"binance:BTC-USDT\s+3\s+0\s+2025-11-24 17:00", text)


def test_feed_table_is_sorted_aligned_and_totalled() -> None:
    lines = render_text(grid_report()).splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("exchange  "))
    table = lines[header : header + 5]
    assert [row.split()[0] for row in table] == ["exchange", "binance", "okx", "---------", "all"]
    assert table[1].split()[1:] == ["99.583333%", "720", "707", "0", "10", "0", "3"]
    assert table[2].split()[1:] == ["100.000000%", "107", "100", "5", "0", "2", "0"]
    assert table[4].split()[2:] == ["99.636363%", "827", "807", "5", "10", "2", "3"]
    ends = {line.index("%") for line in (table[1], table[2], table[4])}
    assert len(ends) == 1, "the percentages are right-aligned in one column"
    assert len({len(line) for line in table}) == 1


def test_all_accounted_for_says_so() -> None:
    report = QualityReport(
        generated_ns=T0_NS,
        window_start_ns=T0_NS - HOUR_NS,
        window_end_ns=T0_NS,
        feeds=[FeedSummary("binance", BucketCounts(present=3000, exchange_empty=12))],
    )
    text = render_text(report)
    assert "All 3,012 classified 1-minute buckets are accounted for." in text
    assert "Open gaps, newest first: none" in text
    assert re.search(r"^  binance\s+100\.000000%\s+3,012\s+3,000\s+12\s+0\s+0\s+0$", text, flags=re.MULTILINE)
    assert "all feeds" not in text, "one feed needs no total row"


def test_gaps_and_violations_are_newest_first_and_truncated() -> None:
    report = QualityReport(
        generated_ns=T0_NS,
        window_start_ns=T0_NS,
        window_end_ns=T0_NS + HOUR_NS,
        open_gaps=[gap(i, symbol=None if i == 40 else "BTC-USDT") for i in (5, 40, 12, 33, 1, 20)],
        violations=[violation(i) for i in range(7)],
    )
    text = render_text(report, max_rows=3)
    ids = re.findall(r"^  (g\d+) ", text, flags=re.MULTILINE)
    assert ids == ["g40", "g33", "g20"]
    assert "(feed)" in text.split("g40", 1)[1].splitlines()[0], "a whole-feed gap has no symbol"
    assert "... and 3 more" in text
    assert "Recent violations, newest first (7)" in text
    assert "... and 4 more" in text
    starts = re.findall(r"ohlcv\s+(2025-11-24 \d\d:\d\d)", text)
    assert starts == ["2025-11-24 16:06", "2025-11-24 16:05", "2025-11-24 16:04"]


def test_lines_fit_the_width_and_long_text_moves_below() -> None:
    cause = "the exchange closed the socket after a maintenance notice " * 3
    report = QualityReport(
        generated_ns=T0_NS,
        window_start_ns=T0_NS,
        window_end_ns=T0_NS + HOUR_NS,
        feeds=[FeedSummary("binance", BucketCounts(present=10))],
        open_gaps=[gap(1, cause=cause)],
        violations=[violation(1, detail="short")],
    )
    for width in (80, 100, 140):
        lines = render_text(report, width=width).splitlines()
        assert max(len(line) for line in lines) <= width
    narrow = render_text(report, width=80)
    assert "      cause: the exchange closed the socket" in narrow
    assert "..." in narrow
    assert re.search(r"ohlcv\s+2025-11-24 16:01\s+1m\s+short$", narrow, flags=re.MULTILINE)


def test_text_from_data_cannot_drive_the_terminal() -> None:
    report = QualityReport(
        generated_ns=T0_NS,
        window_start_ns=T0_NS,
        window_end_ns=T0_NS + HOUR_NS,
        open_gaps=[gap(1, cause="closed\x1b[31m red\x1b[0m\nforged line\r")],
    )
    text = render_text(report, width=200)
    assert "\x1b" not in text
    assert "\r" not in text
    assert "closed\\x1b[31m red\\x1b[0m\\nforged line\\r" in text
    assert clean("BTC-USDT") == "BTC-USDT"


def test_empty_report_is_still_a_report() -> None:
    text = render_text(empty_report())
    assert "No feed has classified buckets in this window." in text
    for title in ("Completeness per feed", "Open gaps, newest first", "Recent violations, newest first"):
        assert f"{title}: none" in text
    assert text.endswith("\n")
    assert not any(line != line.rstrip() for line in text.splitlines())


# ---- HTML ---------------------------------------------------------------------------------------------------------


def figure_data(page: str) -> list[dict[str, object]]:
    """The traces plotly's to_html wrote into the page (the first argument after the div id)."""
    match = re.search(r'Plotly\.newPlot\(\s*"completeness-heatmap",\s*(\[.*?\]),\s*\{', page, flags=re.DOTALL)
    assert match, "no heatmap figure in the page"
    data: list[dict[str, object]] = json.loads(match.group(1))
    return data


def test_html_is_one_self_contained_page_with_every_section() -> None:
    page = render_html(grid_report())
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=", page), "nothing is fetched at view time"
    assert "<link" not in page
    assert "plotly.js v" in page, "plotly.js is inlined"
    for heading in (
        "Completeness per feed",
        "Completeness by instrument and hour (UTC)",
        "Open gaps (3), newest first",
        "Recent violations (2), newest first",
    ):
        assert heading in page
    assert '<p class="verdict bad">99.636363% accounted for' in page
    assert page.index(">g7<") < page.index(">g3<") < page.index(">g1<"), "gaps newest first"
    assert "(whole feed)" in page


def test_heatmap_colours_each_hour_by_its_worst_state() -> None:
    report = grid_report()
    rows, columns, _ = heatmap_grid(report)
    assert rows == ["binance:BTC-USDT", "binance:ETH-USDT", "binance:SOL-USDT"]
    assert columns == [T0_NS + h * HOUR_NS for h in range(4)]
    (trace,) = figure_data(render_html(report))
    assert trace["type"] == "heatmap"
    assert trace["y"] == rows
    assert trace["z"] == [[0, 4, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2]]  # present 0, backfilled 2, missing 4
    colours = {colour for _, colour in trace["colorscale"]}  # type: ignore[attr-defined]
    assert colours == set(STATE_COLOURS.values())
    hover = trace["text"][0][1]  # type: ignore[index]
    assert "16:00" not in hover
    assert "2025-11-24 17:00–18:00 UTC" in hover
    assert "shown as <b>missing</b>" in hover
    assert "missing: 3" in hover
    assert "present: 57" in hover


def test_heatmap_has_every_hour_of_the_window_and_blanks_for_absent_cells() -> None:
    report = QualityReport(
        generated_ns=T0_NS,
        window_start_ns=T0_NS + 30 * MIN_NS,
        window_end_ns=T0_NS + 3 * HOUR_NS,
        cells=[HourCell("okx", "BTC-USDT", T0_NS + HOUR_NS, BucketCounts(pending=60))],
    )
    rows, columns, grid = heatmap_grid(report)
    assert rows == ["okx:BTC-USDT"]
    assert columns == [T0_NS, T0_NS + HOUR_NS, T0_NS + 2 * HOUR_NS]
    assert [cell is None for cell in grid[0]] == [True, False, True]
    (trace,) = figure_data(render_html(report))
    assert trace["z"] == [[None, 3, None]]


def test_everything_from_data_is_escaped() -> None:
    report = QualityReport(
        generated_ns=T0_NS,
        window_start_ns=T0_NS,
        window_end_ns=T0_NS + HOUR_NS,
        feeds=[FeedSummary(XSS, BucketCounts(present=1))],
        cells=[HourCell("binance", XSS, T0_NS, BucketCounts(present=60))],
        open_gaps=[GapRow(XSS, XSS, XSS, XSS, XSS, T0_NS, T0_NS + MIN_NS, XSS, XSS)],
        violations=[ViolationRow(XSS, XSS, XSS, T0_NS, T0_NS + MIN_NS, XSS + "</script>")],
    )
    page = render_html(report)
    assert "<img" not in page
    assert page.count("</script>") == page.count("<script"), "no closing tag comes from data"
    escaped = "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"
    assert page.count(escaped) >= 10, "tables: feed, gap (8 fields), violation (3 fields)"
    (trace,) = figure_data(page)
    assert trace["y"] == [f"binance:{escaped}"], "plotly renders tags in labels: they are escaped too"
    assert "&lt;/script&gt;" in page


def test_empty_report_needs_no_plotting() -> None:
    page = render_html(empty_report())
    assert "No instrument has classified buckets in this window." in page
    assert "Plotly.newPlot" not in page
    assert len(page) < 20_000
    assert '<p class="verdict ok">No feed has classified buckets in this window.</p>' in page


def test_importing_the_report_module_loads_no_plotting_or_dataframe_library() -> None:
    """`tickstrata quality` must start fast: plotly (and pandas) load only when the HTML is rendered.

    The package's own ``__init__`` (the market-data client) is bypassed so this checks these modules' imports.
    """
    code = (
        "import sys, types, tickstrata\n"
        "package = types.ModuleType('tickstrata.client')\n"
        "package.__path__ = [tickstrata.__path__[0] + '/client']\n"
        "sys.modules['tickstrata.client'] = package\n"
        "import tickstrata.client.quality_report, tickstrata.client.quality_html\n"
        "print(','.join(sorted(m for m in ('plotly', 'pandas', 'numpy', 'narwhals') if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == ""
    full = "import sys, tickstrata.client.quality_report; print('plotly' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", full], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "False"
