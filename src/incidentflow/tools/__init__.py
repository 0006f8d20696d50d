"""Command-line tools around the product: send, demo."""
