"""`tickstrata candles` (see `history_cli`)."""

from tickstrata.client.history_cli import candles_main as main

__all__ = ["main"]
