"""Slipway starter package."""
