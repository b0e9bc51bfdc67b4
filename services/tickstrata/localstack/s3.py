"""A local S3 server on loopback for the cold tier: versitygw when setup built it, S3Proxy otherwise.

Layout under `data_dir`: `buckets/` holds one directory per bucket (objects are plain files beneath it),
`meta/` holds object metadata when the filesystem refuses user xattrs, and `s3.log` is the server's output.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any, Final, Literal, Self

import boto3.session
from botocore.config import Config
from pyarrow import fs

from tickstrata.localstack.paths import java_bin, s3proxy_jar, versitygw_bin
from tickstrata.localstack.process import LocalServer, ManagedServer, ServerStartError, free_port, tcp_port_open

DEFAULT_ACCESS_KEY: Final = "tickstrata"
# A fixed credential for a server that only ever listens on 127.0.0.1; never used against real S3.
DEFAULT_SECRET_KEY: Final = "tickstrata-local-secret"  # noqa: S105
LOOPBACK: Final = "127.0.0.1"
# How each backend's log says it lost that race (versitygw: Go's net error; S3Proxy: its own message).
PORT_TAKEN_MARKERS: Final = ("address already in use", "failed to bind")

MetadataStore = Literal["auto", "xattr", "sidecar"]


class S3Backend(enum.StrEnum):
    VERSITYGW = "versitygw"
    S3PROXY = "s3proxy"


def default_backend() -> S3Backend:
    """versitygw when setup built it (a single Go binary, starts in well under a second), else S3Proxy."""
    return S3Backend.VERSITYGW if versitygw_bin() is not None else S3Backend.S3PROXY


def supports_user_xattrs(directory: Path) -> bool:
    """Whether files in `directory` accept `user.*` extended attributes (ext4 and xfs do; some tmpfs,
    overlay and network mounts do not), which is where versitygw keeps object metadata by default."""
    probe = directory / ".xattr-probe"
    try:
        probe.touch()
        os.setxattr(probe, "user.tickstrata.probe", b"1")
        return os.getxattr(probe, "user.tickstrata.probe") == b"1"
    except (OSError, AttributeError):  # AttributeError: a platform without the xattr calls
        return False
    finally:
        probe.unlink(missing_ok=True)


class S3Server(LocalServer[int]):
    """One S3-compatible server process serving `data_dir` on 127.0.0.1, with path-style addressing."""

    address_in_use_markers = PORT_TAKEN_MARKERS

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        region: str = "us-east-1",
        backend: S3Backend | None = None,
        metadata: MetadataStore = "auto",
        start_timeout_secs: float = 60.0,
    ) -> None:
        self.data_dir = data_dir.resolve()
        super().__init__(log_path=self.data_dir / "s3.log", address=port, start_timeout_secs=start_timeout_secs)
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.backend = backend or default_backend()
        self._metadata_choice: MetadataStore = metadata
        self._uses_sidecar: bool | None = None

    @property
    def port(self) -> int:
        if self._address is None:
            raise RuntimeError("S3 server has no port yet: call start() first")
        return self._address

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def buckets_dir(self) -> Path:
        return self.data_dir / "buckets"

    @property
    def uses_sidecar_metadata(self) -> bool:
        """True when versitygw keeps metadata in `meta/` instead of xattrs (known once started)."""
        if self._uses_sidecar is None:
            raise RuntimeError("metadata store is chosen in start()")
        return self._uses_sidecar

    def __enter__(self) -> Self:
        # Unlike the other local servers, an S3 server may be entered after an explicit start().
        return self if self.running else self.start()

    def _already_running_message(self) -> str:
        return "S3 server already started"

    def _prepare(self) -> None:
        self.buckets_dir.mkdir(parents=True, exist_ok=True)
        self._uses_sidecar = self._choose_sidecar()
        requested = self._requested_address
        if requested is not None and tcp_port_open(requested):
            # Without this, the readiness probe could be answered by an older server still holding the port.
            raise ServerStartError(f"port {requested} on {LOOPBACK} is already in use")

    def _pick_address(self) -> int:
        return free_port()

    def _lost_port_race(self, message: str) -> bool:
        return super()._lost_port_race(message.lower())

    def _choose_sidecar(self) -> bool:
        if self.backend is S3Backend.S3PROXY:
            return False  # S3Proxy's filesystem provider manages its own metadata
        if self._metadata_choice == "auto":
            return not supports_user_xattrs(self.buckets_dir)
        return self._metadata_choice == "sidecar"

    def _launch(self, port: int) -> ManagedServer:
        self._address = port  # the argv, S3Proxy's properties and the readiness probe all go by `self.port`
        env = dict(os.environ)
        if self.backend is S3Backend.VERSITYGW:
            binary = versitygw_bin()
            if binary is None:
                raise ServerStartError("versitygw was requested but setup did not build it")
            # Credentials travel in the environment rather than argv, so they never show up in `ps`.
            env["ROOT_ACCESS_KEY_ID"] = self.access_key
            env["ROOT_SECRET_ACCESS_KEY"] = self.secret_key
            argv = [str(binary), "--port", f"{LOOPBACK}:{self.port}", "--region", self.region, "posix"]
            if self._uses_sidecar:
                meta_dir = self.data_dir / "meta"
                meta_dir.mkdir(exist_ok=True)
                argv += ["--sidecar", str(meta_dir)]
            argv.append(str(self.buckets_dir))
        else:
            properties = self._write_s3proxy_properties()
            argv = [str(java_bin()), "-Xmx256m", "-jar", str(s3proxy_jar()), "--properties", str(properties)]
        return ManagedServer(name=f"s3 ({self.backend})", argv=argv, log_path=self.log_path, env=env)

    def _write_s3proxy_properties(self) -> Path:
        lines = {
            "s3proxy.endpoint": self.endpoint_url,
            "s3proxy.authorization": "aws-v2-or-v4",
            "s3proxy.identity": self.access_key,
            "s3proxy.credential": self.secret_key,
            "jclouds.provider": "filesystem",
            "jclouds.filesystem.basedir": str(self.buckets_dir),
        }
        path = self.data_dir / "s3proxy.properties"
        # The file carries the secret: create it private before writing.
        path.touch(mode=0o600, exist_ok=True)
        path.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
        return path

    def _wait_ready(self, server: ManagedServer, port: int) -> None:
        """Ready means the port accepts connections AND a signed ListBuckets answers 200: the listener alone
        comes up before S3Proxy's handlers, and only a signed request proves the credentials match."""
        probe_client = self.boto3_client(max_attempts=1, timeout_secs=2.0)

        def answers() -> bool:
            if not tcp_port_open(port):
                return False
            response = probe_client.list_buckets()
            return bool(response["ResponseMetadata"]["HTTPStatusCode"] == 200)

        try:
            server.wait_ready(answers, timeout_secs=self.start_timeout_secs, interval_secs=0.1)
        finally:
            probe_client.close()

    def botocore_config(self, *, max_attempts: int = 3, timeout_secs: float = 30.0) -> Config:
        """Path-style addressing with the region pinned. Both backends (versitygw 1.7, S3Proxy 4.0) accept
        boto3's default CRC32 checksums, multipart included, so they stay on as against AWS; set explicitly
        so an `AWS_REQUEST_CHECKSUM_CALCULATION` in someone's shell cannot change what the tests exercise."""
        return Config(
            region_name=self.region,
            s3={"addressing_style": "path"},
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=timeout_secs,
            read_timeout=timeout_secs,
            request_checksum_calculation="when_supported",
            response_checksum_validation="when_supported",
        )

    def boto3_client(self, *, max_attempts: int = 3, timeout_secs: float = 30.0) -> Any:
        """A new S3 client for this server; the caller closes it (`client.close()`)."""
        # A private session: boto3's default session is shared process-wide and not thread-safe to create.
        session = boto3.session.Session()
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=self.botocore_config(max_attempts=max_attempts, timeout_secs=timeout_secs),
        )

    def arrow_filesystem(self, *, timeout_secs: float = 30.0) -> fs.S3FileSystem:
        """A pyarrow S3 filesystem on this server; paths are `bucket/key`."""
        return fs.S3FileSystem(
            endpoint_override=f"{LOOPBACK}:{self.port}",
            scheme="http",
            region=self.region,
            access_key=self.access_key,
            secret_key=self.secret_key,
            force_virtual_addressing=False,
            connect_timeout=timeout_secs,
            request_timeout=timeout_secs,
        )
