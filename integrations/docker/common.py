"""What the Docker runtime and its health checks share: container labels, timeouts, and the
errors they raise."""

from __future__ import annotations

from integrations.errors import ClusterUnavailableError, PermanentRuntimeError

LABEL_APP = "slipway.app"
LABEL_ENV = "slipway.env"
LABEL_VERSION = "slipway.version"
LABEL_PORT = "slipway.port"
# Which Slipway stack started a container: two stacks sharing one engine never touch each
# other's containers (a container from before this label is taken as this stack's own).
LABEL_STACK = "slipway.stack"
# The cluster host a replica was placed on (its name in the cluster's settings).
LABEL_HOST = "slipway.host"
LABEL_INDEX = "slipway.index"
STOP_TIMEOUT_SECONDS = 10
# How long a new replica may fail the same way (restarting after it exits, one health answer
# other than 200 on every probe) before wait_ready gives up on the version, long before the
# progress deadline: SLIPWAY_FAILING_VERSION_SECONDS.
FAILING_VERSION_SECONDS = 30.0
# Health answers that mean "not ready yet" rather than "wrong": left to the progress deadline.
WARMING_UP = frozenset({503})
# At most this many unhealthy replicas are described in a progress message.
NOTES_SHOWN = 3


class EngineError(ClusterUnavailableError):
    """An engine failure worth retrying (engine unreachable, container did not start)."""


class ImageMissingError(PermanentRuntimeError):
    """The image does not exist locally nor in its registry: retrying won't help."""


class NotReadyError(PermanentRuntimeError):
    """Replicas did not become healthy before the progress deadline."""


class FailingVersionError(NotReadyError):
    """A new replica failed the same way for the whole failing-version bound (a crash loop,
    one health answer on every probe): waiting out the progress deadline won't help."""
