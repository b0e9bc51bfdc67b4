"""Reading a REST response body: bounded on the wire and after decompression, and its error object. Pure, no I/O.

The REST client feeds ``BodyReader`` the bytes as they arrive and stops at the first ``BodyRefused``: a 50 MiB
answer costs at most the cap in memory, and a gzip bomb (a few KiB on the wire, gigabytes inflated) is inflated
at most one byte past the cap, because each ``zlib`` call is given at most the room left as its ``max_length``.

We decompress ourselves rather than let the HTTP library do it: the cap is then ours to enforce, whatever the
library's version does, and only the encodings we asked for (``gzip``, ``deflate``) are accepted.
"""

from __future__ import annotations

import zlib
from typing import Final

import msgspec

ACCEPT_ENCODING: Final = "gzip, deflate"
# zlib's wbits for "a zlib or gzip header, detected automatically".
_AUTO_HEADER_WBITS: Final = zlib.MAX_WBITS | 32
# Output of one inflate step: small steps keep the peak near the cap (one big step would hold the cap twice while
# zlib grows its output buffer).
_INFLATE_STEP_BYTES: Final = 256 * 1024


class BodyRefused(ValueError):  # noqa: N818 - a refusal, raised to stop reading; the REST client wraps it
    """The body broke a limit. ``kind``: ``too_large``, ``encoding`` or ``content_type``."""

    def __init__(self, kind: str, detail: str, head: bytes = b"") -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.head = head  # the first bytes received (decoded), for the quarantine record


class _VenueError(msgspec.Struct):
    code: int | None = None
    msg: str = ""


_error_decoder: Final = msgspec.json.Decoder(_VenueError)


def parse_error_body(body: bytes) -> tuple[int | None, str]:
    """The venue's error code and message from a non-2xx body (``{"code":-1121,"msg":"Invalid symbol."}``)."""
    try:
        error = _error_decoder.decode(body)
    except msgspec.DecodeError:
        return None, body[:200].decode("utf-8", "replace")  # an HTML error page from a proxy or WAF
    return error.code, error.msg


def is_json_content_type(content_type: str | None) -> bool:
    """False when the body declares itself something else than JSON (``text/html`` from a proxy, XML, ...).

    JSON types pass (``application/json``, ``…+json``), and so do an absent header and the generic
    ``application/octet-stream``, which say nothing either way: the parser then decides.
    """
    if content_type is None:
        return True
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type in ("application/json", "application/octet-stream", "") or media_type.endswith("+json")


class BodyReader:
    """Collects a body of at most ``max_bytes`` bytes, decompressing ``gzip``/``deflate`` content on the way."""

    def __init__(self, max_bytes: int, content_encoding: str | None = None, *, head_bytes: int = 64 * 1024) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.max_bytes = max_bytes
        self._head_bytes = head_bytes
        self._chunks: list[bytes] = []
        self.size = 0  # decoded bytes so far
        self.wire_size = 0  # bytes received
        encoding = (content_encoding or "identity").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._inflater: zlib._Decompress | None = zlib.decompressobj(_AUTO_HEADER_WBITS)
        elif encoding == "identity":
            self._inflater = None
        else:
            raise BodyRefused("encoding", f"content encoding {content_encoding!r} was not asked for")

    def feed(self, chunk: bytes) -> None:
        """Take the next received bytes; raises ``BodyRefused`` once the body is over the cap."""
        self.wire_size += len(chunk)
        if self.wire_size > self.max_bytes:
            # Compression never makes JSON larger than itself plus a header: over the cap on the wire is over it.
            self._refuse(f"more than {self.max_bytes} bytes on the wire")
        inflater = self._inflater
        if inflater is None:
            self._keep(chunk)
            return
        data = chunk
        while data and not inflater.eof:
            try:
                out = inflater.decompress(data, min(_INFLATE_STEP_BYTES, self.max_bytes - self.size + 1))
            except zlib.error as error:
                raise BodyRefused("encoding", f"corrupt compressed body: {error}", self._head()) from None
            self._keep(out)
            data = inflater.unconsumed_tail
        if inflater.eof and (inflater.unused_data or data):
            # A second gzip member or trailing bytes: nothing we asked for sends that.
            raise BodyRefused("encoding", "data after the end of the compressed stream", self._head())

    def finish(self) -> bytes:
        """The whole decoded body; raises ``BodyRefused`` if a compressed body ended early."""
        inflater = self._inflater
        if inflater is not None:
            if not inflater.eof:
                raise BodyRefused("encoding", "the compressed body ended before its end marker", self._head())
            self._keep(inflater.flush())
        return b"".join(self._chunks)

    def _keep(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.max_bytes:
            self._refuse(f"more than {self.max_bytes} bytes decoded")
        self._chunks.append(data)

    def _head(self) -> bytes:
        parts, size = [], 0
        for chunk in self._chunks:  # only the chunks the head needs, never a copy of the whole body
            parts.append(chunk[: self._head_bytes - size])
            size += len(parts[-1])
            if size >= self._head_bytes:
                break
        return b"".join(parts)

    def _refuse(self, detail: str) -> None:
        head = self._head()
        self._chunks.clear()  # what was read goes now, not when the exception is finally collected
        raise BodyRefused("too_large", detail, head)
