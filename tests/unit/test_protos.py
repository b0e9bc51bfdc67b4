"""The gRPC contracts: lint-clean protos, fresh committed stubs, and stubs that work end to end.

The freshness and lint checks run as subprocesses exactly as `make check` runs them, against the real
repository and against copies of it in tmp_path that a test breaks on purpose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType

import grpc
import pytest

from tickstrata.backfill.v1 import backfill_service_pb2
from tickstrata.marketdata.v1 import market_data_pb2 as md
from tickstrata.marketdata.v1 import market_data_service_pb2 as mds
from tickstrata.marketdata.v1 import market_data_service_pb2_grpc as mds_grpc
from tickstrata.quality.v1 import quality_service_pb2

REPO = Path(__file__).resolve().parents[2]
GEN_PROTOS = REPO / "scripts" / "gen_protos.py"
CHECK_PROTOS = REPO / "scripts" / "check_protos.sh"
BUF = REPO / ".cache" / "bin" / "buf"
DOMAINS = ("marketdata", "backfill", "quality")
GENERATED = "services/tickstrata"

requires_buf = pytest.mark.skipif(
    not BUF.is_file(), reason=f"buf is not installed at {BUF}; run scripts/setup.sh to install it"
)


def run(*command: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a command; return its exit status and stdout + stderr (the checks print to both)."""
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return result.returncode, result.stdout + result.stderr


def gen_protos(*args: str | Path) -> tuple[int, str]:
    return run(sys.executable, GEN_PROTOS, *args)


