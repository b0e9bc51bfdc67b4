"""tickstrata.validator."""
