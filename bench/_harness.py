"""Shared plumbing of the end-to-end benchmarks: real processes on loopback, always stopped, and small stats.

Everything a benchmark starts is registered on one ``contextlib.ExitStack`` (``Stack``) and stopped in reverse
order when the benchmark ends, fails, or is interrupted (Ctrl-C, or SIGTERM, which is turned into the same
``KeyboardInterrupt``). Nothing listens beyond 127.0.0.1.

Pieces:
- ``self_signed_cert``: a certificate for 127.0.0.1 through the ``openssl`` CLI (the simulator serves wss:// and
  https:// with it; clients trust it through ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``).
- ``start_simulator``, ``start_collector``: ``tickstrata simulate`` / ``tickstrata collector`` as child processes.
- ``ensure_cryptofeed``: a throwaway virtual environment under ``.cache/bench/`` with a pinned cryptofeed from
  PyPI (idempotent: a stamp file records what was installed), and ``start_cryptofeed`` to run it against the
  simulator with its Redis Streams backend.
- ``start_sink``: a receive-only WebSocket client in its own process that counts frames: the offered load.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

import redis

from tickstrata.localstack.paths import cache_dir
from tickstrata.localstack.process import ManagedServer, free_port
from tickstrata.localstack.simulator import SimulatorEndpoints
from tickstrata.localstack.simulator import start_simulator as launch_simulator

REPO: Final = Path(__file__).resolve().parents[1]
BENCH_CACHE: Final = cache_dir() / "bench"
START_TIMEOUT_SECS: Final = 60.0

CRYPTOFEED_VERSION: Final = "2.4.1"
# Pinned next to cryptofeed so the peer's environment does not drift between runs (versions that installed and
# ran with cryptofeed 2.4.1 on Python 3.11 here).
CRYPTOFEED_REQUIREMENTS: Final = (f"cryptofeed=={CRYPTOFEED_VERSION}", "redis==8.1.0", "uvloop==0.23.0")


class BenchError(RuntimeError):
    """A benchmark could not run (a process failed to start, a tool is missing); the message says why."""


# ---- process lifetime --------------------------------------------------------------------------------------


class Stack(contextlib.ExitStack):
    """An ExitStack that also turns SIGTERM into KeyboardInterrupt while it is open, so cleanup always runs."""

    def __enter__(self) -> Stack:
        super().__enter__()
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(_signum: int, _frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_term)
        self.callback(signal.signal, signal.SIGTERM, previous)
        return self

    def process(self, server: ManagedServer, *, stop_timeout_secs: float = 10.0) -> ManagedServer:
        """Start `server` and stop it (SIGTERM, then SIGKILL of its process group) when the stack closes."""
        self.callback(server.stop, timeout_secs=stop_timeout_secs)
        server.start()
        return server


def workdir(stack: Stack, name: str) -> Path:
    """A fresh directory under .cache/bench/runs/ for logs and data, removed when the stack closes."""
    root = BENCH_CACHE / "runs"
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    if not os.environ.get("BENCH_KEEP"):  # BENCH_KEEP=1 keeps the logs for a post-mortem
        stack.callback(shutil.rmtree, path, ignore_errors=True)
    return path


def http_ok(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (http on loopback)
        return bool(response.status == 200)
    return False


def wait_until(server: ManagedServer, probe_url: str, *, timeout_secs: float = START_TIMEOUT_SECS) -> None:
    server.wait_ready(lambda: http_ok(probe_url), timeout_secs=timeout_secs, interval_secs=0.05)


# ---- TLS -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path

    def client_env(self) -> dict[str, str]:
        """Variables making OpenSSL's default verify paths (Python's ssl, aiohttp, requests) trust the cert."""
        return {"SSL_CERT_FILE": str(self.cert), "REQUESTS_CA_BUNDLE": str(self.cert)}


def self_signed_cert(directory: Path) -> Tls:
    """A self-signed certificate for IP 127.0.0.1 (reused while it exists; valid 30 days)."""
    cert, key = directory / "localhost-cert.pem", directory / "localhost-key.pem"
    if cert.exists() and key.exists() and time.time() - cert.stat().st_mtime < 20 * 86_400:
        return Tls(cert, key)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise BenchError("the openssl CLI is needed to make a TLS certificate for the wss:// simulator")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return Tls(cert, key)


# ---- our services --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Simulator:
    server: ManagedServer
    endpoints: SimulatorEndpoints

    @property
    def ws_url(self) -> str:
        return self.endpoints.ws_url("binance")

    @property
    def rest_url(self) -> str:
        return self.endpoints.rest_url("binance")

    def state(self) -> dict[str, object]:
        """`/_sim/state` of the spot host (streams sent, connections and their queues)."""
        context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE")) if self.endpoints.tls else None
        url = f"{self.rest_url}/_sim/state"
        with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310 (loopback)
            state: dict[str, object] = json.loads(response.read())
            return state


def start_simulator(stack: Stack, directory: Path, *, tls: Tls | None, settings: Mapping[str, str]) -> Simulator:
    """`tickstrata simulate` on free loopback ports; `settings` are SIMULATOR_* names without the prefix."""
    server, endpoints = launch_simulator(
        directory, tls=(tls.cert, tls.key) if tls else None, **{"log_level": "WARNING", **settings}
    )
    stack.callback(server.stop, timeout_secs=10.0)
    return Simulator(server, endpoints)


def start_collector(
    stack: Stack,
    directory: Path,
    *,
    simulator: Simulator,
    redis_url: str,
    symbols: Sequence[str],
    extra_env: Mapping[str, str] = {},
    name: str = "collector",
) -> ManagedServer:
    """`tickstrata collector` for Binance spot trades of `symbols` (BTC-USDT form); waits for /readyz."""
    health_port = free_port()
    env = {
        **os.environ,
        "COLLECTOR_EXCHANGE": "binance",
        "COLLECTOR_SYMBOLS": ",".join(symbols),
        "COLLECTOR_CHANNELS": "trades",
        "COLLECTOR_WS_URL": simulator.ws_url,
        "COLLECTOR_REST_URL": simulator.rest_url,
        "COLLECTOR_REDIS_URL": redis_url,
        "COLLECTOR_HEALTH_HOST": "127.0.0.1",
        "COLLECTOR_HEALTH_PORT": str(health_port),
        "COLLECTOR_GRPC_PORT": "0",
        "COLLECTOR_LOG_LEVEL": "WARNING",
        **extra_env,
    }
    server = stack.process(
        ManagedServer(
            name=name,
            argv=[sys.executable, "-m", "tickstrata", "collector"],
            log_path=directory / f"{name}.log",
            env=env,
        ),
        stop_timeout_secs=3.0,  # a graceful drain of a backlog is not what is measured: SIGKILL after 3 s
    )
    wait_until(server, f"http://127.0.0.1:{health_port}/readyz")
    return server


# ---- the receive-only sink (offered load) ----------------------------------------------------------------------

# Run with our venv's Python: aiohttp's client (the fastest WebSocket client we have) counting frames, printing
# one JSON line per second: {"t": unix seconds, "frames": total so far}.
_SINK_SOURCE: Final = r"""
import asyncio, json, sys, time
import aiohttp

