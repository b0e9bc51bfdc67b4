"""Helpers for the simulator's pure-model tests: a recording subscriber and engines on a virtual clock."""

from __future__ import annotations

import json
from typing import Any

from tickstrata.simulator.engine import EngineConfig, VenueEngine
from tickstrata.simulator.instruments import Venue

START_MS = 1_750_000_012_345  # mid-minute on purpose: the start minute is partly history, partly live


class RecordingSubscriber:
    """Collects every frame the engine delivers, decoded (stands in for a WebSocket connection)."""

    def __init__(self, conn_id: int = 1, *, combined: bool = False) -> None:
        self.id = conn_id
        self.combined = combined
        self.frames: list[dict[str, Any]] = []
        self.floods: list[tuple[bytes, int, float]] = []

    def deliver(self, data: bytes) -> None:
        self.frames.append(json.loads(data))

    def backlog(self) -> int:
        return 0

    def describe(self) -> dict[str, Any]:
        return {"id": self.id}

    def go_silent(self, until_ms: int | None) -> None:
        pass

    def abort(self) -> None:
        pass

    def shutdown(self, send_event: bool) -> None:
        pass

    def flood(self, data: bytes, count: int, interval_secs: float) -> None:
        self.floods.append((data, count, interval_secs))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame.get("e") == event]


def make_engine(venue: Venue = Venue.SPOT, **overrides: Any) -> VenueEngine:
    config = EngineConfig(
        seed=overrides.pop("seed", 7),
        symbols=overrides.pop("symbols", ("BTCUSDT", "ETHUSDT", "XRPUSDT")),
        trades_per_sec=overrides.pop("trades_per_sec", 15.0),
        history_minutes=overrides.pop("history_minutes", 120),
        book_depth=overrides.pop("book_depth", 40),
        **overrides,
    )
    return VenueEngine(venue, config, start_ms=START_MS)


def run(engine: VenueEngine, until_ms: int, step_ms: int = 20) -> None:
    for now in range(engine.now_ms + step_ms, until_ms + 1, step_ms):
        engine.tick(now)
    engine.tick(until_ms)
