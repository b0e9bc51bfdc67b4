"""Scenario: a backdated day of Binance spot and USD-M replayed fast through simulator → collectors → Redis → writer
→ QuestDB and the validator, every one a real process, with faults injected on a seeded plan: dropped trades,
dropped connections, silent sockets, collectors `kill -9`ed with open windows, Redis `kill -9`ed (AOF, fsync
every second, as `tickstrata up` and the chart run it), venue outages, empty minutes and REST 429s.

Time: one scaled market clock shared by every process (`TICKSTRATA_MARKET_CLOCK`, docs/validator.md "Scenario"):
market time starts two days back at midnight UTC and runs `speed` times faster; venue limits stay on the wall.

At the end, over the checked window of every instrument: 0 `missing` and 0 `pending`; every outage and empty
minute `exchange_empty`; every minute whose trades were dropped or that a dead collector missed `backfilled`;
every minute no fault came near `present`; every gap the validator knows resolved, and every injected connection
fault among them; QuestDB holds exactly the venue's trades (contiguous ids, none twice) and exactly its candles
(none fabricated, none missing, equal values); the venue answered no 418 and no 429 beyond the injected ones.

`make test` runs the short size (2 symbols on 2 venues, 150 market minutes, 19 faults, about 2 minutes);
`make reliability` (TICKSTRATA_RELIABILITY=full) runs 10 symbols on 2 venues over a whole day with 500 injected
gaps. TICKSTRATA_RELIABILITY_SEED replays a plan.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.scenario_harness import (
    COLLECTOR_WATCHDOG_SECS,
    MINUTE_MS,
    NS_PER_MS,
    VENUES,
    AppliedFault,
    PlannedFault,
    ScenarioSize,
    Stack,
    backdated_clock,
    instruments,
    plan_faults,
    truth_candles,
    truth_trade_id_bounds,
    venue_symbol,
)
from tests.integration.soak_harness import export_csv
from tickstrata.common.clock import MARKET_CLOCK_ENV
from tickstrata.quality.v1 import quality_service_pb2 as pb

FULL = os.environ.get("TICKSTRATA_RELIABILITY", "") == "full"
SHORT = ScenarioSize(
    spot_symbols=("BTC-USDT", "ETH-USDT"),
    market_minutes=150,
    speed=120,
    trades_per_sec=0.3,
    drops=6,
    disconnects=2,
    silences=2,
    collector_kills=2,
    redis_kills=1,
    outages=2,
    empty_intervals=2,
    rest_429s=2,
)
FULL_SIZE = ScenarioSize(
    spot_symbols=tuple(f"{b}-USDT" for b in ("BTC", "ETH", "BNB", "SOL", "XRP", "ADA", "DOGE", "AVAX", "DOT", "LINK")),
    market_minutes=24 * 60,
    speed=120,
    trades_per_sec=0.3,
    drops=320,
    disconnects=80,
    silences=60,
    collector_kills=30,
    redis_kills=10,
    outages=20,
    empty_intervals=40,
    rest_429s=20,
)
WARMUP_MINUTES = 5  # after both collectors are ready: their first minute is partly watched by design
SETTLE_WALL_SECS = 600 if FULL else 240


@pytest.fixture
def stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[ScenarioSize], Stack]]:
    made: list[Stack] = []

    def make(size: ScenarioSize) -> Stack:
        clock = backdated_clock(size.speed)
        monkeypatch.setenv(MARKET_CLOCK_ENV, clock.env_value())  # every child process inherits the one clock
        made.append(Stack(tmp_path, size, clock))
        return made[-1]

    try:
        yield make
    finally:
        for stack in made:
            stack.close()


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_scenario_short(stacks: Callable[[ScenarioSize], Stack]) -> None:
    _scenario(stacks(SHORT))


@pytest.mark.integration
@pytest.mark.reliability
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not FULL, reason="full size (a day, 20 instruments, 500 gaps) runs with `make reliability`")
def test_scenario_full(stacks: Callable[[ScenarioSize], Stack]) -> None:
    _scenario(stacks(FULL_SIZE))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _to_ms(value: str) -> int:
    number = int(value)
    return number // NS_PER_MS if number > 10**17 else number // 1000  # timestamp_ns or timestamp (µs)


@dataclass
class Truth:
    """What the faults did, from the simulator's records and the test's own clock readings (market ms)."""

    empty: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=dict)  # (venue, BTCUSDT) → no trades
    dropped: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=dict)  # trades lost in transit
    down: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: {v: [] for v in VENUES})  # no collector
    disturbed: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: {v: [] for v in VENUES})
    connection_faults: list[AppliedFault] = field(default_factory=list)


def _scenario(stack: Stack) -> None:
    """A backdated day with faults ends fully accounted for, with exactly the venue's data stored."""
    size = stack.size
    seed = int(os.environ.get("TICKSTRATA_RELIABILITY_SEED", str(random.SystemRandom().randrange(1 << 30))))
    print(f"TICKSTRATA_RELIABILITY_SEED={seed}")
    stack.start()
    check_start = (stack.market_ms() // MINUTE_MS + WARMUP_MINUTES) * MINUTE_MS
    check_end = check_start + size.market_minutes * MINUTE_MS
    wall_started = time.monotonic()
    applied = [stack.apply(planned) for planned in _paced(stack, plan_faults(size, seed, check_start, check_end))]
    stack.wait_market(check_end + 10 * MINUTE_MS)  # trading goes on while the last repairs settle
    traffic_wall_secs = time.monotonic() - wall_started
    _await_accounted_for(stack, check_start, check_end)
    settle_wall_secs = time.monotonic() - wall_started - traffic_wall_secs

    truth = _truth(stack, applied)
    counted = _check_bucket_states(stack, truth, check_start, check_end)
    _check_gaps(stack, truth, check_start, check_end)
    _check_venue_limits(stack, applied)
    trades_stored = _check_stored_data(stack, check_start, check_end)
    print(
        f"scenario: {len(applied)} faults ({size.injected_gaps} injected gaps) over {size.market_minutes} market "
        f"minutes of {sum(len(n) for n in instruments(size).values())} instruments; buckets {counted}; "
        f"{trades_stored} trades stored exactly once; traffic {traffic_wall_secs:.0f} s wall, "
        f"repairs settled {settle_wall_secs:.0f} s after"
    )


def _paced(stack: Stack, plan: list[PlannedFault]) -> Iterator[PlannedFault]:
    for planned in plan:
        stack.wait_market(planned.at_ms)
        yield planned


def _await_accounted_for(stack: Stack, check_start: int, check_end: int) -> None:
    deadline = time.monotonic() + SETTLE_WALL_SECS
    while True:
        open_counts = {
            (exchange, symbol): reply.counts
            for exchange, names in instruments(stack.size).items()
            for symbol in names
            if (reply := stack.completeness(exchange, symbol, check_start, check_end)).counts.missing
            or reply.counts.pending
        }
        # A gap reaching past the window's end is repaired past it too: wait for those minutes as well.
        unresolved = [
            (gap.exchange, gap.symbol, gap.kind, gap.state)
            for exchange in VENUES
            for gap in stack.gaps(exchange, check_start, check_end)
            if gap.state != pb.GAP_STATE_RESOLVED
        ]
        if not open_counts and not unresolved:
            return
        stack.assert_alive()
        assert time.monotonic() < deadline, (
            f"not accounted for after {SETTLE_WALL_SECS} s: {open_counts}; gaps not resolved: {unresolved[:10]}"
        )
        time.sleep(1.0)


def _reconnect_ms(stack: Stack) -> int:
    return int(2 * stack.clock.speed * 1000)  # a reconnect takes well under two wall seconds


def _watchdog_ms(stack: Stack) -> int:
    return int((COLLECTOR_WATCHDOG_SECS + 1) * stack.clock.speed * 1000)  # silence noticed, then a reconnect


def _truth(stack: Stack, applied: list[AppliedFault]) -> Truth:
    truth = Truth()
    reconnect_ms, watchdog_ms = _reconnect_ms(stack), _watchdog_ms(stack)
    for fault in applied:
        kind, venue, at_ms = fault.planned.kind, fault.planned.venue, fault.applied_market_ms
        if kind in ("outage", "empty_interval"):
            effects = fault.records[0]["effects"]
            window = (int(effects["start_ms"]), int(effects["end_ms"]))
            for name in effects["symbols"]:
                truth.empty.setdefault((venue, name), []).append(window)
            # An outage silences the socket: the collector's watchdog replaces it until the venue is back, so live
            # data resumes up to a watchdog period and a reconnect after the outage's end (a loaded machine
            # stretches both: minutes there may be backfilled as well as present).
            recovered_ms = window[1] + (reconnect_ms + watchdog_ms if kind == "outage" else 0)
            truth.disturbed[venue].append((window[0] - MINUTE_MS, recovered_ms + MINUTE_MS))
        elif kind == "collector_kill":
            truth.down[venue].append((at_ms, fault.recovered_market_ms))
            truth.disturbed[venue].append((at_ms - MINUTE_MS, fault.recovered_market_ms + reconnect_ms + MINUTE_MS))
        elif kind == "redis_kill":
            for each in VENUES:  # collectors buffer meanwhile; what they publish late may be judged before it lands
                truth.disturbed[each].append((at_ms - MINUTE_MS, fault.recovered_market_ms + 5 * MINUTE_MS))
        elif kind in ("abrupt_close", "silent"):
            truth.connection_faults.append(fault)
            end_ms = at_ms + reconnect_ms + (watchdog_ms if kind == "silent" else 0)
            truth.disturbed[venue].append((at_ms - MINUTE_MS, end_ms + MINUTE_MS))
    for venue in VENUES:
        for record in stack.simulator_faults(venue):
            lost = record["effects"].get("dropped") if record["kind"] == "drop" else None
            if lost:
                window = (int(lost[0]["ts_ms"]), int(lost[-1]["ts_ms"]) + 1)
                name = record["spec"]["stream"].split("@")[0].upper()
                truth.dropped.setdefault((venue, name), []).append(window)
                truth.disturbed[venue].append((window[0] - MINUTE_MS, window[1] + MINUTE_MS))
    return truth


def _covered(minute_ms: int, windows: list[tuple[int, int]]) -> bool:
    """The minute lies wholly inside one of the windows."""
    return any(start <= minute_ms and minute_ms + MINUTE_MS <= end for start, end in windows)


def _touches(minute_ms: int, windows: list[tuple[int, int]]) -> bool:
    return any(start < minute_ms + MINUTE_MS and minute_ms < end for start, end in windows)


def _expected_state(truth: Truth, exchange: str, name: str, minute: int) -> int | None:
    """The one state a minute must have, or None where several are right (a fault's edge)."""
    key = (exchange, name)
    if _covered(minute, truth.empty.get(key, [])):
        return pb.BUCKET_STATE_EXCHANGE_EMPTY  # the venue printed nothing: its REST says so
    if _touches(minute, truth.empty.get(key, [])):
        return None  # an outage began or ended inside it: partly traded
    # A dropped frame carries its tick's time; its trades are up to a tick older: trust the inside of the window.
    lost_live = [(start + 3000, end - 3000) for start, end in truth.dropped.get(key, [])] + truth.down[exchange]
    if _covered(minute, lost_live):
        return pb.BUCKET_STATE_BACKFILLED
    if not _touches(minute, truth.disturbed[exchange]):
        return pb.BUCKET_STATE_PRESENT
    return None


def _check_bucket_states(stack: Stack, truth: Truth, check_start: int, check_end: int) -> dict[str, int]:
    counted: dict[str, int] = {}
    for exchange, names in instruments(stack.size).items():
        for symbol in names:
            states = stack.bucket_states(exchange, symbol, check_start, check_end)
            assert len(states) == stack.size.market_minutes
            for minute, state in states.items():
                where = f"{exchange} {symbol} minute {(minute - check_start) // MINUTE_MS} ({_iso(minute)})"
                assert state not in (pb.BUCKET_STATE_MISSING, pb.BUCKET_STATE_PENDING), where
                expected = _expected_state(truth, exchange, venue_symbol(symbol), minute)
                assert expected in (None, state), (
                    f"{where}: {_state_name(state)}, expected {_state_name(expected or 0)}"
                )
                name = _state_name(state)
                counted[name] = counted.get(name, 0) + 1
    return counted


def _state_name(state: int) -> str:
    return pb.BucketState.Name(pb.BucketState.ValueType(state)).removeprefix("BUCKET_STATE_").lower()


def _check_gaps(stack: Stack, truth: Truth, check_start: int, check_end: int) -> None:
    """Every gap the validator knows is resolved, and every injected connection fault is among them."""
    slack_ns = _watchdog_ms(stack) * NS_PER_MS
    for exchange in VENUES:
        known = stack.gaps(exchange, check_start, check_end)
        unresolved = [g for g in known if g.state != pb.GAP_STATE_RESOLVED]
        assert not unresolved, f"{exchange}: {len(unresolved)} gaps not resolved, e.g. {unresolved[:3]}"
        # A fault queued behind a collector's downtime may be applied after the window: look past its end too.
        latest_ms = max((f.applied_market_ms for f in truth.connection_faults), default=check_end)
        recorded = stack.gaps(exchange, check_start, max(check_end, latest_ms + 60 * MINUTE_MS))
        for fault in truth.connection_faults:
            at_ns = fault.applied_market_ms * NS_PER_MS
            if fault.planned.venue == exchange:
                assert any(g.start_ns <= at_ns + slack_ns and at_ns <= g.end_ns for g in recorded), (
                    f"no gap recorded for {fault.planned.kind} on {exchange} at {_iso(fault.applied_market_ms)}"
                )


def _check_venue_limits(stack: Stack, applied: list[AppliedFault]) -> None:
    """No ban (a request inside a Retry-After is one), no 429 beyond those injected."""
    for venue in VENUES:
        injected = sum(1 for f in applied if f.planned.kind == "rest_429" and f.planned.venue == venue)
        responses = stack.simulator_state(venue)["rest"]["responses"]
        assert responses.get("418", 0) == 0, f"{venue} banned the collector: {responses}"
        assert responses.get("429", 0) <= injected, f"{venue}: weight limit exceeded: {responses}"


def _check_stored_data(stack: Stack, check_start: int, check_end: int) -> int:
    """QuestDB holds exactly the venue's trades and candles over the window; returns the trades counted."""
    assert stack.endpoints is not None
    window_sql = f"ts >= '{_iso(check_start)}' AND ts < '{_iso(check_end)}'"
    trades_stored = 0
    for exchange, names in instruments(stack.size).items():
        rest_url = stack.endpoints.rest_url(exchange)
        for symbol in names:
            where = f"exchange = '{exchange}' AND symbol = '{symbol}' AND {window_sql}"
            first, last = truth_trade_id_bounds(rest_url, exchange, symbol, check_start, check_end)
            ids = sorted(int(row[0]) for row in export_csv(stack.questdb, f"SELECT trade_id FROM trades WHERE {where}"))
            expected = list(range(first, last + 1))
            assert ids == expected, (
                f"{exchange} {symbol}: {len(ids)} trades stored, the venue printed {len(expected)}; missing "
                f"{sorted(set(expected) - set(ids))[:10]}, stored twice {len(ids) - len(set(ids))}"
            )
            trades_stored += len(ids)
            venue_candles = truth_candles(rest_url, exchange, symbol, check_start, check_end)
            sql = f"SELECT cast(ts AS LONG), open, high, low, close, volume, closed, source FROM candles WHERE {where}"
            rows = export_csv(stack.questdb, f"{sql} AND interval_secs = 60")
            stored = {_to_ms(row[0]): [float(v) for v in row[1:6]] for row in rows}
            unfinished = [(_iso(_to_ms(row[0])), row[7]) for row in rows if row[6] != "true"]
            assert not unfinished, f"{exchange} {symbol}: candles never closed: {unfinished[:5]}"
            assert len(rows) == len(stored), f"{exchange} {symbol}: a minute stored twice"
            fabricated = sorted(set(stored) - set(venue_candles))
            assert not fabricated, f"{exchange} {symbol}: candles the venue never printed: {fabricated[:5]}"
            missing = sorted(set(venue_candles) - set(stored))
            assert not missing, f"{exchange} {symbol}: venue candles not stored: {missing[:5]}"
            differing = [
                (_iso(m), values, stored[m])
                for m, values in venue_candles.items()
                if [float(v) for v in values] != stored[m]
            ]
            assert not differing, (
                f"{exchange} {symbol}: candles differ from the venue's (venue, stored): {differing[:3]}"
            )
    return trades_stored
