"""Integration tests: real HAProxy, docker-registry and other Debian-hosted services."""
