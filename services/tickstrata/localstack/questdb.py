"""A throw-away QuestDB server on loopback: tests, benchmarks and `tickstrata up`.

Runs the server jar from Maven Central on the JDK that `scripts/setup.sh` installed, with every listener on
127.0.0.1 and a free port, worker pools sized for a 2-core machine, and telemetry off.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tickstrata.localstack.paths import java_bin, questdb_jar
from tickstrata.localstack.process import LocalServer, ManagedServer, ServerStartError, free_port, tcp_port_open

HOST: Final = "127.0.0.1"
# A JVM start, table registry load and web-console extraction take 2-5 s here, far more on a busy 2-core CI.
DEFAULT_START_TIMEOUT_SECS: Final = 60.0
# SIGTERM makes QuestDB close its writers and WAL segments (about 2 s); only a hung server needs the SIGKILL.
DEFAULT_STOP_TIMEOUT_SECS: Final = 20.0
DEFAULT_HEAP_MAX_MB: Final = 1024
PG_USER: Final = "admin"
PG_PASSWORD: Final = "quest"  # noqa: S105 - QuestDB's documented default, loopback only
PG_DATABASE: Final = "qdb"
# QuestDB log lines are `<iso time>Z <level> <logger> <message>`; E and C are error and critical. Fatal
# start-up problems come as bare Java stack traces instead, so exception class names count too.
_ERROR_LINE: Final = re.compile(r"^\S+Z [EC] |^\S*(?:Exception|Error)\b")

# Never send loopback requests through an HTTP proxy that the environment may configure.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class QuestDBSqlError(RuntimeError):
    """QuestDB rejected a statement sent to `/exec`; carries its message and the error position in the SQL."""

    def __init__(self, *, sql: str, message: str, position: int | None, http_status: int) -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"QuestDB error{where} (HTTP {http_status}): {message}\n  in: {sql}")
        self.sql = sql
        self.message = message
        self.position = position
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class QuestDBPorts:
    http: int
    http_min: int
    ilp_tcp: int
    pg: int

    @staticmethod
    def pick_free() -> QuestDBPorts:
        http, http_min, ilp_tcp, pg = (free_port() for _ in range(4))  # distinct: free_port never repeats one
        return QuestDBPorts(http=http, http_min=http_min, ilp_tcp=ilp_tcp, pg=pg)


def _http_status(url: str, *, timeout_secs: float) -> int:
    try:
        with _OPENER.open(url, timeout=timeout_secs) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


class QuestDBServer(LocalServer[QuestDBPorts]):
    """A QuestDB child process whose data, configuration and log live under `root`.

    Use as a context manager (`with QuestDBServer(path) as qdb: ...`) or call `start()` and `stop()`.
    `extra_conf` adds or overrides `server.conf` keys, e.g. `{"cairo.max.uncommitted.rows": "1000"}`.
    """

    # QuestDB's own words for a listener it could not bind (errno 98 is EADDRINUSE on Linux).
    address_in_use_markers = ("could not bind socket", "errno=98", "Address already in use")
    stop_timeout_secs = DEFAULT_STOP_TIMEOUT_SECS

    def __init__(
        self,
        root: Path,
        *,
        ports: QuestDBPorts | None = None,
        extra_conf: Mapping[str, str] | None = None,
        heap_max_mb: int = DEFAULT_HEAP_MAX_MB,
        start_timeout_secs: float = DEFAULT_START_TIMEOUT_SECS,
    ) -> None:
        self.root = Path(root)
        super().__init__(log_path=self.root / "questdb.log", address=ports, start_timeout_secs=start_timeout_secs)
        self.extra_conf = dict(extra_conf or {})
        self.heap_max_mb = heap_max_mb
        self._log_offset = 0

    # -- addresses -------------------------------------------------------------------------------------------

    @property
    def ports(self) -> QuestDBPorts:
        if self._address is None:
            raise RuntimeError("QuestDBServer has no ports before start()")
        return self._address

    @property
    def http_port(self) -> int:
        return self.ports.http

    @property
    def http_min_port(self) -> int:
        return self.ports.http_min

    @property
    def pg_port(self) -> int:
        return self.ports.pg

    @property
    def ilp_tcp_port(self) -> int:
        return self.ports.ilp_tcp

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def ilp_http_conf(self) -> str:
        """Configuration string for `questdb.Sender.from_conf` (ILP over HTTP: one transaction per flush)."""
        return f"http::addr={HOST}:{self.http_port};"

    @property
    def pg_dsn(self) -> str:
        """PostgreSQL wire protocol URL, accepted by psycopg and asyncpg."""
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@{HOST}:{self.pg_port}/{PG_DATABASE}"

    # -- process ---------------------------------------------------------------------------------------------

    def server_conf(self, ports: QuestDBPorts) -> dict[str, str]:
        conf = {
            "http.bind.to": f"{HOST}:{ports.http}",
            "http.min.net.bind.to": f"{HOST}:{ports.http_min}",
            "line.tcp.net.bind.to": f"{HOST}:{ports.ilp_tcp}",
            "pg.net.bind.to": f"{HOST}:{ports.pg}",
            "line.udp.enabled": "false",
            "telemetry.enabled": "false",
            # Two cores: QuestDB otherwise sizes each pool from the CPU count and the pools compete.
            "shared.worker.count": "2",
            "shared.network.worker.count": "2",
            "shared.query.worker.count": "2",
            "shared.write.worker.count": "2",
            "wal.apply.worker.count": "2",
            "mat.view.refresh.worker.count": "1",
            "view.compiler.worker.count": "1",
            "export.worker.count": "1",
        }
        conf.update(self.extra_conf)
        return conf

    def argv(self) -> list[str]:
        return [
            str(java_bin()),
            "-Xms128m",
            f"-Xmx{self.heap_max_mb}m",
            "-XX:+UseParallelGC",
            f"-Djava.io.tmpdir={self.root / 'tmp'}",
            # Mandatory from 9.4 (worker threads die without it) and harmless before.
            "--add-exports=java.base/jdk.internal.vm=io.questdb",
            "--enable-native-access=io.questdb",
            "-p", str(questdb_jar()),
            "-m", "io.questdb/io.questdb.ServerMain",
            "-d", str(self.root),
        ]  # fmt: skip

    def _write_conf(self, ports: QuestDBPorts) -> None:
        (self.root / "conf").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self.server_conf(ports).items()]
        (self.root / "conf" / "server.conf").write_text("\n".join(lines) + "\n")

    def _ready(self, ports: QuestDBPorts) -> bool:
        # /ping answers once HTTP is up; PGWire and ILP/TCP bind in the same start-up pass, so check them too.
        return (
            _http_status(f"http://{HOST}:{ports.http}/ping", timeout_secs=1.0) == 204
            and tcp_port_open(ports.pg)
            and tcp_port_open(ports.ilp_tcp)
        )

    def _already_running_message(self) -> str:
        return f"QuestDB already running (HTTP port {self.http_port})"

    def _pick_address(self) -> QuestDBPorts:
        return QuestDBPorts.pick_free()

    def _launch(self, ports: QuestDBPorts) -> ManagedServer:
        self._write_conf(ports)
        # The log is appended across restarts of the same root: only this start's lines explain its failure.
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        return ManagedServer(name=f"questdb:{ports.http}", argv=self.argv(), log_path=self.log_path)

    def _wait_ready(self, server: ManagedServer, ports: QuestDBPorts) -> None:
        server.wait_ready(functools.partial(self._ready, ports), timeout_secs=self.start_timeout_secs)

    def _explain_failure(self, error: ServerStartError) -> ServerStartError | None:
        errors = self.log_error_lines(since_byte=self._log_offset)
        if not errors:
            return None
        return ServerStartError(f"{error}\n--- error lines in {self.log_path} ---\n{errors}")

    def log_error_lines(self, *, since_byte: int = 0, limit: int = 10) -> str:
        """Return the first error and exception lines of the log: a failed start buries them in traces."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(since_byte)
                lines = log.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join([line for line in lines if _ERROR_LINE.search(line)][:limit])

    # -- SQL over HTTP ---------------------------------------------------------------------------------------

    def exec_sql(self, sql: str, *, timeout_secs: float = 30.0) -> dict[str, Any]:
        """Run one statement through the REST `/exec` endpoint and return QuestDB's JSON answer.

        Queries answer `{"columns": [...], "dataset": [[...], ...], "count": n}`, DDL `{"ddl": "OK"}` and
        DML `{"dml": "OK"}`. A statement QuestDB rejects raises `QuestDBSqlError`. Meant for set-up, checks
        and tests; bulk reads belong on PGWire and writes on ILP.
        """
        url = f"{self.http_url}/exec?{urllib.parse.urlencode({'query': sql})}"
        try:
            with _OPENER.open(url, timeout=timeout_secs) as response:
                status: int = response.status
                body: bytes = response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                status, body = exc.code, exc.read()
        payload: Any = None
        with contextlib.suppress(ValueError):
            payload = json.loads(body)
        if not isinstance(payload, dict):
            text = body.decode(errors="replace")[:500]
            message = f"unexpected reply: {text}"
            raise QuestDBSqlError(sql=sql, message=message, position=None, http_status=status)
        if "error" in payload or status >= 400:
            position = payload.get("position")
            raise QuestDBSqlError(
                sql=sql,
                message=str(payload.get("error", payload)),
                position=position if isinstance(position, int) else None,
                http_status=status,
            )
        return payload
