"""The simulator speaks Binance spot and USD-M over real sockets, exactly as a Binance client expects.

Each test starts both venue hosts in-process on free 127.0.0.1 ports (fast timers, high trade rates) and talks to
them with the same clients the collector uses: `websockets` for streams, `aiohttp` for REST and control.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tickstrata.common.clock import MARKET_CLOCK_ENV, ScaledClock
from tickstrata.localstack.simulator import start_simulator
from tickstrata.simulator.app import SimulatorApp
from tickstrata.simulator.replay import load_capture, replay
from tickstrata.simulator.settings import SimulatorSettings

pytestmark = pytest.mark.integration

FAST: dict[str, Any] = {
    "spot_port": 0,
    "usdm_port": 0,
    "symbols": "BTCUSDT,ETHUSDT",
    "trades_per_sec": 40.0,
    "history_minutes": 90,
    # Fast keepalive, but slow enough that the client's pongs (which count as incoming messages, as on Binance)
    # leave room under the 5 messages/s limit.
    "spot_ping_interval_secs": 0.5,
    "spot_pong_timeout_secs": 1.5,
    "usdm_ping_interval_secs": 0.5,
    "usdm_pong_timeout_secs": 1.5,
    "ban_secs": 2,
}


class Sim:
    def __init__(self, app: SimulatorApp, session: aiohttp.ClientSession, scheme: str = "http") -> None:
        self.app = app
        self.session = session
        self.spot = f"{scheme}://127.0.0.1:{app.ports['binance']}"
        self.usdm = f"{scheme}://127.0.0.1:{app.ports['binance-usdm']}"
        ws_scheme = "wss" if scheme == "https" else "ws"
        self.ws_spot = f"{ws_scheme}://127.0.0.1:{app.ports['binance']}"
        self.ws_usdm = f"{ws_scheme}://127.0.0.1:{app.ports['binance-usdm']}"

    async def fault(self, base: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(f"{base}/_sim/faults", json=body) as response:
            assert response.status == 200, await response.text()
            applied: dict[str, Any] = (await response.json())["applied"][0]
            return applied

    async def state(self, base: str) -> dict[str, Any]:
        async with self.session.get(f"{base}/_sim/state") as response:
            result: dict[str, Any] = await response.json()
            return result


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Sim]:
    overrides: dict[str, Any] = getattr(request, "param", {})
    app = SimulatorApp(SimulatorSettings(**{**FAST, **overrides}))
    await app.start_hosts()
    try:
        async with aiohttp.ClientSession() as session:
            yield Sim(app, session)
    finally:
        await app.close()


async def recv_json(ws: ClientConnection, timeout_secs: float = 5.0) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), timeout_secs)
    result: dict[str, Any] = json.loads(message)
    return result


async def collect(ws: ClientConnection, secs: float) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + secs
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            frames.append(await recv_json(ws, left))
        except TimeoutError:
            break
    return frames


async def until_reply(ws: ClientConnection, request_id: int) -> dict[str, Any]:
    for _ in range(2000):
        frame = await recv_json(ws)
        if frame.get("id") == request_id and ("result" in frame or "error" in frame):
            return frame
    raise AssertionError(f"no reply to request {request_id}")


async def read_until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], websockets.ConnectionClosed]:
    frames: list[dict[str, Any]] = []
    try:
        while True:
            frames.append(await recv_json(ws))
    except websockets.ConnectionClosed as closed:
        return frames, closed


AGG_FIELDS_SPOT = {"e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"}


async def test_combined_stream_subscribe_ack_list_and_errors(sim: Sim) -> None:
    async with websockets.connect(f"{sim.ws_spot}/stream?streams=btcusdt@aggTrade") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@bookTicker"], "id": 1}))
        assert await until_reply(ws, 1) == {"result": None, "id": 1}
        frames = await collect(ws, 0.8)
        streams = {f["stream"] for f in frames}
        assert streams == {"btcusdt@aggTrade", "ethusdt@bookTicker"}
        agg = next(f["data"] for f in frames if f["stream"] == "btcusdt@aggTrade")
        assert set(agg) == AGG_FIELDS_SPOT
        assert agg["e"] == "aggTrade"
        assert agg["s"] == "BTCUSDT"
        assert len(agg["p"].split(".")[1]) == 8
        assert len(agg["q"].split(".")[1]) == 8
        ticker = next(f["data"] for f in frames if f["stream"] == "ethusdt@bookTicker")
        assert set(ticker) == {"u", "s", "b", "B", "a", "A"}
        assert float(ticker["b"]) < float(ticker["a"])

        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        assert await until_reply(ws, 2) == {"result": ["btcusdt@aggTrade", "ethusdt@bookTicker"], "id": 2}
        await asyncio.sleep(1.1)  # stay under 5 messages a second
        await ws.send(json.dumps({"method": "FOO", "id": 3}))
        error = await until_reply(ws, 3)
        assert error["error"]["code"] == 2
        assert "unknown variant" in error["error"]["msg"]
        await ws.send("{nope")
        for _ in range(2000):
            frame = await recv_json(ws)
            if "error" in frame:
                assert frame["error"]["code"] == 3
                assert frame["id"] is None
                break


async def test_raw_path_sends_unwrapped_events_and_klines(sim: Sim) -> None:
    async with websockets.connect(f"{sim.ws_spot}/ws/btcusdt@aggTrade/btcusdt@kline_1m") as ws:
        kline = None
        for _ in range(5000):
            frame = await recv_json(ws)
            assert "stream" not in frame
            if frame["e"] == "kline":
                kline = frame
                break
        assert kline is not None
        assert set(kline["k"]) == {"t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"}
        assert kline["k"]["T"] == kline["k"]["t"] + 59_999
        assert kline["k"]["i"] == "1m"


async def test_more_than_five_messages_a_second_closes_the_connection(sim: Sim) -> None:
    async with websockets.connect(f"{sim.ws_spot}/ws") as ws:
        for i in range(6):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        _, closed = await read_until_closed(ws)
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1008


async def test_server_pings_and_the_pong_deadline(sim: Sim) -> None:
    async with sim.session.ws_connect(f"{sim.ws_spot}/ws/btcusdt@aggTrade", autoping=False) as ws:
        started = time.monotonic()
        kinds: list[aiohttp.WSMsgType] = []
        while not ws.closed and time.monotonic() - started < 5:
            message = await ws.receive(timeout=5)
            kinds.append(message.type)
        assert aiohttp.WSMsgType.PING in kinds  # pinged, never answered ...
        assert ws.closed
        assert ws.close_code == 1008
        assert 1.5 < time.monotonic() - started < 3.5
    async with websockets.connect(f"{sim.ws_spot}/ws/btcusdt@aggTrade") as ws:  # answers pings by itself
        await collect(ws, 2.0)
        state = await sim.state(sim.spot)
        conn = next(c for c in state["connections"] if c["path"] == "/ws/btcusdt@aggTrade")
        assert conn["pings_sent"] >= 3
        assert conn["pongs_received"] >= 3


async def test_usdm_routes_streams_to_public_and_market(sim: Sim) -> None:
    public = "btcusdt@aggTrade/btcusdt@depth@100ms/btcusdt@bookTicker"
    async with (
        websockets.connect(f"{sim.ws_usdm}/public/stream?streams={public}") as pub,
        websockets.connect(f"{sim.ws_usdm}/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s") as market,
        websockets.connect(f"{sim.ws_usdm}/ws/btcusdt@markPrice@1s") as unrouted,
    ):
        pub_frames, market_frames, unrouted_frames = await asyncio.gather(
            collect(pub, 1.5), collect(market, 1.5), collect(unrouted, 1.5)
        )
    assert {f["stream"] for f in pub_frames} == {"btcusdt@depth@100ms", "btcusdt@bookTicker"}
    assert {f["stream"] for f in market_frames} == {"btcusdt@aggTrade", "btcusdt@markPrice@1s"}
    assert unrouted_frames == []
    depth = [f["data"] for f in pub_frames if f["stream"] == "btcusdt@depth@100ms"]
    assert set(depth[0]) == {"e", "E", "T", "s", "U", "u", "pu", "b", "a"}
    for previous, current in itertools.pairwise(depth):
        assert current["pu"] == previous["u"]
    ticker = next(f["data"] for f in pub_frames if f["stream"] == "btcusdt@bookTicker")
    assert ticker["e"] == "bookTicker"
    assert {"E", "T", "u"} <= set(ticker)
    agg = next(f["data"] for f in market_frames if f["stream"] == "btcusdt@aggTrade")
    assert "nq" in agg
    assert "M" not in agg
    assert len(agg["p"].split(".")[1]) == 2  # USD-M BTCUSDT: two decimals, 0.10 tick
    mark = next(f["data"] for f in market_frames if f["stream"] == "btcusdt@markPrice@1s")
    assert set(mark) == {"e", "E", "s", "p", "i", "P", "r", "T"}
    assert mark["T"] % (8 * 3600 * 1000) == 0


async def get(sim: Sim, url: str) -> tuple[int, dict[str, str], Any]:
    async with sim.session.get(url) as response:
        return response.status, dict(response.headers), await response.json()


async def test_rest_shapes_weights_and_errors(sim: Sim) -> None:
    status, headers, info = await get(sim, f"{sim.spot}/api/v3/exchangeInfo")
    assert status == 200
    assert headers["X-MBX-USED-WEIGHT-1M"] == "20"
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert (btc["status"], btc["baseAsset"], btc["quoteAsset"]) == ("TRADING", "BTC", "USDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"

    status, headers, depth = await get(sim, f"{sim.spot}/api/v3/depth?symbol=BTCUSDT&limit=10")
    assert headers["X-MBX-USED-WEIGHT-1M"] == "25"
    assert set(depth) == {"lastUpdateId", "bids", "asks"}
    assert len(depth["bids"]) == 10
    assert float(depth["bids"][0][0]) < float(depth["asks"][0][0])
    _, headers, _ = await get(sim, f"{sim.spot}/api/v3/depth?symbol=BTCUSDT&limit=5000")
    assert headers["X-MBX-USED-WEIGHT-1M"] == "275"

    status, _, rows = await get(sim, f"{sim.spot}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=3")
    assert status == 200
    assert len(rows) == 3
    assert all(len(row) == 12 for row in rows)
    assert rows[1][0] == rows[0][0] + 60_000
    assert rows[0][6] == rows[0][0] + 59_999
    start = rows[0][0]
    _, _, later = await get(sim, f"{sim.spot}/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={start}&limit=2")
    assert later[0] == rows[0]  # oldest first from startTime

    now = int(time.time() * 1000)
    _, _, trades = await get(sim, f"{sim.spot}/api/v3/aggTrades?symbol=BTCUSDT&startTime={now - 60_000}&endTime={now}")
    assert trades
    assert set(trades[0]) == {"a", "p", "q", "f", "l", "T", "m", "M"}
    _, _, from_id = await get(sim, f"{sim.spot}/api/v3/aggTrades?symbol=BTCUSDT&fromId={trades[0]['a']}&limit=5")
    assert from_id == trades[:5]
    status, _, error = await get(sim, f"{sim.spot}/api/v3/aggTrades?symbol=BTCUSDT&startTime=0&endTime=3600001")
    assert (status, error["code"]) == (400, -1127)
    status, _, error = await get(sim, f"{sim.spot}/api/v3/depth?symbol=NOPE")
    assert (status, error) == (400, {"code": -1121, "msg": "Invalid symbol."})

    status, headers, _ = await get(sim, f"{sim.usdm}/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1500")
    assert status == 200
    assert headers["X-MBX-USED-WEIGHT-1M"] == "10"
    status, _, depth = await get(sim, f"{sim.usdm}/fapi/v1/depth?symbol=BTCUSDT&limit=5")
    assert set(depth) == {"lastUpdateId", "E", "T", "bids", "asks"}
    assert len(depth["asks"]) == 5
    status, _, error = await get(sim, f"{sim.usdm}/fapi/v1/depth?symbol=BTCUSDT&limit=7")
    assert (status, error["code"]) == (400, -1130)
    status, _, premium = await get(sim, f"{sim.usdm}/fapi/v1/premiumIndex?symbol=ETHUSDT")
    assert premium["symbol"] == "ETHUSDT"
    assert {"markPrice", "indexPrice", "lastFundingRate", "nextFundingTime"} <= set(premium)


async def test_429_then_418_when_the_client_does_not_back_off(sim: Sim) -> None:
    record = await sim.fault(sim.spot, {"kind": "rest_429", "retry_after_secs": 3})
    assert record["venue"] == "binance"
    status, headers, body = await get(sim, f"{sim.spot}/api/v3/ping")
    assert (status, headers["Retry-After"], body["code"]) == (429, "3", -1003)
    status, headers, body = await get(sim, f"{sim.spot}/api/v3/time")
    assert (status, headers["Retry-After"]) == (418, "2")
    assert "IP banned until" in body["msg"]
    await asyncio.sleep(2.1)
    status, _, body = await get(sim, f"{sim.spot}/api/v3/time")
    assert status == 200
    assert "serverTime" in body
    rest = (await sim.state(sim.spot))["rest"]
    assert rest["responses"] == {"429": 1, "418": 1, "200": 1}


@pytest.mark.parametrize("sim", [{"spot_weight_limit_per_min": 300}], indirect=True)
async def test_weight_over_the_limit_answers_429(sim: Sim) -> None:
    status, _, _ = await get(sim, f"{sim.spot}/api/v3/depth?symbol=BTCUSDT&limit=5000")
    assert status == 200
    status, headers, _ = await get(sim, f"{sim.spot}/api/v3/depth?symbol=BTCUSDT&limit=5000")
    assert status == 429
    assert headers["X-MBX-USED-WEIGHT-1M"] == "500"
    assert int(headers["Retry-After"]) >= 1


async def test_dropped_frames_match_the_ground_truth(sim: Sim) -> None:
    async with websockets.connect(f"{sim.ws_spot}/ws/btcusdt@aggTrade") as ws:
        first = await recv_json(ws)
        record = await sim.fault(sim.spot, {"kind": "drop", "stream": "btcusdt@aggTrade", "count": 4})
        frames = [first]
        deadline = asyncio.get_running_loop().time() + 30
        # Until the four drops have happened and a frame after them arrived: on a loaded machine the venue's
        # trades may take longer than any fixed window to get past them.
        while True:
            frames += await collect(ws, 0.5)
            async with sim.session.get(f"{sim.spot}/_sim/faults") as response:
                faults = (await response.json())["faults"]
            truth = next(f for f in faults if f["id"] == record["id"])
            dropped = [d["first_id"] for d in truth["effects"].get("dropped", [])]
            if truth["remaining"] == 0 and dropped and max(f["a"] for f in frames) > max(dropped):
                break
            assert asyncio.get_running_loop().time() < deadline, f"drops not over: {truth}"
    ids = [f["a"] for f in frames]
    missing = sorted(set(range(ids[0], ids[-1] + 1)) - set(ids))
    assert missing == dropped
    assert len(missing) == 4
    assert truth["remaining"] == 0
    state = await sim.state(sim.spot)
    assert state["streams"]["btcusdt@aggTrade"]["dropped"] == 4
    assert state["symbols"]["BTCUSDT"]["last_agg_id"] >= ids[-1]


async def test_depth_gap_breaks_the_pu_chain(sim: Sim) -> None:
    async with websockets.connect(f"{sim.ws_usdm}/public/ws/ethusdt@depth@100ms") as ws:
        first = await recv_json(ws)
        await sim.fault(sim.usdm, {"kind": "depth_gap", "symbol": "ETHUSDT"})
        events = [first, *await collect(ws, 1.0)]
    breaks = [b for a, b in itertools.pairwise(events) if b["pu"] != a["u"]]
    assert len(breaks) == 1


async def test_silent_socket_sends_nothing_then_resumes(sim: Sim) -> None:
    async with sim.session.ws_connect(f"{sim.ws_spot}/ws/btcusdt@aggTrade", autoping=False) as ws:
        await ws.receive(timeout=5)
        conn_id = (await sim.state(sim.spot))["connections"][0]["id"]
        await sim.fault(sim.spot, {"kind": "silent", "connection_id": conn_id, "duration_secs": 1.2})
        while True:  # frames already in flight when the fault landed
            try:
                await ws.receive(timeout=0.15)
            except TimeoutError:
                break
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.8)  # no data, and no pings either (ping interval is 0.5 s)
        message = await ws.receive(timeout=3)
        assert message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.PING)


async def test_abrupt_close_is_a_1006(sim: Sim) -> None:
    async with websockets.connect(f"{sim.ws_spot}/ws/btcusdt@aggTrade") as ws:
        await recv_json(ws)
        record = await sim.fault(sim.spot, {"kind": "abrupt_close"})
        assert record["effects"]["connections"]
        _, closed = await read_until_closed(ws)
        assert isinstance(closed, websockets.ConnectionClosedError)
        assert closed.rcvd is None  # no close frame: the client reports 1006


async def test_server_shutdown_announces_then_closes(sim: Sim) -> None:
    async with websockets.connect(f"{sim.ws_usdm}/market/ws/btcusdt@aggTrade") as ws:
        await recv_json(ws)
        await sim.fault(sim.usdm, {"kind": "server_shutdown"})
        frames, closed = await read_until_closed(ws)
        assert isinstance(closed, websockets.ConnectionClosedOK)
        assert frames[-1]["e"] == "serverShutdown"


@pytest.mark.parametrize("sim", [{"max_connection_secs": 1.0}], indirect=True)
async def test_connection_lifetime_cut(sim: Sim) -> None:
    async with websockets.connect(f"{sim.ws_spot}/ws/btcusdt@aggTrade") as ws:
        started = time.monotonic()
        frames, closed = await read_until_closed(ws)
        assert isinstance(closed, websockets.ConnectionClosedOK)
        assert frames[-1]["e"] == "serverShutdown"
        assert 0.9 < time.monotonic() - started < 2.5


async def test_outage_window_is_dark_in_ws_and_rest(sim: Sim) -> None:
    async with websockets.connect(f"{sim.ws_spot}/ws/btcusdt@aggTrade") as ws:
        await recv_json(ws)
        record = await sim.fault(sim.spot, {"kind": "outage", "duration_secs": 1.5})
        start, end = record["effects"]["start_ms"], record["effects"]["end_ms"]
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["T"] < end + 200:  # until data has clearly resumed after the window
            frames.append(await recv_json(ws, 5.0))
    assert not [f for f in frames if start <= f["T"] < end]
    assert [f for f in frames if f["T"] >= end]  # data resumed
    ids = [f["a"] for f in frames]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    _, _, trades = await get(sim, f"{sim.spot}/api/v3/aggTrades?symbol=BTCUSDT&startTime={start}&endTime={end - 1}")
    assert trades == []


async def test_replay_serves_a_capture_through_the_protocol(sim: Sim, tmp_path: Path) -> None:
    capture = tmp_path / "capture.jsonl"
    lines = [
        {"ts_ms": 1000, "stream": "btcusdt@aggTrade", "frame": {"e": "aggTrade", "a": 1, "p": "1.0"}},
        {"ts_ms": 1100, "stream": "btcusdt@aggTrade", "raw": "{broken"},
        {"ts_ms": 1300, "venue": "binance-usdm", "stream": "btcusdt@aggTrade", "frame": {"e": "aggTrade", "a": 2}},
        {"ts_ms": 1400, "stream": "btcusdt@aggTrade", "frame": {"e": "aggTrade", "a": 3}},
    ]
    capture.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    engines = {venue: host.engine for venue, host in sim.app.hosts.items()}
    task = asyncio.create_task(replay(load_capture(capture), engines, speed=2.0, wait_for_client=True))
    try:
        async with websockets.connect(f"{sim.ws_spot}/stream?streams=btcusdt@aggTrade") as ws:
            started = time.monotonic()
            received = [await asyncio.wait_for(ws.recv(), 3) for _ in range(3)]
            elapsed = time.monotonic() - started
            assert await task == 4
    finally:
        task.cancel()
    assert received == [
        '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","a":1,"p":"1.0"}}',
        '{"stream":"btcusdt@aggTrade","data":{broken}',
        '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","a":3}}',
    ]
    assert 0.1 < elapsed < 1.0  # 400 ms of capture at speed 2


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


async def test_tls_serves_wss_and_https(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    app = SimulatorApp(SimulatorSettings(**{**FAST, "tls_cert_file": cert, "tls_key_file": key}))
    await app.start_hosts()
    client_ssl = ssl.create_default_context(cafile=str(cert))
    try:
        port = app.ports["binance"]
        async with websockets.connect(f"wss://127.0.0.1:{port}/ws/btcusdt@aggTrade", ssl=client_ssl) as ws:
            assert (await recv_json(ws))["e"] == "aggTrade"
        connector = aiohttp.TCPConnector(ssl=client_ssl)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(f"https://127.0.0.1:{port}/api/v3/ping") as response,
        ):
            assert response.status == 200
            assert await response.json() == {}
    finally:
        await app.close()


def test_simulate_command_writes_ports_and_stops_on_sigterm(tmp_path: Path) -> None:
    ports_file = tmp_path / "ports.json"
    env = {
        **os.environ,
        "SIMULATOR_HEALTH_HOST": "127.0.0.1",
        "SIMULATOR_HEALTH_PORT": "0",
        "SIMULATOR_SPOT_PORT": "0",
        "SIMULATOR_USDM_PORT": "0",
        "SIMULATOR_SYMBOLS": "BTCUSDT",
        "SIMULATOR_HISTORY_MINUTES": "60",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tickstrata", "simulate", "--ports-file", str(ports_file), "--seed", "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not ports_file.exists() or not ports_file.read_text():
            assert process.poll() is None, process.communicate()[0].decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ports = json.loads(ports_file.read_text())
        assert set(ports) == {"binance", "binance-usdm"}
        assert all(ports.values())
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['binance-usdm']}/fapi/v1/time", timeout=5) as response:
            assert "serverTime" in json.loads(response.read())
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
        assert process.returncode == 0, output[-2000:]
        assert "simulator listening" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_a_scaled_market_clock_backdates_the_market_but_not_the_venues_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall_ms = int(time.time() * 1000)
    clock = ScaledClock(anchor_wall_ms=wall_ms, start_ms=wall_ms - 2 * 86_400_000, speed=1000)
    monkeypatch.setenv(MARKET_CLOCK_ENV, clock.env_value())
    process, endpoints = start_simulator(tmp_path, symbols="BTCUSDT", trades_per_sec="1")
    rest = endpoints.rest_url("binance")

    def call(path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"{rest}{path}", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    try:
        status, body = call("/api/v3/time")
        market_now_ms = clock.now_ns() // 1_000_000
        assert status == 200
        # Two days back, advancing a thousand times faster: within a few wall seconds' worth of the shared clock.
        assert abs(body["serverTime"] - market_now_ms) < 5_000 * 1000
        assert body["serverTime"] < int(time.time() * 1000) - 86_400_000
        _, klines = call("/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=5")
        assert klines[-1][0] <= clock.now_ns() // 1_000_000  # REST history stops at market now
        request = urllib.request.Request(
            f"{rest}/_sim/faults",
            data=json.dumps({"kind": "rest_429", "retry_after_secs": 30}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()
        assert call("/api/v3/ping")[0] == 429
        # A thousand market seconds, far past the 30 s Retry-After in market time, yet well inside it on the wall.
        time.sleep(1.0)
        assert call("/api/v3/ping")[0] == 418
    finally:
        process.stop()
