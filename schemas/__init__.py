"""Pydantic models of workflow and activity I/O, enums and settings: the shapes every layer
shares."""
