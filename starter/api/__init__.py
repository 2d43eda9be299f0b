"""The HTTP receiver (FastAPI): approvals, releases, lanes and webhooks, with bearer-token auth."""
