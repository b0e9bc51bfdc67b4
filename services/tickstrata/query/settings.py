"""Query settings: environment variables prefixed `QUERY_`."""

from __future__ import annotations

from pydantic import Field

from tickstrata.common.grpc_app import GrpcRedisSettings
from tickstrata.common.settings import service_config


class QuerySettings(GrpcRedisSettings):
    model_config = service_config("QUERY_")

    health_port: int = Field(default=8085, ge=0, le=65535)
    """Port of the HTTP health server."""

    grpc_port: int = Field(default=50055, ge=0, le=65535)
    """Port of the MarketDataService gRPC server."""

    # ---- history (candles, trades) -----------------------------------------------------------------------

    questdb_pg_dsn: str = Field(default="postgresql://admin:quest@127.0.0.1:8812/qdb", pattern=r"^postgres(ql)?://")
    """The hot tier's PGWire endpoint (candles and trades are read here)."""

    questdb_http_url: str = Field(default="http://127.0.0.1:9000", pattern=r"^https?://")
    """QuestDB's HTTP endpoint (console and `/exec`; given by `tickstrata up` for operators' convenience)."""

    max_rows_per_call: int = Field(default=2_000_000, ge=1)
    """Rows one GetCandles/GetTrades call may read; a larger range is refused (OUT_OF_RANGE) with a message to
    split it, as soon as the read passes the cap. Memory per call is about 150 bytes per row of the cap."""

    max_concurrent_history_calls: int = Field(default=4, ge=1, le=256)
    """GetCandles/GetTrades calls served at once; one more is refused at once with RESOURCE_EXHAUSTED (retry with
    backoff). Bounds the memory of bulk answers to about this many times a full call. The QuestDB connection pool
    holds one connection more than this."""

    instruments_refresh_secs: float = Field(default=30.0, gt=0)
    """How often the list of stored instruments (a full scan of trades and candles) may be read again: an unknown
    symbol is answered NOT_FOUND from the cached list, and a newly stored instrument is found within this time."""

    max_candle_buckets: int = Field(default=1_100_000, ge=1)
    """Buckets one GetCandles call may span (two years of 1-minute candles)."""

    call_timeout_secs: float = Field(default=60.0, gt=0)
    """Server-side bound on one bulk call; the client's own deadline applies too, whichever is sooner."""

    max_rows_per_batch: int = Field(default=65_536, ge=1)
    """Rows per streamed response when the request does not ask for fewer."""

    grpc_max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=4 * 1024 * 1024)
    """Largest gRPC message sent or received; responses are cut into batches well below it."""

    # ---- latest prices -----------------------------------------------------------------------------------

    stale_after_ms: int = Field(default=10_000, ge=1)
    """A latest price received longer ago than this is flagged `stale` (the feed may be down or the market quiet)."""

    live_block_ms: int = Field(default=500, ge=1, le=60_000)
    """How long the live reader's XREAD waits for new trades; also how late it notices a new stream or a stop."""

    # ---- latest prices: the in-process mirror of the cache (query/mirror.py) -------------------------------

    latest_mirror: bool = True
    """Answer latest prices from an in-process copy of the cache, kept coherent by Redis invalidations (CLIENT
    TRACKING); false: every GetLatestPrice reads Redis."""

    latest_mirror_max_lag_ms: int = Field(default=100, ge=10, le=10_000)
    """The copy answers only while confirmed in step with Redis within this many ms: the bound on how long a
    value superseded in Redis can still be served (typically it is replaced within one round trip)."""
