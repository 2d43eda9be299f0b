"""Slipway tests package."""
