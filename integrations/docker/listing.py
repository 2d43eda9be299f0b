"""Containers as an engine's list answers them (``GET /containers/json``, docker-py's sparse
list): name, labels, state and published ports of every container in one call per host.

What a health poll needs of a replica that answers is all there; docker-py's full list
inspects every container besides (a call each), and a reload after it is a third. Only a
replica that does not answer needs its inspection (restart count, exit code, out of memory:
``DockerRuntime._look``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.models import Instance

# Where the runtime's labels say which version and replica a container is.
LABEL_VERSION = "slipway.version"
LABEL_INDEX = "slipway.index"
LABEL_PORT = "slipway.port"


@dataclass(frozen=True)
class Listed:
    """One container from a sparse list."""

    id: str
    name: str
    status: str  # "running", "restarting", "exited", "created", "paused", "dead"
    labels: dict[str, str] = field(default_factory=dict)
    ports: tuple[dict[str, Any], ...] = ()

    @classmethod
    def of(cls, attrs: dict[str, Any]) -> Listed:
        names = attrs.get("Names") or [""]
        return cls(id=attrs["Id"], name=names[0].lstrip("/"), status=attrs.get("State", ""),
                   labels=attrs.get("Labels") or {}, ports=tuple(attrs.get("Ports") or ()))

    def published(self, port: int | None) -> tuple[str, int] | None:
        """(host IP, host port) where container ``port`` is published (None: the port the
        container was started for the load balancer, else any); None when it is not."""
        wanted = str(port or self.labels.get(LABEL_PORT) or "")
        found = [entry for entry in self.ports
                 if entry.get("PublicPort") and entry.get("Type", "tcp") == "tcp"
                 and (not wanted or str(entry.get("PrivatePort")) == wanted)]
        # IPv4 first, as an inspection lists them (an engine binding both lists both).
        found.sort(key=lambda entry: ":" in (entry.get("IP") or ""))
        if not found:
            return None
        return found[0].get("IP") or "", int(found[0]["PublicPort"])

    def instance(self, address: str, port: int | None) -> Instance | None:
        """The replica if it runs with ``port`` published; ``address``: its host's, for a
        binding without an IP."""
        if self.status != "running":
            return None
        published = self.published(port)
        if published is None:
            return None
        return Instance(name=f"v{self.labels[LABEL_VERSION]}-{self.labels[LABEL_INDEX]}",
                        version=int(self.labels[LABEL_VERSION]),
                        address=published[0] or address, port=published[1])
