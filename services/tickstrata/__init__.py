"""tickstrata: real-time cryptocurrency market data, collected, tiered, proven complete and served back."""

__version__ = "0.1.0"
