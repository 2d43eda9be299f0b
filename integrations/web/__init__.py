"""Plain HTTP endpoints answering JSON: the ``web`` provider of canary analysis, limited to
the hosts of ``SLIPWAY_ANALYSIS_WEB_HOSTS`` (default: loopback)."""
