"""Fixtures shared by every test package."""

from tests.support.fixtures import registry_server  # noqa: F401  (session-scoped registry)
