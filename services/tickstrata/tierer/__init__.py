"""tickstrata.tierer."""
