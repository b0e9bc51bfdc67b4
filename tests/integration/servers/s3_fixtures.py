"""S3 fixtures: one real S3 server per test session, and a fresh bucket per test.

Import into a conftest: `from tests.integration.servers.s3_fixtures import s3_bucket, s3_client, s3_server`.
`TICKSTRATA_S3_BACKEND=s3proxy` forces the S3Proxy fallback even when versitygw is installed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tickstrata.localstack.s3 import S3Backend, S3Server, default_backend

# S3 caps DeleteObjects at 1000 keys per request.
DELETE_BATCH_KEYS = 1000


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    forced = os.environ.get("TICKSTRATA_S3_BACKEND")
    backend = S3Backend(forced) if forced else default_backend()
    with pytest.MonkeyPatch.context() as env:
        # Explicit keys and region mean no SDK (boto3 or pyarrow's C++ one) needs EC2 instance metadata;
        # without this, a lookup it still attempts can stall for seconds on a machine with no IMDS.
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        with S3Server(tmp_path_factory.mktemp("s3"), backend=backend) as server:
            yield server


@pytest.fixture(scope="session")
def s3_client(s3_server: S3Server) -> Iterator[Any]:
    client = s3_server.boto3_client()
    try:
        yield client
    finally:
        client.close()


def empty_bucket(client: Any, bucket: str) -> None:
    """Abort unfinished multipart uploads and delete every object, so the bucket itself can be deleted."""
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    keys = [
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for obj in page.get("Contents", [])
    ]
    for start in range(0, len(keys), DELETE_BATCH_KEYS):
        batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH_KEYS]]
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if response.get("Errors"):
            raise RuntimeError(f"could not empty bucket {bucket}: {response['Errors'][:3]}")


@pytest.fixture
def s3_bucket(s3_client: Any) -> Iterator[str]:
    """A new, empty bucket with a unique name; emptied and deleted after the test."""
    bucket = f"test-{uuid.uuid4().hex[:24]}"
    s3_client.create_bucket(Bucket=bucket)
    try:
        yield bucket
    finally:
        empty_bucket(s3_client, bucket)
        s3_client.delete_bucket(Bucket=bucket)