async def main(url):
    frames = 0
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, autoping=True, max_msg_size=0, compress=0) as ws:
            next_report = time.time() + 0.5
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        print(json.dumps({"closed": str(msg.data)}), flush=True)
                        return
                    continue
                frames += 1
                now = time.time()
                if now >= next_report:
                    print(json.dumps({"t": now, "frames": frames}), flush=True)
                    next_report = now + 0.2

asyncio.run(main(sys.argv[1]))
"""


def start_sink(stack: Stack, directory: Path, url: str, *, env: Mapping[str, str]) -> ManagedServer:
    script = directory / "sink.py"
    script.write_text(_SINK_SOURCE)
    log = directory / f"sink-{time.monotonic_ns()}.log"
    return stack.process(
        ManagedServer(name="sink", argv=[sys.executable, str(script), url], log_path=log, env={**os.environ, **env})
    )


# The same client, timing instead of counting: for frames received between `skip` and `until` seconds after it
# connected, (receive wall-clock time - the frame's `T`) in ms; prints {"lags_ms": [...]} once, then exits.
_LAG_SINK_SOURCE: Final = r"""
import asyncio, json, sys, time
import aiohttp

async def main(url, skip, until):
    lags = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, autoping=True, max_msg_size=0, compress=0) as ws:
            start = time.monotonic()
            while time.monotonic() - start < until:
                try:
                    msg = await asyncio.wait_for(ws.receive(), timeout=1)
                except asyncio.TimeoutError:
                    continue
                now_ns = time.time_ns()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                if time.monotonic() - start >= skip:
                    lags.append((now_ns - json.loads(msg.data)["data"]["T"] * 1_000_000) / 1e6)
    print(json.dumps({"lags_ms": lags}), flush=True)

asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
"""


def start_lag_sink(stack: Stack, directory: Path, url: str, *, skip_secs: float, until_secs: float) -> ManagedServer:
    script = directory / "lag_sink.py"
    script.write_text(_LAG_SINK_SOURCE)
    argv = [sys.executable, str(script), url, str(skip_secs), str(until_secs)]
    return stack.process(ManagedServer(name="lag-sink", argv=argv, log_path=directory / "lag-sink.log"))


def lag_sink_result(sink: ManagedServer, *, timeout_secs: float) -> list[float]:
    """Wait for the lag sink to finish; return its lags (ms)."""
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline and not sink.exited():
        time.sleep(0.1)
    for line in reversed(sink.log_path.read_text().splitlines()):
        with contextlib.suppress(ValueError, KeyError):
            return [float(x) for x in json.loads(line)["lags_ms"]]
    raise BenchError(f"the timing client reported nothing; log: {sink.log_path}")


def sink_frames(sink: ManagedServer) -> tuple[float, int] | None:
    """The sink's latest (unix time, frames received so far), or None before its first report."""
    last: tuple[float, int] | None = None
    with contextlib.suppress(OSError):
        for line in sink.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError):
                item = json.loads(line)
                if "frames" in item:
                    last = (float(item["t"]), int(item["frames"]))
    return last


