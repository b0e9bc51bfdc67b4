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


def test_up_simulate_runs_a_collector_per_feed_against_the_simulator(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tickstrata",
            "up",
            "--simulate",
            "--data-dir",
            str(tmp_path),
            "--duration-secs",
            "3",
            "--roles",
            "simulate,collector",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for name in ("simulate", "collector-binance", "collector-binance-usdm"):
        assert re.search(rf"{name}\s+ready in", output), output
        assert re.search(rf"{name}\s+stopped \(exit code 0\)", output), output
    # Collectors stop before the simulator they read from.
    assert output.index("collector-binance-usdm ") < output.rindex("simulate ")
    final = re.search(r"final stream entries: (.*); latest prices cached: (\d+)", output)
    assert final, output
    counts = dict(part.split("=") for part in final.group(1).split())
    assert int(counts["md:binance:trades"]) > 0
    assert int(counts["md:binance-usdm:funding"]) > 0
    assert counts["qa:quarantine"] == "0"
    assert int(final.group(2)) == 8  # 5 spot + 3 perpetual symbols have a latest price
    collector_log = (tmp_path / "logs" / "collector-binance.log").read_text()
    assert "book synced" in collector_log
    assert "ERROR" not in collector_log


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
