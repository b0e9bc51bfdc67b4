"""tickstrata.client."""
