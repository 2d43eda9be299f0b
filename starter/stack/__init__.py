"""The embedded stack: Temporal dev server and worker processes, started, watched and stopped."""
