"""Errors integrations raise, split by what an activity should do with them.

``PermanentRuntimeError`` and its subclasses mean "retrying won't help, a person must act":
activities turn them into non-retryable ``ApplicationError``s with the same message. Any other
exception (e.g. :class:`ClusterUnavailableError`) is retried by Temporal's retry policy.
No Temporal imports here: integrations stay usable without a worker.
"""

from __future__ import annotations


class PermanentRuntimeError(Exception):
    """A runtime failure that a retry cannot fix; the message says what to do."""


class ClusterConfigError(PermanentRuntimeError):
    """The cluster's access settings (kubeconfig, context, in-cluster account) are unusable."""


class ClusterAccessError(PermanentRuntimeError):
    """The cluster refused the request (401/403): credentials or RBAC must change."""


class NamespaceMissingError(PermanentRuntimeError):
    """The environment's namespace does not exist; Slipway never creates it implicitly."""


class InvalidSpecError(PermanentRuntimeError):
    """The cluster rejected what we asked for (422/400: invalid quantity, replicas out of range)."""


class VersionNotReadyError(PermanentRuntimeError):
    """Replicas did not become ready before the progress deadline, or cannot (crash loop,
    image pull failure)."""


class ClusterUnavailableError(Exception):
    """The cluster's API could not be reached or answered 5xx/429: worth retrying."""
