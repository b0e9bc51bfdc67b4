"""tickstrata.common."""
