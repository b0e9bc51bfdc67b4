"""Replay a recorded capture through the simulated hosts, and record what the simulator sends as such a capture.

Capture format: JSON lines, one frame each, in time order:

    {"ts_ms": 1718000000123, "venue": "binance", "stream": "btcusdt@aggTrade", "frame": {...}}
    {"ts_ms": 1718000000200, "stream": "btcusdt@aggTrade", "raw": "{not json"}      (sent verbatim)
    {"stream": "btcusdt@aggTrade", "data": {...}}                                   (a combined-stream frame)

`venue` defaults to `binance`; a `frame` given as a string is sent verbatim like `raw` (so malformed frames can be
replayed to test quarantine); a combined-stream line takes its time from `data.E`. Frames reach subscribers of
their stream exactly as live frames do (wrapped on combined connections).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tickstrata.simulator import frames
from tickstrata.simulator.engine import VenueEngine

logger = logging.getLogger(__name__)

_YIELD_EVERY = 256
_MAX_BACKLOG = 20_000
_MAX_BACKLOG_WAITS = 10_000


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    ts_ms: int
    venue: str
    stream: str
    raw: bytes


def parse_capture_line(line: str, previous_ts_ms: int) -> CapturedFrame | None:
    """One capture line as a frame; None for blank lines. Raises ValueError on a line that is no capture entry."""
    line = line.strip()
    if not line:
        return None
    entry: Any = json.loads(line)
    if not isinstance(entry, dict) or not isinstance(entry.get("stream"), str):
        raise ValueError(f"capture line without a stream: {line[:200]}")
    venue = str(entry.get("venue", "binance"))
    if "data" in entry and "frame" not in entry and "raw" not in entry:
        data = entry["data"]
        ts = data.get("E", previous_ts_ms) if isinstance(data, dict) else previous_ts_ms
        return CapturedFrame(int(ts), venue, entry["stream"], frames.encode(data))
    ts_ms = int(entry.get("ts_ms", previous_ts_ms))
    payload = entry.get("raw", entry.get("frame"))
    raw = payload.encode() if isinstance(payload, str) else frames.encode(payload)
    return CapturedFrame(ts_ms, venue, entry["stream"], raw)


def load_capture(path: Path) -> list[CapturedFrame]:
    result: list[CapturedFrame] = []
    previous = 0
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            try:
                frame = parse_capture_line(line, previous)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from None
            if frame is not None:
                result.append(frame)
                previous = frame.ts_ms
    return result


async def _pace(
    index: int, offset_ms: int, speed: float, elapsed_secs: float, engines: Mapping[str, VenueEngine]
) -> None:
    """Wait until frame `index` is due; always yield now and then so the socket writers run."""
    if speed > 0:
        delay = offset_ms / 1000 / speed - elapsed_secs
        if delay > 0:
            await asyncio.sleep(delay)
        elif index % _YIELD_EVERY == 0:
            await asyncio.sleep(0)  # behind schedule: still let the socket writers run
    elif index % _YIELD_EVERY == 0:
        # As fast as possible, but as fast as the clients read: never outrun their queues (that would be a
        # slow-consumer disconnect), and let the writers run.
        await asyncio.sleep(0)
        for _ in range(_MAX_BACKLOG_WAITS):  # bounded: a client that stops reading is the server's to drop
            if all(engine.backlog() <= _MAX_BACKLOG for engine in engines.values()):
                break
            await asyncio.sleep(0.001)


async def replay(
    captured: list[CapturedFrame],
    engines: Mapping[str, VenueEngine],
    *,
    speed: float,
    wait_for_client: bool,
) -> int:
    """Publish every captured frame at its recorded pace divided by `speed` (0: as fast as possible).

    Waits for the first subscriber of any replayed stream first (when asked), so a test that connects after the
    simulator started still sees the capture from its beginning. Returns the number of frames published.
    """
    for engine in engines.values():
        engine.replay_mode = True
    if not captured:
        return 0
    if wait_for_client:
        wanted = {(frame.venue, frame.stream) for frame in captured}
        listening = asyncio.Event()

        def heard(venue: str) -> Callable[[str], None]:
            return lambda stream: listening.set() if (venue, stream) in wanted else None

        for venue, engine in engines.items():
            engine.on_subscribe = heard(venue)
        if not any(engines[v].subscriptions.get(s) for v, s in wanted if v in engines):
            await listening.wait()
    loop = asyncio.get_running_loop()
    started = loop.time()
    first_ts = captured[0].ts_ms
    published = 0
    for index, frame in enumerate(captured):
        await _pace(index, frame.ts_ms - first_ts, speed, loop.time() - started, engines)
        target = engines.get(frame.venue)
        if target is None:
            continue
        target.now_ms = frame.ts_ms
        target.publish(frame.stream, frame.raw)
        published += 1
    logger.info("replay finished", extra={"frames": published})
    return published


class CaptureRecorder:
    """Writes every published frame as a capture line (the replay format), e.g. to build test fixtures."""

    def __init__(self, path: Path) -> None:
        self._handle: IO[bytes] = path.open("ab")

    def __call__(self, ts_ms: int, venue: str, stream: str, raw: bytes) -> None:
        self._handle.write(
            b'{"ts_ms":%d,"venue":"%s","stream":"%s","frame":%s}\n' % (ts_ms, venue.encode(), stream.encode(), raw)
        )

    def close(self) -> None:
        self._handle.close()
