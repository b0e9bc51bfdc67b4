"""The local Redis speaks the Streams semantics the collector and writer rely on (Debian's 7.0.15).

Consumer groups give at-least-once delivery through the pending entries list (PEL): an entry stays pending until
XACK, and XAUTOCLAIM hands a dead consumer's entries to a live one. MAXLEN trimming bounds memory, and on 7.0 it
deletes entries that are still pending: the writer must never trim above what every group has acknowledged.
"""

from __future__ import annotations

import time

import pytest
import redis

pytestmark = pytest.mark.integration

STREAM = "md:test:trades"
GROUP = "writer"


def _add(client: redis.Redis, count: int, *, stream: str = STREAM) -> list[bytes]:
    ids: list[bytes] = []
    for i in range(count):
        entry_id = client.xadd(stream, {"seq": str(i), "payload": f"trade-{i}".encode()})
        assert isinstance(entry_id, bytes)
        ids.append(entry_id)
    return ids


def test_redis_server_reports_debian_version(redis_client: redis.Redis) -> None:
    # The Streams semantics below are the 7.0 ones (no ACKED trimming, no IDMP); a new binary must be noticed.
    assert redis_client.info("server")["redis_version"] == "7.0.15"


def test_group_read_then_ack_leaves_no_pending_entries(redis_client: redis.Redis) -> None:
    redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    ids = _add(redis_client, 3)

    delivered = redis_client.xreadgroup(GROUP, "writer-0", {STREAM: ">"}, count=10)

    assert delivered == [
        [
            STREAM.encode(),
            [(ids[i], {b"seq": str(i).encode(), b"payload": f"trade-{i}".encode()}) for i in range(3)],
        ]
    ]
    pending = redis_client.xpending(STREAM, GROUP)
    assert pending["pending"] == 3
    assert (pending["min"], pending["max"]) == (ids[0], ids[2])
    assert pending["consumers"] == [{"name": b"writer-0", "pending": 3}]

    assert redis_client.xack(STREAM, GROUP, *ids) == 3
    assert redis_client.xack(STREAM, GROUP, *ids) == 0  # a repeated ack is harmless

    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0
    # A restarted consumer re-reads its own history first ("0"): nothing is left to redo.
    assert redis_client.xreadgroup(GROUP, "writer-0", {STREAM: "0"}) == [[STREAM.encode(), []]]
    assert redis_client.xreadgroup(GROUP, "writer-0", {STREAM: ">"}, block=50) == []
    (group,) = redis_client.xinfo_groups(STREAM)
    assert (group["name"], group["pending"], group["lag"], group["last-delivered-id"]) == (
        GROUP.encode(),
        0,
        0,
        ids[2],
    )


def test_xautoclaim_hands_unacked_entry_to_second_consumer(redis_client: redis.Redis) -> None:
    redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    ids = _add(redis_client, 2)
    redis_client.xreadgroup(GROUP, "writer-dead", {STREAM: ">"}, count=10)
    redis_client.xack(STREAM, GROUP, ids[0])  # the consumer dies after writing the first entry only

    # Not idle long enough yet: a live consumer's in-flight work is never stolen.
    assert redis_client.xautoclaim(STREAM, GROUP, "writer-live", min_idle_time=60_000) == [b"0-0", [], []]

    time.sleep(0.05)
    claimed = redis_client.xautoclaim(STREAM, GROUP, "writer-live", min_idle_time=20)

    assert claimed == [b"0-0", [(ids[1], {b"seq": b"1", b"payload": b"trade-1"})], []]
    (entry,) = redis_client.xpending_range(STREAM, GROUP, min="-", max="+", count=10)
    assert (entry["message_id"], entry["consumer"], entry["times_delivered"]) == (ids[1], b"writer-live", 2)

    assert redis_client.xack(STREAM, GROUP, ids[1]) == 1
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0


def test_approximate_maxlen_keeps_stream_bounded_and_newest_entries(redis_client: redis.Redis) -> None:
    maxlen, added = 100, 1050
    # Approximate trimming removes whole radix-tree nodes only, so the length may exceed MAXLEN by < one node.
    node_entries_conf = redis_client.config_get("stream-node-max-entries")["stream-node-max-entries"]
    assert node_entries_conf is not None
    node_entries = int(node_entries_conf)
    longest = 0
    for i in range(added):
        redis_client.xadd(STREAM, {"seq": str(i)}, maxlen=maxlen, approximate=True)
        longest = max(longest, redis_client.xlen(STREAM))

    length = redis_client.xlen(STREAM)
    assert maxlen <= length < maxlen + node_entries
    assert longest < maxlen + node_entries
    # Trimming drops the oldest entries: what is left is exactly the newest `length` ones, in order.
    kept = [int(fields[b"seq"]) for _, fields in redis_client.xrange(STREAM) or [] if fields is not None]
    assert kept == list(range(added - length, added))

    redis_client.xadd(STREAM, {"seq": str(added)}, maxlen=maxlen, approximate=False)
    assert redis_client.xlen(STREAM) == maxlen


def test_trimming_deletes_entries_still_pending_in_a_group(redis_client: redis.Redis) -> None:
    # Redis 7.0 trims with KEEPREF semantics: pending entries go too, and the group only learns it on claim.
    redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    ids = _add(redis_client, 3)
    redis_client.xreadgroup(GROUP, "writer-0", {STREAM: ">"}, count=10)

    assert redis_client.xtrim(STREAM, maxlen=0, approximate=False) == 3

    assert redis_client.xpending(STREAM, GROUP)["pending"] == 3  # the PEL still lists them ...
    # ... but the data is gone: XAUTOCLAIM reports them as deleted and removes them from the PEL.
    assert redis_client.xautoclaim(STREAM, GROUP, "writer-1", min_idle_time=0) == [b"0-0", [], ids]
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0
