"""tickstrata.query."""