# ---- cryptofeed in a throwaway virtual environment ---------------------------------------------------------------

# Runs inside the cryptofeed venv: Binance spot aggTrade for the given symbols from our simulator, written by
# cryptofeed's own Redis Streams backend (one XADD per trade into `trades-BINANCE-<symbol>`). cryptofeed 2.4.1
# accepts only wss:// addresses; the endpoints are overridden in a subclass as its docs suggest.
_CRYPTOFEED_SOURCE: Final = r"""
import asyncio, sys
from cryptofeed import FeedHandler
from cryptofeed.backends.redis import TradeStream
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
from cryptofeed.defines import TRADES
from cryptofeed.exchanges import Binance

ws_url, rest_url, redis_port, symbols = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")

class LocalBinance(Binance):
    websocket_endpoints = [WebsocketEndpoint(ws_url)]
    rest_endpoints = [RestEndpoint(rest_url, routes=Routes(
        "/api/v3/exchangeInfo", l2book="/api/v3/depth?symbol={}&limit={}", authentication="/api/v3/userDataStream"))]

handler = FeedHandler(config={"uvloop": True, "log": {"filename": sys.argv[5], "level": "WARNING"}})
handler.add_feed(LocalBinance(symbols=symbols, channels=[TRADES],
                              callbacks={TRADES: TradeStream(host="127.0.0.1", port=redis_port)}))
asyncio.set_event_loop(asyncio.new_event_loop())  # FeedHandler installed uvloop's policy, which has no loop yet
handler.run()
"""


def cryptofeed_env_dir() -> Path:
    return BENCH_CACHE / f"cryptofeed-{CRYPTOFEED_VERSION}"


def ensure_cryptofeed(*, log: bool = True) -> Path:
    """Create (once) the throwaway venv with the pinned cryptofeed; return its Python. Idempotent."""
    env_dir = cryptofeed_env_dir()
    python = env_dir / "bin" / "python"
    stamp = env_dir / "installed.txt"
    wanted = "\n".join(CRYPTOFEED_REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if log:
        print(f"installing cryptofeed {CRYPTOFEED_VERSION} into {env_dir} (once; ~30 s) ...", flush=True)
    shutil.rmtree(env_dir, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    try:
        subprocess.run([base, "-m", "venv", str(env_dir)], check=True, capture_output=True, text=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *CRYPTOFEED_REQUIREMENTS],
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as error:
        shutil.rmtree(env_dir, ignore_errors=True)
        raise BenchError(f"could not install cryptofeed {CRYPTOFEED_VERSION}: {error.stderr[-2000:]}") from None
    stamp.write_text(wanted)
    return python


def start_cryptofeed(
    stack: Stack,
    directory: Path,
    *,
    python: Path,
    simulator: Simulator,
    redis_port: int,
    symbols: Sequence[str],
    tls: Tls,
) -> ManagedServer:
    script = directory / "cryptofeed_run.py"
    script.write_text(_CRYPTOFEED_SOURCE)
    tag = time.monotonic_ns()
    argv = [str(python), str(script), simulator.ws_url, simulator.rest_url, str(redis_port), ",".join(symbols)]
    argv.append(str(directory / f"cryptofeed-{tag}.log"))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")} | tls.client_env()
    return stack.process(
        ManagedServer(name="cryptofeed", argv=argv, log_path=directory / f"cryptofeed-out-{tag}.log", env=env),
        stop_timeout_secs=3.0,
    )


# ---- Redis -------------------------------------------------------------------------------------------------

Entry = tuple[bytes, dict[bytes, bytes]]
_PAGE: Final = 5000
_MAX_SEQ: Final = 18446744073709551615


def redis_ms(client: redis.Redis) -> int:
    """The Redis server's clock in ms: the clock stream entry ids are made of."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def entries_between(client: redis.Redis, stream: str, start_ms: int, end_ms: int) -> Iterator[list[Entry]]:
    """Pages of the entries of `stream` that Redis added within [start_ms, end_ms) (by their ids)."""
    lower = f"{start_ms}-0"
    while True:
        page = cast("list[Entry]", client.xrange(stream, min=lower, max=f"{end_ms - 1}-{_MAX_SEQ}", count=_PAGE))
        yield page
        if len(page) < _PAGE:
            return
        lower = "(" + page[-1][0].decode()


# ---- numbers -------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with right-aligned numeric columns (all but the first)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


@contextlib.contextmanager
def phase(label: str) -> Iterator[None]:
    started = time.monotonic()
    print(f"  {label} ...", end="", flush=True)
    try:
        yield
    finally:
        print(f" {time.monotonic() - started:.1f} s", flush=True)
