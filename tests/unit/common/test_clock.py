"""The market clock: wall time by default, one scaled clock from TICKSTRATA_MARKET_CLOCK when a run shares it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tickstrata.common.clock import MARKET_CLOCK_ENV, ScaledClock, parse_market_clock, scaled_clock_from_env

NS_PER_MS = 1_000_000


def test_a_scaled_clock_runs_speed_times_faster_from_its_start() -> None:
    clock = parse_market_clock("1000000:500000:60")
    assert clock == ScaledClock(anchor_wall_ms=1_000_000, start_ms=500_000, speed=60.0)
    assert clock.now_ns(wall_ns=1_000_000 * NS_PER_MS) == 500_000 * NS_PER_MS
    # Two wall seconds later, two market minutes have passed.
    assert clock.now_ns(wall_ns=1_002_000 * NS_PER_MS) == (500_000 + 120_000) * NS_PER_MS
    assert clock.wall_secs(120.0) == 2.0
    assert parse_market_clock(clock.env_value()) == clock


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1:2", "three fields"),
        ("a:2:3", "anchor_wall_ms"),
        ("1:2:0", "speed must be in"),
        ("1:2:-5", "speed must be in"),
        ("1:2:20000", "speed must be in"),
    ],
)
def test_a_malformed_clock_is_refused_naming_the_variable(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=MARKET_CLOCK_ENV) as error:
        parse_market_clock(value)
    assert message in str(error.value)


def test_without_the_variable_there_is_no_scaled_clock() -> None:
    assert scaled_clock_from_env({}) is None
    assert scaled_clock_from_env({MARKET_CLOCK_ENV: "  "}) is None
    assert scaled_clock_from_env({MARKET_CLOCK_ENV: "5:6:2"}) == ScaledClock(5, 6, 2.0)


def test_a_process_reads_market_time_from_the_variable_at_import() -> None:
    # A fresh interpreter: the module reads the variable once, at import, as a service does at start.
    code = (
        "import time; from tickstrata.common import clock; "
        "print(clock.market_time_ms(), clock.market_speed(), int(time.time() * 1000))"
    )
    env_value = f"{10**12}:{10**9}:1000"  # anchored in 2001: market time is far ahead of its start by now
    out = subprocess.run(
        [sys.executable, "-c", code], env={MARKET_CLOCK_ENV: env_value}, capture_output=True, text=True, check=True
    ).stdout.split()
    market_ms, speed, wall_ms = int(out[0]), float(out[1]), int(out[2])
    assert speed == 1000.0
    # Read next to the wall clock: well within a wall second (a thousand market seconds) of it.
    assert abs(10**9 + (wall_ms - 10**12) * 1000 - market_ms) <= 1000 * 1000
    bad = subprocess.run(
        [sys.executable, "-c", "import tickstrata.common.clock"],
        env={MARKET_CLOCK_ENV: "x"},
        capture_output=True,
        check=False,
    )
    assert bad.returncode != 0
    assert MARKET_CLOCK_ENV.encode() in bad.stderr
