"""Pytest fixtures for real local services, usable without a conftest.

Load them from a test module (pytest honours ``pytest_plugins`` at module level)::

    pytest_plugins = ["tests.support.fixtures"]

or, from a future root ``tests/conftest.py``, the same line there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.registry import RegistryServer, registry_available, running_registry


@pytest.fixture(scope="session")
def registry_server() -> Iterator[RegistryServer]:
    """One docker-registry with htpasswd auth for the whole test session."""
    if not registry_available():
        pytest.skip("needs Debian's docker-registry and apache2-utils (htpasswd)")
    with running_registry() as server:
        yield server
