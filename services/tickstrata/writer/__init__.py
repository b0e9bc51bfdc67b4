"""tickstrata.writer."""
