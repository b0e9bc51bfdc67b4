"""tickstrata.cli."""
