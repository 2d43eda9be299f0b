"""Alembic revisions of the catalogue schema, oldest first."""
