"""Fault descriptions: what tests and scenario files can ask the simulated exchange to do wrong.

A fault arrives as JSON (control endpoint `POST /_sim/faults`) or as an entry of a scenario file (a JSON or YAML
list; `at_secs` schedules it relative to the simulator's start). Applying a fault yields a `FaultRecord` whose
`effects` are the ground truth tests assert against: exactly which ids were dropped, which window went dark.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

FaultKind = Literal[
    "drop",
    "depth_gap",
    "silent",
    "abrupt_close",
    "server_shutdown",
    "rest_429",
    "empty_interval",
    "outage",
    "candle_revision",
    "inject",
    "bad_rest",
    "garbage",
]
BadBody = Literal["crossed", "html", "huge", "gzip_bomb"]
VenueName = Literal["binance", "binance-usdm", "all"]


class FaultSpec(BaseModel):
    """One fault. Fields not used by a kind are ignored by it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FaultKind
    venue: VenueName = "all"
    """Which host suffers it; the control endpoint of a host defaults to that host."""
    at_secs: float | None = Field(default=None, ge=0)
    """Scenario files: seconds of market time after the simulator started (wall seconds unless a scaled clock,
    `TICKSTRATA_MARKET_CLOCK`, runs); absent means now."""
    stream: str | None = None
    """drop: the stream whose next `count` frames are lost (e.g. `btcusdt@aggTrade`)."""
    symbol: str | None = None
    """depth_gap, candle_revision: the symbol (upper case); empty_interval: one symbol or, absent, all."""
    count: int = Field(default=1, ge=1)
    """drop, depth_gap: frames or events to lose; rest_429: requests to refuse; bad_rest: bad answers to serve;
    garbage: frames to send."""
    connection_id: int | None = None
    """silent, abrupt_close, server_shutdown: one connection (see GET /_sim/state); absent means every open one."""
    duration_secs: float | None = Field(default=None, gt=0)
    """silent: how long (absent: until the client gives up); outage: length of the window (default 60)."""
    minutes: int = Field(default=1, ge=1)
    """empty_interval: whole minutes without trades, starting at the next minute boundary (or `start_ms`)."""
    start_ms: int | None = None
    """outage, empty_interval: explicit start; never earlier than the next whole second."""
    retry_after_secs: int = Field(default=2, ge=1)
    """rest_429: the Retry-After the refused requests carry."""
    send_event: bool = True
    """server_shutdown: send `{"e":"serverShutdown"}` before closing (the 24-hour cut, announced)."""
    open_time_ms: int | None = None
    """candle_revision: the minute whose REST candle differs; absent means the minute in progress."""
    frames: list[str] = Field(default_factory=list)
    """inject: text frames sent as they are to the target connections (hostile input for quarantine tests)."""
    body: BadBody = "crossed"
    """bad_rest: a crossed depth book, an HTML page with status 200, a `size_bytes` JSON body sent in chunks, or
    a gzip bomb (`size_bytes` once inflated, a thousandth of it on the wire)."""
    endpoint: str = "depth"
    """bad_rest: the REST endpoint whose next `count` answers are bad (depth, exchangeInfo, klines, aggTrades)."""
    size_bytes: int = Field(default=50 * 1024 * 1024, ge=1, le=4 * 1024**3)
    """bad_rest huge and gzip_bomb: the body's (inflated) size; garbage: the size of each frame."""
    frames_per_sec: float = Field(default=10.0, gt=0, le=1000)
    """garbage: how fast the frames are sent."""


_fault_list = TypeAdapter(list[FaultSpec])


def parse_faults(payload: object) -> list[FaultSpec]:
    """One fault object or a list of them (raises pydantic's ValidationError on bad input)."""
    items = payload if isinstance(payload, list) else [payload]
    return _fault_list.validate_python(items)


def load_scenario(path: Path) -> list[FaultSpec]:
    """A scenario file: a JSON or YAML list of faults (or `{"faults": [...]}`)."""
    text = path.read_text()
    if path.suffix == ".json":
        data: Any = json.loads(text)
    else:
        # PyYAML is a dev dependency only: imported here so JSON scenarios work in a runtime-only install.
        import yaml  # noqa: PLC0415

        data = yaml.safe_load(text)
    if isinstance(data, dict) and "faults" in data:
        data = data["faults"]
    return parse_faults(data)


_ids = itertools.count(1)


@dataclass
class FaultRecord:
    spec: FaultSpec
    venue: str
    applied_ms: int
    id: int = field(default_factory=lambda: next(_ids))
    effects: dict[str, Any] = field(default_factory=dict)
    remaining: int = 0  # drop / depth_gap frames still to lose

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.spec.kind,
            "venue": self.venue,
            "applied_ms": self.applied_ms,
            "spec": self.spec.model_dump(exclude_none=True),
            "remaining": self.remaining,
            "effects": self.effects,
        }
