"""The local S3 server speaks real S3 to boto3 and to pyarrow's S3 filesystem (the cold tier's two clients)."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import socket
import zlib
from pathlib import Path
from typing import Any

import botocore.exceptions
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from boto3.s3.transfer import TransferConfig

from tickstrata.localstack import s3 as s3_module
from tickstrata.localstack.process import ServerStartError, free_port
from tickstrata.localstack.s3 import MetadataStore, S3Backend, S3Server, default_backend, supports_user_xattrs

pytestmark = pytest.mark.integration

# 2023-11-14T22:13:20Z in integer nanoseconds, the unit of every tickstrata timestamp.
T0_NS = 1_700_000_000_000_000_000
PRICE_SCALE = 8  # price stored as round(price * 10**8) in an int64


def test_put_get_roundtrip_keeps_bytes_metadata_and_etag(s3_client: Any, s3_bucket: str) -> None:
    body = b"\x00\x01tick\xffstrata" * 1000
    s3_client.put_object(
        Bucket=s3_bucket,
        Key="raw/binance/trades.bin",
        Body=body,
        ContentType="application/octet-stream",
        Metadata={"rows": "1000", "schema-version": "1"},
    )

    got = s3_client.get_object(Bucket=s3_bucket, Key="raw/binance/trades.bin")
    with got["Body"] as stream:
        assert stream.read() == body
    assert got["ContentLength"] == len(body)
    assert got["ContentType"] == "application/octet-stream"
    assert got["Metadata"] == {"rows": "1000", "schema-version": "1"}
    # A single-part upload's ETag is the MD5 of the body: proof the server stored exactly what was sent.
    assert got["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'  # noqa: S324 - S3 defines it as MD5
    assert [b["Name"] for b in s3_client.list_buckets()["Buckets"] if b["Name"] == s3_bucket] == [s3_bucket]


def test_listing_by_prefix_delimiter_and_pages(s3_client: Any, s3_bucket: str) -> None:
    trade_keys = [f"trades/binance/BTC-USDT/2024-01-0{day}.parquet" for day in range(1, 8)]
    candle_keys = [f"candles/binance/BTC-USDT/2024-01-0{day}.parquet" for day in range(1, 4)]
    for key in trade_keys + candle_keys:
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())

    paginator = s3_client.get_paginator("list_objects_v2")
    pages = list(paginator.paginate(Bucket=s3_bucket, Prefix="trades/", PaginationConfig={"PageSize": 3}))
    assert [page["KeyCount"] for page in pages] == [3, 3, 1]
    assert [page["IsTruncated"] for page in pages] == [True, True, False]
    assert [obj["Key"] for page in pages for obj in page["Contents"]] == sorted(trade_keys)
    assert [obj["Size"] for page in pages for obj in page["Contents"]] == [len(k) for k in sorted(trade_keys)]

    everything = [o["Key"] for p in paginator.paginate(Bucket=s3_bucket) for o in p.get("Contents", [])]
    assert everything == sorted(trade_keys + candle_keys)

    top = s3_client.list_objects_v2(Bucket=s3_bucket, Delimiter="/")
    assert [prefix["Prefix"] for prefix in top["CommonPrefixes"]] == ["candles/", "trades/"]
    assert "Contents" not in top

    assert s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="quotes/")["KeyCount"] == 0


def test_delete_removes_objects(s3_client: Any, s3_bucket: str) -> None:
    for key in ("a.txt", "b.txt", "c.txt"):
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"x")

    s3_client.delete_object(Bucket=s3_bucket, Key="a.txt")
    response = s3_client.delete_objects(Bucket=s3_bucket, Delete={"Objects": [{"Key": "b.txt"}], "Quiet": False})
    assert [deleted["Key"] for deleted in response["Deleted"]] == ["b.txt"]
    assert "Errors" not in response

    listing = s3_client.list_objects_v2(Bucket=s3_bucket)
    assert [obj["Key"] for obj in listing["Contents"]] == ["c.txt"]
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        s3_client.head_object(Bucket=s3_bucket, Key="a.txt")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_missing_key_and_bucket_raise_not_found(s3_client: Any, s3_bucket: str) -> None:
    with pytest.raises(s3_client.exceptions.NoSuchKey) as raised:
        s3_client.get_object(Bucket=s3_bucket, Key="never/written.parquet")
    assert raised.value.response["Error"]["Code"] == "NoSuchKey"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    # HEAD responses carry no body, so the error code is the bare status.
    with pytest.raises(botocore.exceptions.ClientError) as head_raised:
        s3_client.head_object(Bucket=s3_bucket, Key="never/written.parquet")
    assert head_raised.value.response["Error"]["Code"] == "404"

    with pytest.raises(s3_client.exceptions.NoSuchBucket):
        s3_client.list_objects_v2(Bucket=f"{s3_bucket}-absent")


def test_multipart_upload_etag_and_composite_crc32(s3_client: Any, s3_bucket: str) -> None:
    """The path the tierer takes for big Parquet files: three parts, each CRC32-checked by the server."""
    part_bytes = 5 * 1024 * 1024  # S3's minimum size for every part but the last
    body = random.Random(7).randbytes(2 * part_bytes + 1234)
    transfer = TransferConfig(multipart_threshold=part_bytes, multipart_chunksize=part_bytes, use_threads=False)

    s3_client.upload_fileobj(io.BytesIO(body), s3_bucket, "cold/big.parquet", Config=transfer)

    parts = [body[i : i + part_bytes] for i in range(0, len(body), part_bytes)]
    md5_of_md5s = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()  # noqa: S324
    crc_of_crcs = zlib.crc32(b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)).to_bytes(4, "big")
    head = s3_client.head_object(Bucket=s3_bucket, Key="cold/big.parquet", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == f'"{md5_of_md5s}-3"'
    assert head["ChecksumCRC32"] == f"{base64.b64encode(crc_of_crcs).decode()}-3"

    downloaded = io.BytesIO()
    s3_client.download_fileobj(s3_bucket, "cold/big.parquet", downloaded, Config=transfer)
    assert downloaded.getvalue() == body


def _trades_table(rows: int) -> pa.Table:
    symbols = ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
    return pa.table(
        {
            "ts_event": pa.array([T0_NS + i * 1_000_003 for i in range(rows)], pa.int64()),
            "symbol": pa.array([symbols[i % 3] for i in range(rows)], pa.string()),
            # 42000.12345678 + i ticks, exact as scaled integers
            "price": pa.array([4_200_012_345_678 + i for i in range(rows)], pa.int64()),
            "size": pa.array([(i % 17 + 1) * 1_000 for i in range(rows)], pa.int64()),
        },
        metadata={"price_scale": str(PRICE_SCALE), "size_scale": str(PRICE_SCALE)},
    )


def test_parquet_roundtrip_through_arrow_s3_filesystem(s3_server: S3Server, s3_client: Any, s3_bucket: str) -> None:
    filesystem = s3_server.arrow_filesystem()
    table = _trades_table(30_000)
    path = f"{s3_bucket}/trades/binance/date=2023-11-14/part-0.parquet"

    pq.write_table(table, path, filesystem=filesystem, compression="zstd", row_group_size=10_000)

    info = filesystem.get_file_info(path)
    head = s3_client.head_object(Bucket=s3_bucket, Key=path.split("/", 1)[1])
    assert info.size == head["ContentLength"] > 0

    metadata = pq.read_metadata(path, filesystem=filesystem)
    assert metadata.num_rows == 30_000
    assert metadata.num_row_groups == 3
    codecs = {
        metadata.row_group(g).column(c).compression
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    }
    assert codecs == {"ZSTD"}

    back = pq.read_table(path, filesystem=filesystem)
    assert back.equals(table)
    assert back.schema.metadata[b"price_scale"] == b"8"
    assert back.column("ts_event").to_pylist()[:2] == [T0_NS, T0_NS + 1_000_003]

    # Column projection plus a predicate pushed into the scan: only BTC rows, only two columns.
    btc = pq.read_table(
        path, filesystem=filesystem, columns=["ts_event", "price"], filters=[("symbol", "==", "BTC-USDT")]
    )
    assert btc.column_names == ["ts_event", "price"]
    assert btc.num_rows == 10_000
    assert btc.column("price").to_pylist() == list(range(4_200_012_345_678, 4_200_012_375_678, 3))

    dataset = ds.dataset(f"{s3_bucket}/trades", filesystem=filesystem, format="parquet", partitioning="hive")
    window = dataset.to_table(
        columns=["price"],
        filter=(pc.field("ts_event") >= T0_NS + 100 * 1_000_003) & (pc.field("ts_event") < T0_NS + 103 * 1_000_003),
    )
    assert window.column("price").to_pylist() == [4_200_012_345_778, 4_200_012_345_779, 4_200_012_345_780]


def test_objects_survive_a_server_restart(tmp_path: Path) -> None:
    with S3Server(tmp_path / "s3") as server:
        client = server.boto3_client()
        try:
            client.create_bucket(Bucket="archive")
            client.put_object(Bucket="archive", Key="k/v.bin", Body=b"cold", Metadata={"crc": "1"})
        finally:
            client.close()
        first_port = server.port

    assert not server.running
    with S3Server(tmp_path / "s3", port=first_port, backend=server.backend) as again:
        client = again.boto3_client()
        try:
            got = client.get_object(Bucket="archive", Key="k/v.bin")
            with got["Body"] as stream:
                assert stream.read() == b"cold"
            assert got["Metadata"] == {"crc": "1"}
        finally:
            client.close()


def test_start_refuses_a_port_another_server_holds(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = S3Server(tmp_path / "s3", port=port)
        with pytest.raises(ServerStartError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start()
        assert not server.running


def test_start_retries_when_the_free_port_is_taken_before_bind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """free_port() and the server's bind race other processes; a lost race costs a retry, not a failure."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stolen_port = taken.getsockname()[1]
        offered = iter([stolen_port])
        monkeypatch.setattr(s3_module, "free_port", lambda: next(offered, None) or free_port())

        with S3Server(tmp_path / "s3") as server:
            assert server.port != stolen_port
            client = server.boto3_client()
            try:
                assert client.list_buckets()["Buckets"] == []
            finally:
                client.close()
    log = (tmp_path / "s3" / "s3.log").read_text().lower()
    assert any(marker in log for marker in s3_module.PORT_TAKEN_MARKERS)


@pytest.mark.parametrize("metadata", ["xattr", "sidecar"])
def test_versitygw_metadata_stores(tmp_path: Path, metadata: MetadataStore) -> None:
    """Both places versitygw can keep object metadata work (`auto` picks xattrs where the filesystem has them)."""
    if default_backend() is not S3Backend.VERSITYGW:
        pytest.skip("metadata stores are a versitygw option")
    if metadata == "xattr" and not supports_user_xattrs(tmp_path):
        pytest.skip("this filesystem refuses user xattrs")
    with S3Server(tmp_path / "s3", metadata=metadata) as server:
        assert server.uses_sidecar_metadata is (metadata == "sidecar")
        client = server.boto3_client()
        try:
            client.create_bucket(Bucket="meta-check")
            client.put_object(Bucket="meta-check", Key="obj", Body=b"1", Metadata={"scale": "8"})
            assert client.head_object(Bucket="meta-check", Key="obj")["Metadata"] == {"scale": "8"}
        finally:
            client.close()
    assert (tmp_path / "s3" / "meta" / "meta-check").is_dir() is (metadata == "sidecar")
