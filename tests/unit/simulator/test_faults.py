"""Faults change exactly what they say, and their records are the ground truth."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.unit.simulator._support import START_MS, RecordingSubscriber, make_engine, run
from tickstrata.simulator import hostile
from tickstrata.simulator.engine import VenueEngine
from tickstrata.simulator.faults import FaultSpec, load_scenario, parse_faults
from tickstrata.simulator.ratelimit import WeightLimiter
from tickstrata.simulator.tape import MINUTE_MS


def test_drop_loses_exactly_the_recorded_agg_ids(spot: VenueEngine) -> None:
    sub = RecordingSubscriber()
    spot.subscribe(sub, "btcusdt@aggTrade")
    run(spot, START_MS + 1_000)
    record = spot.apply_fault(FaultSpec(kind="drop", stream="btcusdt@aggTrade", count=3), START_MS + 1_000)
    run(spot, START_MS + 4_000)
    ids = [f["a"] for f in sub.of("aggTrade")]
    missing = sorted(set(range(ids[0], ids[-1] + 1)) - set(ids))
    assert missing == [d["first_id"] for d in record.effects["dropped"]]
    assert len(missing) == 3
    assert spot.stream_stats["btcusdt@aggTrade"][1] == 3
    assert record.remaining == 0


def test_outage_silences_streams_and_empties_history(spot: VenueEngine) -> None:
    sub = RecordingSubscriber()
    spot.subscribe(sub, "btcusdt@aggTrade")
    spot.subscribe(sub, "btcusdt@kline_1m")
    run(spot, START_MS + 500)
    record = spot.apply_fault(FaultSpec(kind="outage", duration_secs=130), START_MS + 500)
    start, end = record.effects["start_ms"], record.effects["end_ms"]
    assert start == (START_MS + 500) // 1000 * 1000 + 1000
    run(spot, end + 5_000, step_ms=50)
    trades = sub.of("aggTrade")
    assert not [f for f in trades if start <= f["T"] < end]
    ids = [f["a"] for f in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # nothing printed, so nothing missing
    assert not [f for f in sub.of("kline") if start <= f["E"] < end]
    tape = spot.markets["BTCUSDT"].tape
    assert tape.trades_between(start, end - 1, 100) == []
    full_minute = -(-start // MINUTE_MS)
    assert tape.kline(full_minute) is None  # the exchange has no candle for a minute it was down


def test_empty_interval_gives_a_zero_volume_minute(spot: VenueEngine) -> None:
    sub = RecordingSubscriber()
    spot.subscribe(sub, "ethusdt@kline_1m")
    record = spot.apply_fault(FaultSpec(kind="empty_interval", symbol="ETHUSDT"), START_MS + 100)
    minute_ms = record.effects["start_ms"]
    assert minute_ms % MINUTE_MS == 0
    assert record.effects["end_ms"] == minute_ms + MINUTE_MS
    run(spot, minute_ms + MINUTE_MS + 3_000, step_ms=100)
    closed = [f["k"] for f in sub.of("kline") if f["k"]["x"] and f["k"]["t"] == minute_ms]
    assert len(closed) == 1
    assert closed[0]["v"] == "0.00000000"
    assert closed[0]["n"] == 0
    rest = spot.markets["ETHUSDT"].tape.kline(minute_ms // MINUTE_MS)
    assert rest is not None
    assert rest.volume_steps == 0


def test_candle_revision_changes_only_the_rest_candle(spot: VenueEngine) -> None:
    record = spot.apply_fault(FaultSpec(kind="candle_revision", symbol="BTCUSDT"), START_MS + 100)
    tape = spot.markets["BTCUSDT"].tape
    minute = record.effects["open_time_ms"] // MINUTE_MS
    run(spot, (minute + 1) * MINUTE_MS + 100, step_ms=200)
    original, revised = tape.kline(minute), tape.rest_kline(minute)
    assert original is not None
    assert revised is not None
    assert revised != original
    assert revised.close_ticks == original.close_ticks + 1


def test_limiter_answers_429_then_418_when_ignored() -> None:
    limiter = WeightLimiter(limit_per_min=100, ban_secs=120)
    now = 1_000 * MINUTE_MS + 10_000
    assert limiter.check(now, 60).status == 200
    over = limiter.check(now + 1, 60)
    assert (over.status, over.retry_after_secs) == (429, 50)
    banned = limiter.check(now + 2, 1)
    assert (banned.status, banned.retry_after_secs) == (418, 120)
    assert limiter.check(now + 60_000, 1).status == 418  # still banned after the minute rolls
    assert limiter.check(now + 121_000, 1).status == 200
    limiter.force_429(1, 3)
    assert limiter.check(now + 122_000, 1).retry_after_secs == 3
    assert limiter.check(now + 126_000, 1).status == 200  # waited as told: no ban


def test_fault_specs_validate_and_scenarios_load(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        parse_faults({"kind": "meteor"})
    with pytest.raises(ValidationError):
        parse_faults({"kind": "drop", "count": 0})
    scenario = tmp_path / "faults.yaml"
    scenario.write_text("- {kind: outage, at_secs: 5, duration_secs: 30}\n- {kind: rest_429, venue: binance}\n")
    specs = load_scenario(scenario)
    assert [s.kind for s in specs] == ["outage", "rest_429"]
    assert specs[0].at_secs == 5
    assert specs[1].venue == "binance"


def test_unknown_symbol_in_a_fault_is_rejected() -> None:
    engine = make_engine()
    with pytest.raises(ValueError, match="unknown symbol"):
        engine.apply_fault(FaultSpec(kind="depth_gap", symbol="NOPEUSDT"), START_MS + 1)


def test_bad_rest_serves_exactly_count_bad_answers_of_its_endpoint(spot: VenueEngine) -> None:
    record = spot.apply_fault(FaultSpec(kind="bad_rest", body="html", endpoint="depth", count=2), START_MS)
    assert spot.take_rest_fault("klines") is None  # another endpoint answers normally
    served = [spot.take_rest_fault("depth") for _ in range(3)]
    assert [spec.body if spec else None for spec in served] == ["html", "html", None]
    assert record.effects == {"endpoint": "depth", "body": "html", "served": 2}


def test_hostile_bodies_are_what_they_claim() -> None:
    crossed = json.loads(hostile.crossed_depth(7))
    assert crossed["lastUpdateId"] == 7
    assert float(crossed["bids"][0][0]) > float(crossed["asks"][0][0])
    bomb = hostile.gzip_bomb(8 * 1024 * 1024)
    assert len(bomb) < 16 * 1024  # a thousandth of what it inflates to, and then some
    assert json.loads(gzip.decompress(bomb)) == []
    frame = hostile.garbage(1024 * 1024 + 1)
    assert len(frame) == 1024 * 1024 + 1
    assert frame.isascii()
    with pytest.raises(ValueError):  # noqa: PT011 - whatever json says, it is not JSON
        json.loads(frame)


def test_garbage_floods_every_connection_with_frames_of_the_asked_size(spot: VenueEngine) -> None:
    first, second = RecordingSubscriber(1), RecordingSubscriber(2)
    spot.register(first)
    spot.register(second)
    spec = FaultSpec(kind="garbage", size_bytes=4096, count=30, frames_per_sec=20)
    record = spot.apply_fault(spec, START_MS)
    for subscriber in (first, second):
        ((data, count, interval_secs),) = subscriber.floods
        assert (len(data), count, interval_secs) == (4096, 30, 0.05)
    assert record.effects == {"connections": [1, 2], "frames": 30, "frame_bytes": 4096}
