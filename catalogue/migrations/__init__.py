"""Alembic migrations that create and evolve Slipway's catalogue schema."""
