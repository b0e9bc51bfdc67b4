"""A second load generator for bench_query_latest.py: ghz, a Go gRPC benchmarking client, when it is installed.

Why: at 1k requests/s the Python client runs at ~75% of its own ceiling on 2 vCPUs, so its queueing shows in every
p99 it measures. ghz sends from goroutines with its own rate limiter, a different instrument with different bias;
the two tables side by side tell the service's share from the client's. Installed by `bash scripts/setup.sh bench`
(`make bench` does it) from the Go module proxy into `.cache/bin/ghz`; without it the bench prints that it skipped.

ghz learns the RPCs from a protoset written here from the generated Python descriptors (no .proto files needed).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from bench import _harness as h
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2

from tickstrata.localstack.paths import cache_dir
from tickstrata.marketdata.v1 import market_data_service_pb2

CONCURRENCY: Final = 16
"""Workers: enough that a slow call does not hold back the next ones due (which would hide their wait)."""

CALLS: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "no-op (health Check)": ("grpc.health.v1.Health.Check", {"service": ""}),
    "GetLatestPrice named, mirror": (
        "tickstrata.marketdata.v1.MarketDataService.GetLatestPrice",
        {"symbol": "BTC-USDT", "exchanges": ["binance", "coinbase", "kraken", "okx", "bybit"]},
    ),
    "GetLatestPrice all venues, mirror": (
        "tickstrata.marketdata.v1.MarketDataService.GetLatestPrice",
        {"symbol": "BTC-USDT"},
    ),
}


def ghz_path() -> Path | None:
    path = cache_dir() / "bin" / "ghz"
    return path if path.exists() else None


def write_protoset(path: Path, modules: Iterable[ModuleType] = (health_pb2, market_data_service_pb2)) -> Path:
    """A FileDescriptorSet of `modules` and everything they import, dependencies first."""
    files: list[descriptor_pb2.FileDescriptorProto] = []
    seen: set[str] = set()

    def add(file: Any) -> None:
        if file.name in seen:
            return
        for dependency in file.dependencies:
            add(dependency)
        seen.add(file.name)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        files.append(proto)

    for module in modules:
        add(module.DESCRIPTOR)
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=files).SerializeToString())
    return path


def run(
    ghz: Path, protoset: Path, address: str, call: str, data: dict[str, Any], *, rate: float, count: int, skip: int
) -> list[float]:
    """Latencies (µs) of `count` calls sent at `rate`/s, after `skip` warm-up calls; raise on any failed call."""
    argv = [
        str(ghz), "--insecure", "--protoset", str(protoset), "--call", call, "-d", json.dumps(data),
        "--rps", str(int(rate)), "-n", str(count + skip), "--skipFirst", str(skip),
        "-c", str(CONCURRENCY), "--connections", "1", "-O", "json", address,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ghz failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    report = json.loads(done.stdout)
    failed = {status: n for status, n in (report.get("statusCodeDistribution") or {}).items() if status != "OK"}
    if failed:
        raise RuntimeError(f"ghz: calls failed: {failed} {report.get('errorDistribution')}")
    return [detail["latency"] / 1000 for detail in report.get("details") or []]


def report(
    directory: Path, port: int, *, rate: float, requests: int, reps: int, goal_p99_us: float, goal_ratio: float
) -> None:
    """The same open loop from ghz, when installed; contenders rotate between repetitions, samples are pooled."""
    ghz = ghz_path()
    if ghz is None:
        print("\n(ghz not installed: `bash scripts/setup.sh bench` builds it; the Go-client table is skipped)")
        return
    protoset = write_protoset(directory / "marketdata.protoset")
    names = list(CALLS)
    pooled: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        with h.phase(f"ghz repetition {rep + 1}/{reps}: {requests} calls each at {rate:,.0f}/s"):
            for name in order:
                call, data = CALLS[name]
                pooled[name] += run(ghz, protoset, f"127.0.0.1:{port}", call, data, rate=rate, count=requests, skip=200)
    noop_p50, noop_p99 = h.percentile(pooled[names[0]], 50), h.percentile(pooled[names[0]], 99)
    rows = []
    for name in names:
        p50, p99 = h.percentile(pooled[name], 50), h.percentile(pooled[name], 99)
        rows.append(
            [
                name,
                str(len(pooled[name])),
                f"{p50:.0f}",
                f"{p99:.0f}",
                f"{p50 / noop_p50:.2f}x",
                f"{p99 / noop_p99:.2f}x",
            ]
        )
    print()
    print(f"The same calls from ghz (Go client, {CONCURRENCY} workers, one connection) at {rate:,.0f}/s, µs:")
    print(h.table(["contender", "samples", "p50 µs", "p99 µs", "p50 vs no-op", "p99 vs no-op"], rows))
    for name in names[1:]:
        p99 = h.percentile(pooled[name], 99)
        absolute = "met" if p99 < goal_p99_us else "MISSED"
        relative = "met" if p99 <= goal_ratio * noop_p99 else "MISSED"
        print(
            f"  {name}: p99 {p99:.0f} µs: absolute goal {absolute}; {p99 / noop_p99:.2f}x no-op: ratio goal {relative}"
        )
