"""`tickstrata up` (what `make demo` runs): real Redis and QuestDB, services as processes, a clean stop."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_up_starts_servers_and_services_then_stops_everything_cleanly(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tickstrata",
            "up",
            "--data-dir",
            str(tmp_path),
            "--duration-secs",
            "2",
            "--roles",
            "writer,query",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for line in (
        r"redis\s+ready in",
        r"questdb\s+ready in",
        r"writer\s+ready in .* health http://127\.0\.0\.1:\d+/readyz",
        r"query\s+ready in .* gRPC 127\.0\.0\.1:\d+",
        r"stopping: --duration-secs 2 elapsed",
        r"query\s+stopped \(exit code 0\)",
        r"writer\s+stopped \(exit code 0\)",
        r"stopped cleanly",
    ):
        assert re.search(line, output), f"missing {line!r} in:\n{output}"
    # Services stop before the servers they depend on.
    assert output.index("writer ") < output.index("questdb stopped") < output.index("redis stopped")
    assert re.search(r"writer\s+stopped", output)
    assert (tmp_path / "logs" / "writer.log").read_text().count("shutdown complete") == 1


def _up(data_dir: Path, duration_secs: int, *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tickstrata", "up", "--simulate", "--data-dir", str(data_dir),
         "--duration-secs", str(duration_secs), *extra],
        capture_output=True,
        text=True,
        timeout=duration_secs + 240,
        check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _final_stored(output: str) -> dict[str, int]:
    """The stored rows of the last view block (the one drawn at stop)."""
    [*_, last] = re.findall(r"stored in QuestDB: (.*)", output)
    return {table: int(count.replace(",", "")) for table, count in (part.split() for part in last.split(", "))}


def test_up_simulate_runs_the_pipeline_shows_it_live_answers_queries_and_resumes(tmp_path: Path) -> None:
    first = _up(tmp_path, 12)
    for name in ("writer", "query", "simulate", "collector-binance", "collector-binance-usdm"):
        assert re.search(rf"{name}\s+ready in", first), first
        assert re.search(rf"{name}\s+stopped \(exit code 0\)", first), first
    # Collectors stop before the simulator they read from, the writer after them.
    assert first.index("collector-binance-usdm ") < first.rindex("simulate ") < first.rindex("writer ")
    assert "resuming" not in first
    # The live view: a row per feed with a rate and a freshness, then what is stored.
    trades_rows = re.findall(r"\] binance\s+trades\s+([\d,]+)\s+([\d,]+) (ms|s)\s+([\d,]+)", first)
    assert trades_rows, first
    assert any(int(rate.replace(",", "")) > 0 for rate, *_ in trades_rows), trades_rows
    stored = _final_stored(first)
    for table in ("trades", "quotes", "books", "funding"):
        assert stored[table] > 0, stored
    assert re.search(r"gaps: none; quarantined: 0", first), first
    # The demo queries went through the query service: a latest price per demo symbol on binance.
    for symbol in ("BTC-USDT", "ETH-USDT", "SOL-USDT"):
        assert re.search(rf"\[up\]\s+{symbol}\s+binance \d+\.\d+", first), first
    collector_log = (tmp_path / "logs" / "collector-binance.log").read_text()
    assert "book synced" in collector_log
    assert "ERROR" not in collector_log

    second = _up(tmp_path, 4)
    assert f"resuming on the data under {tmp_path}" in second
    already = re.search(r"already stored: trades ([\d,]+)", second)
    assert already, second
    # What the first run stored is still there at the start of the second (the last view is drawn before the
    # services drain, so a few more rows may have landed after it), and the second run adds to it.
    resumed_with = int(already.group(1).replace(",", ""))
    assert resumed_with >= stored["trades"]
    assert _final_stored(second)["trades"] > resumed_with


def test_up_rejects_unknown_roles(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tickstrata", "up", "--data-dir", str(tmp_path), "--roles", "writer,trader"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown roles: trader" in result.stderr


def test_up_with_faults_ends_with_every_judged_minute_accounted_for(tmp_path: Path) -> None:
    """The issue's "done when": after a simulated run whose venues drop trades, cut a connection, go quiet for a
    minute and go down, the quality report shows nothing missing — the losses were backfilled or proven empty."""
    output = _up(tmp_path, 200, "--faults")
    assert "the simulated venues will misbehave" in output
    report = output[output.index("quality, as `tickstrata quality` shows it:") :]
    # Columns: complete, buckets, present, empty, backfilled, pending, missing.
    totals = re.search(r"all feeds\s+(\d+\.\d+)%" + r"\s+([\d,]+)" * 6, report)
    assert totals, report
    percent, *counts = totals.groups()
    _buckets, present, empty, backfilled, _pending, missing = (int(c.replace(",", "")) for c in counts)
    assert (percent, missing) == ("100.000000", 0), report
    assert present > 0, report
    assert backfilled > 0, report  # the dropped trades and the cut connection, fetched again
    assert empty > 0, report  # the quiet minute and the outage, confirmed by the venue
    assert "Open gaps, newest first: none" in report, report
    assert "duplicate" not in report  # a backfill's overlap with the live stream is not a violation
