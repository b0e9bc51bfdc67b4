"""REST bodies are capped while reading and after decompression; refused bodies raise a clear, handled error."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from aiohttp import web

from tickstrata.collector.rest import BodyRefusedError, RestBudget, RestClient, RestError
from tickstrata.collector.rest_body import BodyReader, BodyRefused, is_json_content_type

MiB = 1024 * 1024


def bomb_chunks(inflated_bytes: int, chunk_bytes: int = 16 * 1024) -> Iterator[bytes]:
    """A gzip stream of ``inflated_bytes`` zeros, compressed on the fly and cut in wire-sized chunks."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b"\0" * MiB
    pending = b""
    for _ in range(inflated_bytes // MiB):
        pending += compressor.compress(block)
        while len(pending) >= chunk_bytes:
            yield pending[:chunk_bytes]
            pending = pending[chunk_bytes:]
    yield pending + compressor.flush()


def feed_all(reader: BodyReader, chunks: Iterator[bytes]) -> None:
    for chunk in chunks:
        reader.feed(chunk)


def test_identity_body_within_the_cap_is_returned_whole() -> None:
    reader = BodyReader(100)
    for part in (b'{"a":', b"1}"):
        reader.feed(part)
    assert reader.finish() == b'{"a":1}'


def test_identity_body_over_the_cap_is_refused_while_reading_with_its_head() -> None:
    reader = BodyReader(10, head_bytes=4)
    reader.feed(b"0123456789")
    with pytest.raises(BodyRefused) as refused:
        reader.feed(b"x")
    assert refused.value.kind == "too_large"
    assert refused.value.head == b"0123"


def test_gzip_body_is_inflated() -> None:
    reader = BodyReader(1000, "gzip")
    compressed = gzip.compress(b'{"lastUpdateId":1}' * 10)
    for start in range(0, len(compressed), 7):
        reader.feed(compressed[start : start + 7])
    assert reader.finish() == b'{"lastUpdateId":1}' * 10


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    cap = 4 * MiB
    reader = BodyReader(cap, "gzip")
    tracemalloc.start()
    try:
        with pytest.raises(BodyRefused) as refused:
            feed_all(reader, bomb_chunks(1024 * MiB))  # 1 GiB inflated, about 1 MiB on the wire
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.kind == "too_large"
    assert "decoded" in refused.value.detail
    assert reader.size <= cap + 1  # inflated one byte past the cap, never more
    assert peak < 3 * cap  # the bomb was never held: the cap, a copy and change
    assert reader.wire_size < 2 * MiB


@pytest.mark.parametrize(
    ("encoding", "feed", "detail"),
    [
        ("br", lambda _r: None, "was not asked for"),
        ("gzip", lambda r: r.feed(b"\x1f\x8b\x08\x00garbage-not-deflate"), "corrupt"),
        ("gzip", lambda r: r.feed(gzip.compress(b"[1]") + gzip.compress(b"[2]")), "after the end"),
        ("gzip", lambda r: (r.feed(gzip.compress(b"[1]" * 100)[:20]), r.finish()), "ended before"),
    ],
)
def test_bad_encodings_are_refused(encoding: str, feed: Callable[[BodyReader], object], detail: str) -> None:
    with pytest.raises(BodyRefused, match=detail) as refused:
        feed(BodyReader(1000, encoding))
    assert refused.value.kind == "encoding"


def test_content_types() -> None:
    for ok in (None, "application/json;charset=UTF-8", "application/problem+json", "application/octet-stream"):
        assert is_json_content_type(ok), ok
    for bad in ("text/html; charset=utf-8", "text/plain", "application/xml"):
        assert not is_json_content_type(bad), bad


# -- the client against a venue on loopback -----------------------------------------------------------------------


async def _huge(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for _ in range(50):  # 50 MiB, no Content-Length: only counting while reading stops it
            await response.write(b" " * MiB)
    except (ConnectionResetError, RuntimeError):
        pass
    return response


async def _bomb(_request: web.Request) -> web.Response:
    body = b"".join(bomb_chunks(256 * MiB))
    return web.Response(body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})


async def _html(_request: web.Request) -> web.Response:
    return web.Response(body=b"<html><body>502 Bad Gateway</body></html>", content_type="text/html")


async def _gzip_ok(_request: web.Request) -> web.Response:
    body = gzip.compress(b'{"ok":true}')
    return web.Response(body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})


@pytest.fixture
async def venue_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/huge", _huge)
    app.router.add_get("/bomb", _bomb)
    app.router.add_get("/html", _html)
    app.router.add_get("/gzip", _gzip_ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("path", "kind"), [("/huge", "too_large"), ("/bomb", "too_large"), ("/html", "content_type")])
async def test_refused_bodies_raise_a_rest_error_counted_and_logged(
    venue_url: str, path: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with RestClient(venue_url, RestBudget("binance", limit_weight=6000), max_body_bytes=4 * MiB) as client:
        with pytest.raises(BodyRefusedError) as refused:
            await client.get(path, weight=1)
        assert isinstance(refused.value, RestError)  # every caller already handles RestError
        assert refused.value.kind == kind
        assert refused.value.status == 200
        assert client.bodies_refused_total == 1
        assert client.requests_total == 1  # not retried: the same answer would come back
        assert len(refused.value.head) <= 64 * 1024
        # The client survives the refusal: the next request works.
        assert await client.get("/gzip", weight=1) == b'{"ok":true}'
    assert any("refused the body of GET " + path in record.getMessage() for record in caplog.records)
