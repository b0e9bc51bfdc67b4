"""tickstrata.simulator."""
