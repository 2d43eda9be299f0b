"""Our own database: sqlmodel tables, the store (engine + sessions + lookups), release and lane
records, and the alembic migrations that shape the schema."""