def check_protos(repo_root: Path, **env: str) -> tuple[int, str]:
    return run(CHECK_PROTOS, "--repo-root", repo_root, env={"PYTHON": sys.executable, **env})


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The protos and the committed stubs, laid out as in the repository."""
    shutil.copytree(REPO / "protos", tmp_path / "protos")
    for domain in DOMAINS:
        shutil.copytree(
            REPO / GENERATED / domain,
            tmp_path / GENERATED / domain,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    return tmp_path


# ---- freshness --------------------------------------------------------------------------------------------


def test_check_on_committed_stubs_passes() -> None:
    status, output = gen_protos("--check")
    assert status == 0, output
    assert "stubs are fresh" in output


def test_check_on_copy_passes(repo_copy: Path) -> None:
    status, output = gen_protos("--check", "--repo-root", repo_copy)
    assert status == 0, output


def test_check_with_edited_stub_fails_with_diff(repo_copy: Path) -> None:
    stub = repo_copy / GENERATED / "marketdata/v1/market_data_pb2.pyi"
    stub.write_text(stub.read_text(encoding="utf-8") + "# hand edit\n", encoding="utf-8")

    status, output = gen_protos("--check", "--repo-root", repo_copy)

    assert status == 1, output
    assert f"stale:   {GENERATED}/marketdata/v1/market_data_pb2.pyi" in output
    assert "-# hand edit" in output  # the unified diff, committed -> fresh
    assert "run `make protos`" in output


def test_check_with_deleted_stub_fails_naming_it(repo_copy: Path) -> None:
    (repo_copy / GENERATED / "quality/v1/quality_service_pb2_grpc.py").unlink()

    status, output = gen_protos("--check", "--repo-root", repo_copy)

    assert status == 1, output
    assert f"missing: {GENERATED}/quality/v1/quality_service_pb2_grpc.py" in output


def test_check_with_extra_file_in_generated_dir_fails_naming_it(repo_copy: Path) -> None:
    (repo_copy / GENERATED / "backfill/v1/helpers.py").write_text("X = 1\n", encoding="utf-8")

    status, output = gen_protos("--check", "--repo-root", repo_copy)

    assert status == 1, output
    assert f"extra:   {GENERATED}/backfill/v1/helpers.py" in output


def test_check_with_proto_changed_but_not_regenerated_fails(repo_copy: Path) -> None:
    proto = repo_copy / "protos/tickstrata/marketdata/v1/market_data.proto"
    text = proto.read_text(encoding="utf-8")
    marker = "  Side side = 8;\n"
    assert marker in text
    proto.write_text(text.replace(marker, marker + "  // Added.\n  string venue_note = 9;\n"), encoding="utf-8")

    status, output = gen_protos("--check", "--repo-root", repo_copy)

    assert status == 1, output
    assert f"stale:   {GENERATED}/marketdata/v1/market_data_pb2.py" in output
    assert f"stale:   {GENERATED}/marketdata/v1/market_data_pb2.pyi" in output
    assert "venue_note" in output


def test_check_with_syntax_error_in_proto_reports_protoc_error(repo_copy: Path) -> None:
    proto = repo_copy / "protos/tickstrata/quality/v1/quality_service.proto"
    proto.write_text(proto.read_text(encoding="utf-8") + "message Broken {\n", encoding="utf-8")

    status, output = gen_protos("--check", "--repo-root", repo_copy)

    assert status == 2, output
    assert "gen_protos: error: protoc failed" in output
    assert "tickstrata/quality/v1/quality_service.proto" in output


def test_regenerate_repairs_edited_deleted_and_extra_files(repo_copy: Path) -> None:
    generated = repo_copy / GENERATED
    edited = generated / "marketdata/v1/market_data_service_pb2.py"
    edited.write_text("broken\n", encoding="utf-8")
    (generated / "backfill/v1/__init__.py").unlink()
    extra = generated / "quality/v1/notes.txt"
    extra.write_text("not generated\n", encoding="utf-8")

    status, output = gen_protos("--repo-root", repo_copy)
    assert status == 0, output
    assert "gen_protos: wrote" in output

    assert gen_protos("--check", "--repo-root", repo_copy)[0] == 0
    assert not extra.exists()
    assert edited.read_bytes() == (REPO / GENERATED / "marketdata/v1/market_data_service_pb2.py").read_bytes()


def test_regenerate_after_domain_removed_deletes_its_package(repo_copy: Path) -> None:
    shutil.rmtree(repo_copy / "protos/tickstrata/quality")

    status, output = gen_protos("--check", "--repo-root", repo_copy)
    assert status == 1, output
    assert f"extra:   {GENERATED}/quality/v1/quality_service_pb2.py" in output

    status, output = gen_protos("--repo-root", repo_copy)
    assert status == 0, output
    assert "removed stale generated packages: quality" in output
    assert not (repo_copy / GENERATED / "quality").exists()


def test_regenerate_into_hand_written_package_refuses(repo_copy: Path) -> None:
    proto_dir = repo_copy / "protos/tickstrata/common/v1"
    proto_dir.mkdir(parents=True)
    (proto_dir / "common.proto").write_text(
        'syntax = "proto3";\npackage tickstrata.common.v1;\n// Nothing.\nmessage Empty {}\n', encoding="utf-8"
    )
    hand_written = repo_copy / GENERATED / "common/__init__.py"
    hand_written.parent.mkdir()
    hand_written.write_text('"""Shared code."""\n', encoding="utf-8")

    status, output = gen_protos("--repo-root", repo_copy)

    assert status == 2, output
    assert "proto domain 'common' collides with the hand-written package" in output
    assert hand_written.read_text(encoding="utf-8") == '"""Shared code."""\n'


# ---- lint -------------------------------------------------------------------------------------------------


@requires_buf
def test_check_protos_on_repository_passes() -> None:
    status, output = check_protos(REPO)
    assert status == 0, output
    assert "stubs are fresh" in output


BAD_ENUM = """syntax = "proto3";
package tickstrata.marketdata.v1;
// A colour.
enum Colour {
  // Red, wrongly the zero value.
  COLOUR_RED = 0;
}
"""

UNDOCUMENTED_MESSAGE = """syntax = "proto3";
package tickstrata.marketdata.v1;
message Undocumented {
  string name = 1;
}
"""


@requires_buf
@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        pytest.param(BAD_ENUM, '"COLOUR_RED" should be suffixed with "_UNSPECIFIED"', id="enum-zero-value"),
        pytest.param(UNDOCUMENTED_MESSAGE, 'Message "Undocumented" should have a non-empty comment', id="comment"),
    ],
)
def test_check_protos_with_bad_proto_fails_lint(repo_copy: Path, source: str, complaint: str) -> None:
    (repo_copy / "protos/tickstrata/marketdata/v1/bad.proto").write_text(source, encoding="utf-8")

    status, output = check_protos(repo_copy)

    assert status == 1, output
    assert "tickstrata/marketdata/v1/bad.proto" in output
    assert complaint in output
    assert "buf lint failed" in output


def test_check_protos_without_buf_says_how_to_install(tmp_path: Path) -> None:
    status, output = check_protos(REPO, BUF=str(tmp_path / "buf"))
    assert status == 2
    assert "run scripts/setup.sh" in output


# ---- the generated modules --------------------------------------------------------------------------------


def test_trade_round_trips_exactly() -> None:
    trade = md.Trade(
        exchange="binance",
        symbol="BTC-USDT",
        ts_event_ns=1_700_000_000_123_456_789,
        ts_recv_ns=1_700_000_000_124_000_000,
        trade_id="3141592653",
        price="64123.45000001",
        size="0.00012",
        side=md.SIDE_SELL,
    )
    decoded = md.Trade.FromString(trade.SerializeToString())
    assert decoded == trade
    assert decoded.price == "64123.45000001"
    assert decoded.ts_event_ns == 1_700_000_000_123_456_789
    assert md.Side.Name(decoded.side) == "SIDE_SELL"


def test_services_expose_the_contracted_rpcs() -> None:
    # The RPCs other services and clients are written against; later issues may add more, never drop these.
    def shape(module: ModuleType, service: str) -> set[tuple[str, str]]:
        descriptor = module.DESCRIPTOR.services_by_name[service]
        return {(m.name, "stream" if m.server_streaming else "unary") for m in descriptor.methods}

    assert shape(mds, "MarketDataService") >= {
        ("GetLatestPrice", "unary"),
        ("GetCandles", "stream"),
        ("GetTrades", "stream"),
        ("Replay", "stream"),
        ("SubscribeLatest", "stream"),
    }
    assert shape(backfill_service_pb2, "BackfillService") >= {("Backfill", "unary"), ("GetBackfillStatus", "unary")}
    assert shape(quality_service_pb2, "QualityService") >= {
        ("GetCompleteness", "unary"),
        ("ListGaps", "unary"),
        ("ListViolations", "unary"),
    }


LATEST = md.LatestPrice(
    exchange="coinbase",
    symbol="BTC-USD",
    price="64000.01",
    ts_event_ns=1_700_000_000_000_000_000,
    ts_recv_ns=1_700_000_000_000_500_000,
    quote=md.Quote(bid_price="64000.00", bid_size="1.5", ask_price="64000.02", ask_size="0.25"),
)


class FixedServicer(mds_grpc.MarketDataServiceServicer):
    """Answers GetLatestPrice from a one-entry cache and GetCandles with two fixed batches."""

    def GetLatestPrice(  # noqa: N802 (the generated servicer names methods after the RPCs)
        self, request: mds.GetLatestPriceRequest, context: grpc.ServicerContext
    ) -> mds.GetLatestPriceResponse:
        response = mds.GetLatestPriceResponse()
        for exchange in request.exchanges:
            if (exchange, request.symbol) == (LATEST.exchange, LATEST.symbol):
                response.prices.append(LATEST)
            else:
                response.missing_exchanges.append(exchange)
        return response

    def GetCandles(  # noqa: N802
        self, request: mds.GetCandlesRequest, context: grpc.ServicerContext
    ) -> Iterator[mds.GetCandlesResponse]:
        yield mds.GetCandlesResponse(arrow_ipc=b"batch-1", row_count=request.max_rows_per_batch)
        yield mds.GetCandlesResponse(arrow_ipc=b"batch-2", row_count=1)

    def GetTrades(  # noqa: N802
        self, request: mds.GetTradesRequest, context: grpc.ServicerContext
    ) -> Iterator[mds.GetTradesResponse]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")

    def Replay(  # noqa: N802
        self, request: mds.ReplayRequest, context: grpc.ServicerContext
    ) -> Iterator[mds.ReplayResponse]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")

    def SubscribeLatest(  # noqa: N802
        self, request: mds.SubscribeLatestRequest, context: grpc.ServicerContext
    ) -> Iterator[mds.SubscribeLatestResponse]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")


@pytest.fixture
def stub() -> Iterator[mds_grpc.MarketDataServiceStub]:
    with futures.ThreadPoolExecutor(max_workers=2) as pool:
        server = grpc.server(pool)
        mds_grpc.add_MarketDataServiceServicer_to_server(FixedServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            # No proxy: an http_proxy in the environment must not capture loopback calls.
            options = [("grpc.enable_http_proxy", 0)]
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
                yield mds_grpc.MarketDataServiceStub(channel)
        finally:
            server.stop(grace=None).wait()


def test_get_latest_price_over_grpc_returns_exact_response(stub: mds_grpc.MarketDataServiceStub) -> None:
    request = mds.GetLatestPriceRequest(symbol="BTC-USD", exchanges=["coinbase", "kraken"])

    response = stub.GetLatestPrice(request, timeout=10)

    assert response == mds.GetLatestPriceResponse(prices=[LATEST], missing_exchanges=["kraken"])
    assert response.prices[0].quote.ask_price == "64000.02"


def test_get_candles_over_grpc_streams_batches_in_order(stub: mds_grpc.MarketDataServiceStub) -> None:
    request = mds.GetCandlesRequest(exchange="binance", symbol="BTC-USDT", interval_secs=3600, max_rows_per_batch=7)

    batches = list(stub.GetCandles(request, timeout=10))

    assert [(b.arrow_ipc, b.row_count) for b in batches] == [(b"batch-1", 7), (b"batch-2", 1)]


def test_unimplemented_rpc_over_grpc_reports_status(stub: mds_grpc.MarketDataServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.Replay(mds.ReplayRequest(), timeout=10))
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
