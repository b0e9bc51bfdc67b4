"""The validator's scenario: a backdated day replayed fast through real processes, with faults on a seeded plan.

Every process (simulator, collectors, writer, validator) runs on one scaled market clock
(`TICKSTRATA_MARKET_CLOCK`, `tickstrata.common.clock`): market time starts at midnight UTC two days back and runs
`speed` times faster than the wall. Venue limits (REST weight, `Retry-After`, pings) stay on the wall clock.

`plan_faults` is pure: sizes and a seed in, a list of `PlannedFault` out. `Stack` owns the processes and applies
the faults; the test (`test_validator_scenario.py`) states what must hold afterwards.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import grpc

from tests.integration.test_writer_kill import readyz
from tickstrata.common.clock import ScaledClock
from tickstrata.localstack.process import ManagedServer, free_port
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer
from tickstrata.localstack.simulator import SimulatorEndpoints, start_simulator
from tickstrata.quality.v1 import quality_service_pb2 as pb
from tickstrata.quality.v1 import quality_service_pb2_grpc as pb_grpc

MINUTE_MS: Final = 60_000
NS_PER_MS: Final = 1_000_000
VENUES: Final = ("binance", "binance-usdm")
REDIS_AOF: Final = ("--appendonly", "yes", "--appendfsync", "everysec")  # as `tickstrata up` and the chart run it
COLLECTOR_WATCHDOG_SECS: Final = 2.0  # wall seconds without a frame before a collector reconnects
GRACE_WALL_SECS: Final = 3.0  # the validator's watermark grace in wall seconds: the pipeline's delay, at any speed


@dataclass(frozen=True)
class ScenarioSize:
    spot_symbols: tuple[str, ...]  # normalized spot symbols; USD-M trades the same names as perpetuals
    market_minutes: int  # the checked window, in market minutes
    speed: float  # market seconds per wall second
    trades_per_sec: float  # per instrument, market time
    drops: int
    disconnects: int
    silences: int
    collector_kills: int
    redis_kills: int
    outages: int
    empty_intervals: int
    rest_429s: int

    @property
    def injected_gaps(self) -> int:
        return self.drops + self.disconnects + self.silences + self.collector_kills + self.redis_kills


def instruments(size: ScenarioSize) -> dict[str, list[str]]:
    """Normalized symbols per exchange."""
    return {"binance": list(size.spot_symbols), "binance-usdm": [f"{s}-PERP" for s in size.spot_symbols]}


def venue_symbol(symbol: str) -> str:
    return symbol.removesuffix("-PERP").replace("-", "")


@dataclass(frozen=True)
class PlannedFault:
    at_ms: int  # market time
    kind: str  # drop, abrupt_close, silent, collector_kill, redis_kill, outage, empty_interval, rest_429
    venue: str = ""
    symbol: str = ""  # venue symbol (BTCUSDT) for drop and empty_interval
    minutes: int = 0  # drop: minutes of trades lost; outage/empty_interval: length; collector_kill: down time


def plan_faults(size: ScenarioSize, seed: int, start_ms: int, end_ms: int) -> list[PlannedFault]:
    """The seeded fault plan over `[start_ms, end_ms)` (market time). Collector kills of one venue never overlap;
    every fault ends at least ten minutes before `end_ms`, so its repair is judged inside the window."""
    rng = random.Random(seed)
    symbols = [venue_symbol(s) for s in size.spot_symbols]
    latest_ms = end_ms - 10 * MINUTE_MS
    faults: list[PlannedFault] = []

    def at(length_minutes: int = 0) -> int:
        return rng.randrange(start_ms, max(start_ms + 1, latest_ms - length_minutes * MINUTE_MS))

    for _ in range(size.drops):
        minutes = rng.randint(1, min(120, size.market_minutes // 3))
        faults.append(PlannedFault(at(minutes), "drop", rng.choice(VENUES), rng.choice(symbols), minutes))
    for kind, count in (("abrupt_close", size.disconnects), ("silent", size.silences)):
        faults += [PlannedFault(at(), kind, rng.choice(VENUES)) for _ in range(count)]
    faults += [PlannedFault(at(), "redis_kill") for _ in range(size.redis_kills)]
    faults += [PlannedFault(at(), "rest_429", rng.choice(VENUES)) for _ in range(size.rest_429s)]
    for _ in range(size.outages):
        minutes = rng.randint(2, 20)
        faults.append(PlannedFault(at(minutes), "outage", rng.choice(VENUES), minutes=minutes))
    for _ in range(size.empty_intervals):
        minutes = rng.randint(1, 5)
        faults.append(PlannedFault(at(minutes), "empty_interval", rng.choice(VENUES), rng.choice(symbols), minutes))
    for index in range(size.collector_kills):
        venue = VENUES[index % 2]
        # One slot per kill of this venue: kills of one collector cannot overlap.
        kills_here = (size.collector_kills + 1 - index % 2) // 2
        slot_ms = (latest_ms - start_ms) // max(1, kills_here)
        slot_start = start_ms + (index // 2) * slot_ms
        minutes = rng.randint(1, max(1, min(30, slot_ms // MINUTE_MS // 3)))
        kill_at = rng.randrange(slot_start, slot_start + max(1, slot_ms - (minutes + 10) * MINUTE_MS))
        faults.append(PlannedFault(kill_at, "collector_kill", venue, minutes=minutes))
    return sorted(faults, key=lambda f: f.at_ms)


def backdated_clock(speed: float, *, wall_ms: int | None = None) -> ScaledClock:
    """Market time from midnight UTC two days back, starting now (a day replayed at 120x still ends in the past)."""
    now_ms = int(time.time() * 1000) if wall_ms is None else wall_ms
    midnight_ms = now_ms // (24 * 3600 * 1000) * (24 * 3600 * 1000)
    return ScaledClock(anchor_wall_ms=now_ms, start_ms=midnight_ms - 2 * 24 * 3600 * 1000, speed=speed)


# ---- the simulator's REST and control API ------------------------------------------------------------------


def http_json(url: str, payload: Any | None = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@dataclass
class AppliedFault:
    planned: PlannedFault
    applied_market_ms: int
    records: list[dict[str, Any]] = field(default_factory=list)  # the simulator's FaultRecords (ground truth)
    recovered_market_ms: int = 0  # collector_kill: when the new collector was ready; redis_kill: Redis back


class Stack:
    """Every process of the scenario; `close()` stops whichever run, whatever happened."""

    def __init__(self, directory: Path, size: ScenarioSize, clock: ScaledClock) -> None:
        self.directory = directory
        self.size = size
        self.clock = clock
        self.redis = RedisServer(directory / "redis", extra_args=REDIS_AOF, maxmemory_bytes=2 * 1024**3)
        self.questdb = QuestDBServer(directory / "questdb")
        self.simulator: ManagedServer | None = None
        self.endpoints: SimulatorEndpoints | None = None
        self.collectors: dict[str, ManagedServer] = {}
        self.collector_ports = {venue: (free_port(), free_port()) for venue in VENUES}  # (health, gRPC), kept
        self.collector_lives = dict.fromkeys(VENUES, 0)
        self.writer: ManagedServer | None = None
        self.validator: ManagedServer | None = None
        self.validator_ports = (free_port(), free_port())

    def market_ms(self) -> int:
        return self.clock.now_ns() // NS_PER_MS

    def wait_market(self, market_ms: int) -> None:
        """Sleep (wall) until the market clock reaches `market_ms`, checking every process meanwhile."""
        while (left_ms := market_ms - self.market_ms()) > 0:
            self.assert_alive()
            time.sleep(min(0.5, left_ms / 1000 / self.clock.speed))

    # ---- processes ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self.redis.start()
        self.questdb.start()
        symbols = ",".join(venue_symbol(s) for s in self.size.spot_symbols)
        rate = str(self.size.trades_per_sec)
        self.simulator, self.endpoints = start_simulator(
            self.directory,
            symbols=symbols,
            trades_per_sec=rate,
            history_trades_per_sec=rate,
            book_updates_per_sec="0",  # no book channel here: no quote churn to pay for at this speed
            kline_push_ms=str(MINUTE_MS),
            empty_kline_mode="flat",
        )
        self.writer = self._process(
            "writer",
            {
                "WRITER_REDIS_URL": self.redis.url,
                "WRITER_QUESTDB_HTTP_URL": self.questdb.http_url,
                "WRITER_HEALTH_HOST": "127.0.0.1",
                "WRITER_HEALTH_PORT": str(free_port()),
                "WRITER_BLOCK_MS": "100",
            },
        )
        addresses = ",".join(f"{v}=127.0.0.1:{self.collector_ports[v][1]}" for v in VENUES)
        health, grpc_port = self.validator_ports
        grace_secs = GRACE_WALL_SECS * self.clock.speed  # market seconds
        self.validator = self._process(
            "validator",
            {
                "VALIDATOR_REDIS_URL": self.redis.url,
                "VALIDATOR_QUESTDB_HTTP_URL": self.questdb.http_url,
                "VALIDATOR_HEALTH_HOST": "127.0.0.1",
                "VALIDATOR_HEALTH_PORT": str(health),
                "VALIDATOR_GRPC_HOST": "127.0.0.1",
                "VALIDATOR_GRPC_PORT": str(grpc_port),
                "VALIDATOR_BACKFILL_ADDRESSES": addresses,
                "VALIDATOR_GRACE_SECS": str(grace_secs),
                "VALIDATOR_STALE_AFTER_SECS": str(3600),
                "VALIDATOR_BACKFILL_POLL_SECS": "0.5",
                "VALIDATOR_FLUSH_INTERVAL_SECS": "0.5",
            },
        )
        self._wait_ready(health, "validator")
        for venue in VENUES:
            self.start_collector(venue)

    def _process(self, name: str, env: dict[str, str]) -> ManagedServer:
        role = name.split("-", maxsplit=1)[0] if not name.startswith("collector") else "collector"
        process = ManagedServer(
            name=name,
            argv=[sys.executable, "-m", "tickstrata", role],
            log_path=self.directory / f"{name}.log",
            env={**os.environ, **env},
        )
        process.start()
        return process

    def _wait_ready(self, health_port: int, what: str, timeout_secs: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_secs
        while readyz(health_port) != 200:
            self.assert_alive()
            assert time.monotonic() < deadline, f"{what} never became ready"
            time.sleep(0.1)

    def start_collector(self, venue: str) -> None:
        assert self.endpoints is not None
        health, grpc_port = self.collector_ports[venue]
        self.collector_lives[venue] += 1
        self.collectors[venue] = self._process(
            f"collector-{venue}-{self.collector_lives[venue]}",
            {
                "COLLECTOR_EXCHANGE": venue,
                "COLLECTOR_SYMBOLS": ",".join(instruments(self.size)[venue]),
                "COLLECTOR_CHANNELS": "trades,candles",
                "COLLECTOR_WS_URL": self.endpoints.ws_url(venue),
                "COLLECTOR_REST_URL": self.endpoints.rest_url(venue),
                "COLLECTOR_REDIS_URL": self.redis.url,
                "COLLECTOR_HEALTH_HOST": "127.0.0.1",
                "COLLECTOR_HEALTH_PORT": str(health),
                "COLLECTOR_GRPC_HOST": "127.0.0.1",
                "COLLECTOR_GRPC_PORT": str(grpc_port),
                "COLLECTOR_RECONNECT_INITIAL_SECS": "0.05",
                "COLLECTOR_RECONNECT_MAX_SECS": "0.5",
                "COLLECTOR_WATCHDOG_TIMEOUT_SECS": str(COLLECTOR_WATCHDOG_SECS),
            },
        )
        self._wait_ready(health, f"collector {venue}")

    def kill_collector(self, venue: str) -> None:
        process = self.collectors.pop(venue)
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        process.stop(timeout_secs=10)

    def kill_redis(self) -> None:
        """kill -9, then the same port and data directory: the AOF (fsync every second) brings it back."""
        port = self.redis.port
        assert self.redis.pid is not None
        os.kill(self.redis.pid, signal.SIGKILL)
        self.redis.stop(timeout_secs=10)
        self.redis = RedisServer(self.directory / "redis", port=port, extra_args=REDIS_AOF, maxmemory_bytes=2 * 1024**3)
        self.redis.start()

    def assert_alive(self) -> None:
        named = [("simulator", self.simulator), ("writer", self.writer), ("validator", self.validator)]
        for name, process in named + [(f"collector {v}", p) for v, p in self.collectors.items()]:
            if process is not None and process.exited():
                raise AssertionError(f"{name} exited on its own:\n{process.log_tail()}")

    def close(self) -> None:
        for process in [*self.collectors.values(), self.validator, self.writer, self.simulator]:
            if process is not None:
                process.stop(timeout_secs=30)
        self.questdb.stop()
        self.redis.stop()

    # ---- faults -------------------------------------------------------------------------------------------

    def post_fault(self, venue: str, fault: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.endpoints is not None
        reply = http_json(f"{self.endpoints.rest_url(venue)}/_sim/faults", {**fault, "venue": venue})
        return list(reply["applied"])

    def apply(self, fault: PlannedFault) -> AppliedFault:
        applied = AppliedFault(fault, self.market_ms())
        rate_per_min = self.size.trades_per_sec * 60
        if fault.kind == "drop":
            count = max(1, round(fault.minutes * rate_per_min))
            stream = f"{fault.symbol.lower()}@aggTrade"
            applied.records = self.post_fault(fault.venue, {"kind": "drop", "stream": stream, "count": count})
        elif fault.kind == "abrupt_close":
            applied.records = self.post_fault(fault.venue, {"kind": "abrupt_close"})
        elif fault.kind == "silent":
            applied.records = self.post_fault(fault.venue, {"kind": "silent", "duration_secs": 3600})
        elif fault.kind == "rest_429":
            applied.records = self.post_fault(fault.venue, {"kind": "rest_429", "count": 1, "retry_after_secs": 2})
        elif fault.kind == "outage":
            applied.records = self.post_fault(fault.venue, {"kind": "outage", "duration_secs": fault.minutes * 60})
        elif fault.kind == "empty_interval":
            spec = {"kind": "empty_interval", "symbol": fault.symbol, "minutes": fault.minutes}
            applied.records = self.post_fault(fault.venue, spec)
        elif fault.kind == "collector_kill":
            self.kill_collector(fault.venue)
            time.sleep(self.clock.wall_secs(fault.minutes * 60))
            self.start_collector(fault.venue)
            applied.recovered_market_ms = self.market_ms()
        elif fault.kind == "redis_kill":
            self.kill_redis()
            applied.recovered_market_ms = self.market_ms()
        else:
            raise ValueError(f"unknown planned fault {fault.kind}")
        return applied

    def simulator_faults(self, venue: str) -> list[dict[str, Any]]:
        assert self.endpoints is not None
        return list(http_json(f"{self.endpoints.rest_url(venue)}/_sim/faults")["faults"])

    def simulator_state(self, venue: str) -> dict[str, Any]:
        assert self.endpoints is not None
        state: dict[str, Any] = http_json(f"{self.endpoints.rest_url(venue)}/_sim/state")
        return state

    # ---- the validator ------------------------------------------------------------------------------------

    @property
    def validator_address(self) -> str:
        return f"127.0.0.1:{self.validator_ports[1]}"

    def completeness(self, exchange: str, symbol: str, start_ms: int, end_ms: int) -> pb.GetCompletenessResponse:
        with grpc.insecure_channel(self.validator_address) as channel:
            request = pb.GetCompletenessRequest(
                exchange=exchange, symbol=symbol, start_ns=start_ms * NS_PER_MS, end_ns=end_ms * NS_PER_MS
            )
            reply: pb.GetCompletenessResponse = pb_grpc.QualityServiceStub(channel).GetCompleteness(request, timeout=30)
        return reply

    def bucket_states(self, exchange: str, symbol: str, start_ms: int, end_ms: int) -> dict[int, int]:
        """minute start (ms) → BucketState number, for every minute of `[start_ms, end_ms)`."""
        states: dict[int, int] = {}
        token = ""
        with grpc.insecure_channel(self.validator_address) as channel:
            stub = pb_grpc.QualityServiceStub(channel)
            while True:
                request = pb.ListBucketsRequest(
                    exchange=exchange,
                    symbols=[symbol],
                    start_ns=start_ms * NS_PER_MS,
                    end_ns=end_ms * NS_PER_MS,
                    page_size=5000,
                    page_token=token,
                )
                reply: pb.ListBucketsResponse = stub.ListBuckets(request, timeout=30)
                for row in reply.rows:
                    hour_ms = row.hour_start_ns // NS_PER_MS
                    for index, state in enumerate(row.states):
                        states[hour_ms + index * MINUTE_MS] = state
                token = reply.next_page_token
                if not token:
                    break
        return {minute: state for minute, state in states.items() if start_ms <= minute < end_ms}

    def gaps(self, exchange: str, start_ms: int, end_ms: int) -> list[pb.Gap]:
        found: list[pb.Gap] = []
        token = ""
        with grpc.insecure_channel(self.validator_address) as channel:
            stub = pb_grpc.QualityServiceStub(channel)
            while True:
                request = pb.ListGapsRequest(
                    exchange=exchange,
                    start_ns=start_ms * NS_PER_MS,
                    end_ns=end_ms * NS_PER_MS,
                    page_size=1000,
                    page_token=token,
                )
                reply: pb.ListGapsResponse = stub.ListGaps(request, timeout=30)
                found.extend(reply.gaps)
                token = reply.next_page_token
                if not token:
                    return found


# ---- the venue's truth, read over REST after the run (paced: the test is a client under the same limits) ---------


def rest_get(rest_url: str, path: str, **params: Any) -> Any:
    url = f"{rest_url}{path}?{urllib.parse.urlencode(params)}"
    for _ in range(120):
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code != 429:
                raise
            time.sleep(float(error.headers.get("Retry-After", "1")))  # honoured: never inside it
    raise AssertionError(f"{url} kept answering 429")


def truth_candles(rest_url: str, exchange: str, symbol: str, start_ms: int, end_ms: int) -> dict[int, list[str]]:
    """open time (ms) → [open, high, low, close, volume] of every 1-minute candle the venue has in the window."""
    path = "/api/v3/klines" if exchange == "binance" else "/fapi/v1/klines"
    candles: dict[int, list[str]] = {}
    cursor = start_ms
    while cursor < end_ms:
        rows = rest_get(
            rest_url, path, symbol=venue_symbol(symbol), interval="1m", startTime=cursor, endTime=end_ms - 1, limit=1000
        )
        if not rows:
            break
        for row in rows:
            if start_ms <= int(row[0]) < end_ms:
                candles[int(row[0])] = [str(v) for v in row[1:6]]
        cursor = int(rows[-1][0]) + MINUTE_MS
    return candles


def truth_trade_id_bounds(rest_url: str, exchange: str, symbol: str, start_ms: int, end_ms: int) -> tuple[int, int]:
    """The first and last aggregate trade id the venue printed in `[start_ms, end_ms)` (ids are contiguous)."""
    path = "/api/v3/aggTrades" if exchange == "binance" else "/fapi/v1/aggTrades"
    name = venue_symbol(symbol)
    first: int | None = None
    for window_start in range(start_ms, end_ms, 3_600_000):
        rows = rest_get(
            rest_url, path, symbol=name, startTime=window_start, endTime=min(end_ms, window_start + 3_600_000) - 1
        )
        if rows:
            first = int(rows[0]["a"])
            break
    last: int | None = None
    span_ms = 5 * MINUTE_MS
    for _ in range(12):  # widen past a quiet spell, narrow below a full page: the page's last row is the last
        rows = rest_get(rest_url, path, symbol=name, startTime=end_ms - span_ms, endTime=end_ms - 1, limit=1000)
        if rows and len(rows) < 1000:
            last = int(rows[-1]["a"])
            break
        span_ms = min(3_600_000, span_ms * 2) if not rows else max(1000, span_ms // 2)
    assert first is not None, f"the venue printed no trade of {symbol} in the window"
    assert last is not None, f"no page of {symbol}'s last trades came back whole"
    return first, last


def iter_minutes(start_ms: int, end_ms: int) -> Iterator[int]:
    return iter(range(start_ms, end_ms, MINUTE_MS))
