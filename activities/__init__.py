"""Slipway activities package."""
