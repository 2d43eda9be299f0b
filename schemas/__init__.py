"""Slipway schemas package."""
