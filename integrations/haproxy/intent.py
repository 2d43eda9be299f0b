"""What an environment's load balancer should be, kept outside the daemon so a restarted
HAProxy (killed, rebooted, `slipway down`/`up`, or a replacement load-balancer host) comes back
with the right frontend, servers and weights.

HAProxy's dynamic servers live only in the daemon's memory; an :class:`IntentStore` is the
durable copy, written on every change the router makes and read when a daemon must be
rebuilt. Two stores: :class:`FileIntent`, a JSON file per environment beside its config in one
host's state directory (the default), and the catalogue's (``catalogue.lb_intent``), from which
any host with the same catalogue rebuilds the load balancers. The router takes the store as a
constructor argument: integrations never import the catalogue.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from schemas.lb_intent import FrontendIntent, ServerIntent

__all__ = ["FileIntent", "FrontendIntent", "IntentStore", "ServerIntent", "read_intent",
           "write_intent"]


class IntentStore(Protocol):
    """Where the router records each environment key's load balancer."""

    def read(self, key: str) -> dict[str, ServerIntent]:
        """The key's servers by name; empty when none is recorded."""
        ...

    def write(self, key: str, servers: Mapping[str, ServerIntent]) -> None:
        """Replace the key's servers, all of them or none (a crash leaves the previous ones)."""
        ...

    def keys(self) -> list[str]:
        """Keys with a frontend or servers recorded: the load balancers that should run."""
        ...

    def frontend(self, key: str) -> FrontendIntent | None:
        """Where the key's load balancer listens; None when the store does not say."""
        ...

    def set_frontend(self, key: str, frontend: FrontendIntent) -> None:
        ...

    def forget(self, key: str) -> None:
        """Drop the key's frontend and servers: its load balancer is removed for good."""
        ...


def read_intent(path: Path) -> dict[str, ServerIntent]:
    """Servers by name; empty when nothing was recorded (or the file is unreadable)."""
    try:
        raw = json.loads(path.read_text())
        return {name: ServerIntent.model_validate(entry) for name, entry in raw.items()}
    except (OSError, ValueError):
        return {}


def write_intent(path: Path, servers: Mapping[str, ServerIntent]) -> None:
    """Replace the file atomically: a crash mid-write leaves the previous version."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({name: entry.model_dump() for name, entry in sorted(
        servers.items())}, indent=1))
    os.replace(tmp, path)


class FileIntent:
    """``<key>.servers.json`` in the HAProxy directory of one state directory.

    It records no frontend of its own: the config beside it, in the same directory, already
    says where the daemon listens, and nothing but this host reads either."""

    SUFFIX = ".servers.json"

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def path(self, key: str) -> Path:
        return self.dir / f"{key}{self.SUFFIX}"

    def read(self, key: str) -> dict[str, ServerIntent]:
        return read_intent(self.path(key))

    def write(self, key: str, servers: Mapping[str, ServerIntent]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_intent(self.path(key), servers)

    def keys(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(path.name.removesuffix(self.SUFFIX)
                      for path in self.dir.glob(f"*{self.SUFFIX}"))

    def frontend(self, key: str) -> FrontendIntent | None:
        return None

    def set_frontend(self, key: str, frontend: FrontendIntent) -> None:
        return None  # the config file is the record

    def forget(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
