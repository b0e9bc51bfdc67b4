"""tickstrata.client: the Python client of the query service (gRPC), and the query commands of the CLI."""

from tickstrata.client.market_data import (
    DEFAULT_ADDRESS,
    InvalidQueryError,
    LatestPriceRow,
    LatestPrices,
    LatestSubscription,
    MarketDataClient,
    NotFoundError,
    QueryError,
    QueryServiceUnavailableError,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "InvalidQueryError",
    "LatestPriceRow",
    "LatestPrices",
    "LatestSubscription",
    "MarketDataClient",
    "NotFoundError",
    "QueryError",
    "QueryServiceUnavailableError",
]
