"""Hostile answers for the `bad_rest` and `garbage` faults: what a broken venue, proxy or attacker sends.

- `crossed`: a well-formed depth snapshot whose best bid is above its best ask.
- `html`: an HTML error page with status 200 (a proxy or captive portal between us and the venue).
- `huge`: a JSON-looking body of `size_bytes`, sent in chunks without a Content-Length, so only a reader that
  counts while it reads can stop it.
- `gzip_bomb`: `Content-Encoding: gzip`, about a thousandth of `size_bytes` on the wire, `size_bytes` inflated.
- `garbage(size)`: one printable, non-JSON text frame of `size` bytes (valid UTF-8, so the client's library
  delivers it and the collector's own rules must refuse it).
"""

from __future__ import annotations

import functools
import zlib
from typing import Final

from aiohttp import web

from tickstrata.simulator.faults import FaultSpec

_CHUNK_BYTES: Final = 1024 * 1024
_HTML: Final = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>"
)
_LEVEL: Final = b'["1.00000000","1.00000000"],'


def garbage(size: int) -> bytes:
    """A printable ASCII frame of exactly `size` bytes that is not JSON."""
    pattern = b"garbage~not-json|"
    return (pattern * (size // len(pattern) + 1))[:size]


def crossed_depth(last_update_id: int) -> bytes:
    return (
        b'{"lastUpdateId":%d,"bids":[["101.00000000","1.00000000"],["100.00000000","2.00000000"]],'
        b'"asks":[["99.00000000","1.00000000"],["102.00000000","2.00000000"]]}' % last_update_id
    )


@functools.cache
def gzip_bomb(size: int) -> bytes:
    """`size` bytes of JSON whitespace inside `[` `]`, gzip-compressed (cached: a bomb is built once per size)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    parts = [compressor.compress(b"[")]
    block = b" " * _CHUNK_BYTES
    left = max(0, size - 2)
    while left > 0:
        parts.append(compressor.compress(block[: min(left, _CHUNK_BYTES)]))
        left -= _CHUNK_BYTES
    parts.append(compressor.compress(b"]"))
    parts.append(compressor.flush())
    return b"".join(parts)


async def bad_rest_response(
    request: web.Request, spec: FaultSpec, headers: dict[str, str], *, last_update_id: int
) -> web.StreamResponse:
    """The bad answer `spec` asks for, with the venue's usual headers."""
    if spec.body == "crossed":
        return web.Response(body=crossed_depth(last_update_id), content_type="application/json", headers=headers)
    if spec.body == "html":
        return web.Response(body=_HTML, content_type="text/html", headers=headers)
    if spec.body == "gzip_bomb":
        bomb = gzip_bomb(spec.size_bytes)
        return web.Response(body=bomb, content_type="application/json", headers={**headers, "Content-Encoding": "gzip"})
    response = web.StreamResponse(headers={**headers, "Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    chunk = (_LEVEL * (_CHUNK_BYTES // len(_LEVEL) + 1))[:_CHUNK_BYTES]
    sent = 0
    try:
        await response.write(b'{"lastUpdateId":1,"bids":[')
        while sent < spec.size_bytes:
            part = chunk[: min(_CHUNK_BYTES, spec.size_bytes - sent)]
            await response.write(part)
            sent += len(part)
        await response.write_eof()
    except (ConnectionResetError, RuntimeError):
        pass  # the client stopped reading, as it should: nothing left to send
    return response
