"""Prometheus: instant PromQL queries over its HTTP API (canary analysis)."""
