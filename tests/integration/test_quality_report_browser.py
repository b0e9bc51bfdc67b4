"""The HTML quality report, opened in a real browser offline, shows the heatmap it should: checked on the pixels.

Debian's Chromium (``scripts/setup.sh`` installs it) renders the page headless with every network request refused,
so a report that needed a CDN would draw no heatmap. The screenshot is decoded with a small PNG reader (zlib and
numpy, both already here) and the heatmap is found by its colours, not by coordinates hard-coded for one layout:

- the heatmap's extent is where rows and columns are mostly green (the legend's little swatches are not);
- inside it, the red pixels (the missing hour) and the blue ones (the backfilled hour) must sit in the cells the
  report put them in, each about one cell's area, and green must cover most of the rest.

Skipped where Chromium is not installed, except under CI (``CI`` set), where a skip would hide a broken setup.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tickstrata.client.quality_html import STATE_COLOURS
from tickstrata.client.quality_report import HOUR_NS, FeedSummary, HourCell, QualityReport, render_html
from tickstrata.common.completeness import BucketCounts, BucketState

pytestmark = pytest.mark.integration

T0_NS = 1_764_000_000_000_000_000  # 2025-11-24T16:00:00Z
SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
HOURS = 4
MISSING_AT = (0, 1)  # (row, column): BTC-USDT, second hour
BACKFILLED_AT = (2, 3)  # SOL-USDT, last hour
WINDOW = (1200, 1000)
TOLERANCE = 24  # per channel: anti-aliased edges fall outside it, flat cell interiors do not

Image = npt.NDArray[np.uint8]


def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        message = "Debian's chromium is not installed (bash scripts/setup.sh chromium, as root)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def layout_report() -> QualityReport:
    cells = []
    for row, symbol in enumerate(SYMBOLS):
        for column in range(HOURS):
            counts = BucketCounts(present=60)
            if (row, column) == MISSING_AT:
                counts = BucketCounts(present=58, missing=2)
            if (row, column) == BACKFILLED_AT:
                counts = BucketCounts(present=45, backfilled=15)
            cells.append(HourCell("binance", symbol, T0_NS + column * HOUR_NS, counts))
    total = BucketCounts()
    for cell in cells:
        total += cell.counts
    return QualityReport(
        generated_ns=T0_NS + HOURS * HOUR_NS,
        window_start_ns=T0_NS,
        window_end_ns=T0_NS + HOURS * HOUR_NS,
        feeds=[FeedSummary("binance", total)],
        cells=cells,
    )


def screenshot(html_path: Path, png_path: Path, profile: Path) -> None:
    command = [
        chromium(),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        # No network at all: the page must carry everything it draws with.
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=15000",
        f"--screenshot={png_path}",
        html_path.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert png_path.exists(), f"chromium wrote no screenshot (exit {result.returncode}):\n{result.stderr[-3000:]}"


def decode_png(data: bytes) -> Image:
    """An 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes) as a height x width x 3 array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat, header = 8, bytearray(), b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), f"unsupported PNG: depth {depth}, interlace {interlace}"
    channels = {2: 3, 6: 4}[colour]
    stride = width * channels
    raw = np.frombuffer(zlib.decompress(bytes(idat)), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.int32)
    previous = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        filter_type, line = int(raw[y, 0]), raw[y, 1:].astype(np.int32)
        if filter_type == 0:
            row = line
        elif filter_type == 1:  # Sub: a running sum per channel
            row = np.cumsum(line.reshape(width, channels), axis=0).reshape(stride) % 256
        elif filter_type == 2:  # Up
            row = (line + previous) % 256
        else:  # Average, Paeth: each byte depends on the one just decoded to its left
            row = _unfilter_sequential(filter_type, line.tolist(), previous.tolist(), channels)
        out[y] = row
        previous = out[y]
    return out.reshape(height, width, channels)[:, :, :3].astype(np.uint8)


def _unfilter_sequential(kind: int, line: list[int], above: list[int], bpp: int) -> npt.NDArray[np.int32]:
    row = [0] * len(line)
    for i, value in enumerate(line):
        left = row[i - bpp] if i >= bpp else 0
        up = above[i]
        if kind == 3:
            row[i] = (value + (left + up) // 2) & 0xFF
            continue
        up_left = above[i - bpp] if i >= bpp else 0
        estimate = left + up - up_left
        pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
        predictor = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
        row[i] = (value + predictor) & 0xFF
    return np.array(row, dtype=np.int32)


def mask_of(image: Image, state: BucketState) -> npt.NDArray[np.bool_]:
    hex_colour = STATE_COLOURS[state].lstrip("#")
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.int16)
    return np.all(np.abs(image.astype(np.int16) - target) <= TOLERANCE, axis=2)  # type: ignore[no-any-return]


