"""Every `tickstrata <role>` starts, answers /readyz and exits 0 within 5 s of SIGTERM, as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.servers.kube_fixtures import install_crd
from tests.integration.servers.simulator_fixtures import SimulatorEndpoints
from tickstrata.cli.up import ROLE_SPECS, RoleSpec
from tickstrata.localstack.kube import KubeCluster
from tickstrata.localstack.process import free_port
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer
from tickstrata.marketdata.v1 import market_data_service_pb2, market_data_service_pb2_grpc

pytestmark = pytest.mark.integration

READY_TIMEOUT_SECS = 60.0
SIGTERM_EXIT_BOUND_SECS = 5.0
ALL_ROLES = (*ROLE_SPECS, RoleSpec("operator", "OPERATOR_"))


@dataclass
class ServiceProcess:
    process: subprocess.Popen[bytes]
    health_port: int
    grpc_port: int | None

    def readyz(self) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def wait_for(self, status: int) -> dict[str, object]:
        deadline = time.monotonic() + READY_TIMEOUT_SECS
        last: object = None
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"exited early with {self.process.returncode}: {self.output()}"
            try:
                code, body = self.readyz()
                if code == status:
                    return body
                last = (code, body)
            except (urllib.error.URLError, OSError) as error:  # OSError: refused, reset, or a read timeout
                last = error
            time.sleep(0.1)
        raise AssertionError(f"/readyz never answered {status}; last: {last}")

    def output(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        assert self.process.stdout is not None
        return self.process.stdout.read().decode(errors="replace")[-3000:]


def spawn(spec: RoleSpec, extra_env: dict[str, str]) -> ServiceProcess:
    health_port = free_port()
    grpc_port = free_port() if spec.grpc else None
    env = {**os.environ, **extra_env}
    env[f"{spec.env_prefix}HEALTH_HOST"] = "127.0.0.1"
    env[f"{spec.env_prefix}HEALTH_PORT"] = str(health_port)
    if grpc_port is not None:
        env[f"{spec.env_prefix}GRPC_HOST"] = "127.0.0.1"
        env[f"{spec.env_prefix}GRPC_PORT"] = str(grpc_port)
    process = subprocess.Popen(
        [sys.executable, "-m", "tickstrata", spec.role],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    return ServiceProcess(process, health_port, grpc_port)


@pytest.fixture
def started() -> Iterator[list[ServiceProcess]]:
    """Processes a test started; killed afterwards if the test left any running."""
    processes: list[ServiceProcess] = []
    yield processes
    for service in processes:
        if service.process.poll() is None:
            service.process.kill()
        service.process.wait(timeout=10)
        if service.process.stdout is not None:
            service.process.stdout.close()


@pytest.fixture
def role_env(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    questdb_server: QuestDBServer,
    simulator: SimulatorEndpoints,
    kube_cluster: KubeCluster,
) -> Callable[[RoleSpec], dict[str, str]]:
    """The environment a role needs beyond its ports: Redis, for the collector a venue (the simulator), for the
    operator a Kubernetes API server with the ExchangeFeed CRD. `redis_client` empties the shared Redis after the
    test: a collector publishes its instruments and trades there, which the next test on this worker must not see."""

    def env(spec: RoleSpec) -> dict[str, str]:
        values = {f"{spec.env_prefix}REDIS_URL": redis_server.url} if spec.needs_redis else {}
        if spec.role == "operator":
            install_crd(kube_cluster)
            values.update(KUBECONFIG=str(kube_cluster.kubeconfig_path), OPERATOR_STATS_REDIS_URL=redis_server.url)
        if spec.role == "collector":
            values["COLLECTOR_WS_URL"] = simulator.ws_url("binance")
            values["COLLECTOR_REST_URL"] = simulator.rest_url("binance")
        if spec.needs_questdb:
            values[f"{spec.env_prefix}QUESTDB_HTTP_URL"] = questdb_server.http_url
        if spec.role == "simulate":  # never a default port in a test
            values.update(SIMULATOR_SPOT_PORT="0", SIMULATOR_USDM_PORT="0")
        return values

    return env


@pytest.mark.parametrize("spec", ALL_ROLES, ids=[spec.role for spec in ALL_ROLES])
def test_role_starts_reports_ready_and_exits_zero_on_sigterm(
    spec: RoleSpec, role_env: Callable[[RoleSpec], dict[str, str]], started: list[ServiceProcess]
) -> None:
    service = spawn(spec, role_env(spec))
    started.append(service)

    body = service.wait_for(200)
    assert body["ready"] is True
    checks = body["checks"]
    assert isinstance(checks, dict)
    if spec.needs_redis:
        assert checks["redis"] == {"ok": True, "detail": "PONG"}
    if service.grpc_port is not None:
        with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    sent_at = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    code = service.process.wait(timeout=30)
    elapsed_secs = time.monotonic() - sent_at
    logs = service.output()
    assert code == 0, logs
    assert elapsed_secs < SIGTERM_EXIT_BOUND_SECS, f"took {elapsed_secs:.2f} s to exit\n{logs}"
    assert "shutdown complete" in logs


def test_writer_is_alive_but_not_ready_without_redis(started: list[ServiceProcess]) -> None:
    spec = next(spec for spec in ROLE_SPECS if spec.role == "writer")
    dead_port, dead_http_port = free_port(), free_port()  # nothing listens on either
    service = spawn(
        spec,
        {
            "WRITER_REDIS_URL": f"redis://127.0.0.1:{dead_port}/0",
            "WRITER_QUESTDB_HTTP_URL": f"http://127.0.0.1:{dead_http_port}",
        },
    )
    started.append(service)

    body = service.wait_for(503)
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["lifecycle"]["ok"] is True
    assert checks["redis"]["ok"] is False
    assert "Connection" in checks["redis"]["detail"]
    assert checks["questdb"]["ok"] is False
    with urllib.request.urlopen(f"http://127.0.0.1:{service.health_port}/healthz", timeout=2) as response:
        assert response.status == 200

    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=30) == 0


def test_bad_configuration_exits_2_naming_the_variable() -> None:
    env = {**os.environ, "WRITER_HEALTH_PORT": "eighty", "WRITER_SHUTDOWN_TIMEOUT_SECS": "-1"}
    result = subprocess.run(
        [sys.executable, "-m", "tickstrata", "writer"], env=env, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "WRITER_HEALTH_PORT" in stderr
    assert "'eighty'" in stderr
    assert "WRITER_SHUTDOWN_TIMEOUT_SECS" in stderr


def test_help_lists_every_environment_variable_of_the_role() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tickstrata", "writer", "--help"], capture_output=True, timeout=60, check=True
    )
    text = result.stdout.decode()
    for variable in ("WRITER_REDIS_URL", "WRITER_HEALTH_PORT", "WRITER_SHUTDOWN_TIMEOUT_SECS", "OTEL_"):
        assert variable in text


def call_unimplemented(role: str, channel: grpc.Channel) -> list[grpc.RpcError]:
    """Call one unary and (where the service has one) one streaming RPC of `role`'s skeleton servicer."""
    errors: list[grpc.RpcError] = []
    calls: list[object] = []
    if role == "query":
        market = market_data_service_pb2_grpc.MarketDataServiceStub(channel)
        calls = [lambda: list(market.Replay(market_data_service_pb2.ReplayRequest(), timeout=5))]
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()  # type: ignore[operator]
        errors.append(caught.value)
    return errors


@pytest.mark.parametrize(("role", "rpcs"), [("query", 1)])
def test_skeleton_rpcs_answer_unimplemented_naming_the_rpc(
    role: str, rpcs: int, role_env: Callable[[RoleSpec], dict[str, str]], started: list[ServiceProcess]
) -> None:
    spec = next(spec for spec in ROLE_SPECS if spec.role == role)
    service = spawn(spec, role_env(spec))
    started.append(service)
    service.wait_for(200)
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        errors = call_unimplemented(role, channel)
    assert len(errors) == rpcs
    for error in errors:
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED, error
        assert "is not implemented yet" in str(error.details())
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=30) == 0
