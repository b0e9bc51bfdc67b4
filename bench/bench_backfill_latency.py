"""Repair latency: a gap's end → its minutes `backfilled`, through the validator and the collectors' BackfillService
under the simulated venues' REST limits (Binance spot 6000, USD-M 2400 weight per minute).

Method (printed with the results):
- The validator scenario's stack (`tests/integration/scenario_harness.py`): simulator, one collector per venue
  (trades and candles), Redis, writer, QuestDB and validator as real processes on one scaled market clock (a
  backdated day at `--speed`x); seeded faults: trades dropped in transit, connections cut, sockets gone silent,
  a collector `kill -9`.
- Latency of a gap = the validator's `ts_closed_ns` (RESOLVED) - the gap's `end_ns`, both market time, divided by
  the speed: wall seconds, what an operator waits. It includes the watermark (`VALIDATOR_GRACE_SECS`, three wall
  seconds here: a minute is judged only once it ended that long ago), the ask, the collector's REST fetches, the
  backfilled rows' trip through Redis and the validator's flush.
- Baseline in the same run: the collectors' own job time for the same gaps (`backfill started` → `backfill
  finished` in their logs, wall clock): what the venue and the collector alone cost. The ratio is the price of
  judging behind a watermark and proving the rows arrived.

Run: ``.cache/venv/bin/python bench/bench_backfill_latency.py [--quick] [--seed N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the scenario's stack lives with the tests

from tests.integration.scenario_harness import (
    GRACE_WALL_SECS,
    MINUTE_MS,
    VENUES,
    ScenarioSize,
    Stack,
    backdated_clock,
    instruments,
    plan_faults,
)

from tickstrata.common.clock import MARKET_CLOCK_ENV
from tickstrata.quality.v1 import quality_service_pb2 as pb

NS_PER_SEC = 1_000_000_000


def _size(quick: bool, speed: float) -> ScenarioSize:
    return ScenarioSize(
        spot_symbols=("BTC-USDT", "ETH-USDT") if quick else ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT"),
        market_minutes=120 if quick else 360,
        speed=speed,
        trades_per_sec=0.3,
        drops=10 if quick else 40,
        disconnects=2 if quick else 6,
        silences=2 if quick else 6,
        collector_kills=1 if quick else 2,
        redis_kills=0,
        outages=0,
        empty_intervals=0,
        rest_429s=0,
    )


def _job_secs(directory: Path) -> dict[str, float]:
    """job id → wall seconds from `backfill started` to `backfill finished`, from every collector log."""
    started: dict[str, float] = {}
    took: dict[str, float] = {}
    for log in directory.glob("collector-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            job = entry.get("job_id")
            at = datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()
            if entry.get("message") == "backfill started" and job:
                started[job] = at
            elif entry.get("message") == "backfill finished" and job in started:
                took[job] = at - started[job]
    return took


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 symbols, 2 market hours, 15 faults")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--speed", type=float, default=120.0)
    args = parser.parse_args()
    size = _size(args.quick, args.speed)
    clock = backdated_clock(size.speed)
    os.environ[MARKET_CLOCK_ENV] = clock.env_value()  # inherited by every process the stack starts
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        directory = Path(tmp)
        stack = Stack(directory, size, clock)
        try:
            print(f"starting the stack ({sum(len(v) for v in instruments(size).values())} instruments, "
                  f"{size.market_minutes} market minutes at {size.speed:g}x)", flush=True)  # fmt: skip
            stack.start()
            check_start = (stack.market_ms() // MINUTE_MS + 5) * MINUTE_MS
            check_end = check_start + size.market_minutes * MINUTE_MS
            plan = plan_faults(size, args.seed, check_start, check_end)
            for number, fault in enumerate(plan, start=1):
                stack.wait_market(fault.at_ms)
                stack.apply(fault)
                print(f"  fault {number}/{len(plan)}: {fault.kind} {fault.venue} {fault.symbol}", flush=True)
            stack.wait_market(check_end + 10 * MINUTE_MS)
            deadline = time.monotonic() + 300
            while True:
                gaps = [g for venue in VENUES for g in stack.gaps(venue, check_start, check_end)]
                if all(g.state == pb.GAP_STATE_RESOLVED for g in gaps) or time.monotonic() > deadline:
                    break
                time.sleep(1)
            jobs = _job_secs(directory)
        finally:
            stack.close()
    resolved = [g for g in gaps if g.state == pb.GAP_STATE_RESOLVED and g.ts_closed_ns]
    latency = [max(0.0, (g.ts_closed_ns - g.end_ns) / NS_PER_SEC / size.speed) for g in resolved]
    job_secs = [jobs[g.backfill_job_id] for g in resolved if g.backfill_job_id in jobs]
    print(f"\ngaps: {len(gaps)} recorded, {len(resolved)} resolved; {len(job_secs)} with their collector job's log")
    if not latency or not job_secs:
        print("nothing to measure")
        return
    print("wall seconds            p50      p99      max")
    for name, values in (("gap end -> backfilled", latency), ("collector job alone", job_secs)):
        print(f"{name:<22} {_percentile(values, 0.5):7.2f}  {_percentile(values, 0.99):7.2f}  {max(values):7.2f}")
    print(
        f"ratio p50 {_percentile(latency, 0.5) / max(1e-9, _percentile(job_secs, 0.5)):.1f}x; watermark floor "
        f"{GRACE_WALL_SECS:.1f} s (grace) + up to {60 / size.speed:.1f} s (the minute's end); mean job "
        f"{statistics.fmean(job_secs):.2f} s"
    )


if __name__ == "__main__":
    main()
