"""Tests of the starter package."""
