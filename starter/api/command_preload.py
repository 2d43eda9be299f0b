"""Imported once by the forkserver of the server's command processes: the command tree,
imported and built, and the catalogue's ORM mappers configured (~0.1 s each on first use),
so that each command process starts with them ready."""

from __future__ import annotations

from sqlalchemy.orm import configure_mappers

from starter.cli.main import command_tree

command_tree()
configure_mappers()
