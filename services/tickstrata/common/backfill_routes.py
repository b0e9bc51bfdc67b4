"""Where each instrument's BackfillService listens, for a validator that cannot be told up front. Pure.

Under Kubernetes the collectors come and go with ExchangeFeed resources, so no static setting can name them. The
operator publishes, on every resync, the hash ``backfill:routes:<exchange>``: one field per symbol, its value the
``host:port`` of the Service in front of that feed's collector (``status.backfillAddress``). It rewrites the whole
hash atomically and gives it a time to live of a few resync intervals, so a deleted feed's routes disappear. The
validator reads the hashes periodically; a static ``VALIDATOR_BACKFILL_ADDRESSES`` entry wins over a route.
"""

from __future__ import annotations

from typing import Final

from tickstrata.common.events import validate_exchange

BACKFILL_ROUTES_PREFIX: Final = "backfill:routes:"


def backfill_routes_key(exchange: str) -> str:
    """Name an exchange's routes hash: ``backfill:routes:binance``."""
    return f"{BACKFILL_ROUTES_PREFIX}{validate_exchange(exchange)}"


def parse_address(text: str | bytes) -> str:
    """``host:port`` checked (a port in 1..65535, a non-empty host without spaces); raise ``ValueError``."""
    value = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    host, colon, port = value.rpartition(":")
    if not colon or not host or any(c.isspace() for c in host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a backfill address must be host:port, got {value[:100]!r}")
    return value
