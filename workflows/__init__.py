"""Slipway workflows package."""
