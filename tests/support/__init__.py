"""Shared test helpers: real local services started for the tests."""
