"""What an environment's backend should hold, kept beside its config so a restarted HAProxy
(killed, rebooted, `slipway down`/`up`) comes back with the right servers and weights.

HAProxy's dynamic servers live only in the daemon's memory; this file is the durable copy,
written on every change the router makes and read when a daemon must be rebuilt.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel


class ServerIntent(BaseModel):
    """One server as the router last set it."""

    address: str
    port: int
    weight: int = 100
    state: Literal["ready", "drain"] = "ready"


def read_intent(path: Path) -> dict[str, ServerIntent]:
    """Servers by name; empty when nothing was recorded (or the file is unreadable)."""
    try:
        raw = json.loads(path.read_text())
        return {name: ServerIntent.model_validate(entry) for name, entry in raw.items()}
    except (OSError, ValueError):
        return {}


def write_intent(path: Path, servers: dict[str, ServerIntent]) -> None:
    """Replace the file atomically: a crash mid-write leaves the previous version."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({name: entry.model_dump() for name, entry in sorted(
        servers.items())}, indent=1))
    os.replace(tmp, path)
