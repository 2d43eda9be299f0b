"""Plain HTTP endpoints answering JSON: the ``web`` provider of canary analysis."""
