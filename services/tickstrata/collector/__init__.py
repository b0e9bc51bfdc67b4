"""tickstrata.collector."""