def extent(mask: npt.NDArray[np.bool_]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), inclusive, of the rows and columns where ``mask`` is dense."""
    rows, columns = mask.sum(axis=1), mask.sum(axis=0)
    dense_rows = np.flatnonzero(rows >= 0.3 * rows.max())
    dense_columns = np.flatnonzero(columns >= 0.3 * columns.max())
    return int(dense_rows[0]), int(dense_rows[-1]), int(dense_columns[0]), int(dense_columns[-1])


def cell_of(mask: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """The (row, column) of the heatmap cell holding the centroid of ``mask`` (cropped to the heatmap)."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    return int(ys.mean() / (height / len(SYMBOLS))), int(xs.mean() / (width / HOURS))


def test_the_heatmap_shows_missing_and_backfilled_hours_where_they_are(tmp_path: Path) -> None:
    html_path, png_path = tmp_path / "quality.html", tmp_path / "quality.png"
    html_path.write_text(render_html(layout_report()), encoding="utf-8")
    screenshot(html_path, png_path, tmp_path / "profile")
    image = decode_png(png_path.read_bytes())
    assert image.shape[:2] == (WINDOW[1], WINDOW[0])

    green = mask_of(image, BucketState.PRESENT)
    assert green.sum() > 20_000, "no heatmap drawn: plotly.js did not run offline, or the colours changed"
    box = extent(green)
    top, bottom, left, right = box
    area = (bottom - top + 1) * (right - left + 1)
    assert right - left > WINDOW[0] // 2, f"the heatmap should span the page, found columns {left}..{right}"
    assert bottom - top > 3 * 15, f"three rows of cells expected, found {bottom - top + 1} px high"

    inside = (slice(top, bottom + 1), slice(left, right + 1))
    red = mask_of(image, BucketState.MISSING)[inside]
    blue = mask_of(image, BucketState.BACKFILLED)[inside]
    one_cell = area / (len(SYMBOLS) * HOURS)
    assert 0.6 * one_cell < red.sum() < 1.2 * one_cell, f"red: {red.sum()} px, one cell is {one_cell:.0f}"
    assert 0.6 * one_cell < blue.sum() < 1.2 * one_cell, f"blue: {blue.sum()} px, one cell is {one_cell:.0f}"
    assert green[inside].sum() > 0.7 * area, "green (present) dominates the heatmap"

    assert cell_of(red) == MISSING_AT, f"red centroid in the wrong cell of the heatmap at {box}"
    assert cell_of(blue) == BACKFILLED_AT, f"blue centroid in the wrong cell of the heatmap at {box}"
    red_ys, red_xs = np.nonzero(red)
    blue_ys, blue_xs = np.nonzero(blue)
    assert red_xs.mean() < blue_xs.mean(), "the missing hour is left of the backfilled one"
    assert red_ys.mean() < blue_ys.mean(), "the missing instrument is above the backfilled one"


def encode_png(image: Image, filters: list[int]) -> bytes:
    """A reference PNG writer (row ``y`` filtered with ``filters[y]``), to check the reader on every filter type."""
    height, width, channels = image.shape
    rows = image.reshape(height, width * channels).astype(np.int32)
    blank = np.zeros(width * channels, dtype=np.int32)
    encoded = bytearray()
    for y, filter_type in enumerate(filters):
        line, above = rows[y], rows[y - 1] if y else blank
        left = np.concatenate([np.zeros(channels, dtype=np.int32), line[:-channels]])
        up_left = np.concatenate([np.zeros(channels, dtype=np.int32), above[:-channels]])
        estimate = left + above - up_left
        pa, pb, pc = np.abs(estimate - left), np.abs(estimate - above), np.abs(estimate - up_left)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above, up_left))
        predictor = [np.zeros_like(line), left, above, (left + above) // 2, paeth][filter_type]
        encoded += bytes([filter_type]) + ((line - predictor) % 256).astype(np.uint8).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, {3: 2, 4: 6}[channels], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(encoded)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("channels", [3, 4])
def test_the_png_reader_undoes_every_filter(channels: int) -> None:
    image = np.random.default_rng(7).integers(0, 256, size=(10, 9, channels), dtype=np.uint8)
    decoded = decode_png(encode_png(image, [0, 1, 2, 3, 4, 4, 3, 2, 1, 0]))
    assert np.array_equal(decoded, image[:, :, :3])
