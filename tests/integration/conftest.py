"""Integration fixtures: real servers on 127.0.0.1 free ports, started once per session and always stopped.

Each server's fixtures live in `servers/<server>_fixtures.py`; importing them here makes them available to every
integration test (pytest discovers fixtures by name in a conftest's namespace).
"""

from tests.integration.servers.chdb_fixtures import chdb_client, chdb_path
from tests.integration.servers.kube_fixtures import kube_cluster, kube_namespace
from tests.integration.servers.otlp_fixtures import otlp_receiver
from tests.integration.servers.questdb_fixtures import questdb_server, questdb_table
from tests.integration.servers.redis_fixtures import redis_client, redis_server
from tests.integration.servers.s3_fixtures import s3_bucket, s3_client, s3_server
from tests.integration.servers.simulator_fixtures import simulator

__all__ = [
    "chdb_client",
    "chdb_path",
    "kube_cluster",
    "kube_namespace",
    "otlp_receiver",
    "questdb_server",
    "questdb_table",
    "redis_client",
    "redis_server",
    "s3_bucket",
    "s3_client",
    "s3_server",
    "simulator",
]
