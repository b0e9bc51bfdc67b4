"""`tickstrata trades` (see `history_cli`)."""

from tickstrata.client.history_cli import trades_main as main

__all__ = ["main"]
