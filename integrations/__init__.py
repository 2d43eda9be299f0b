"""Slipway integrations package."""
