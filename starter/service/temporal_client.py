"""Connecting the CLI to Temporal with the pydantic data converter and a helpful error."""

from __future__ import annotations

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter

from catalogue.store import CatalogueError
from integrations import tracing
from schemas.settings import Settings


async def connect(settings: Settings) -> Client:
    try:
        return await Client.connect(settings.temporal_address,
                                    namespace=settings.temporal_namespace,
                                    tls=settings.temporal_tls(),
                                    data_converter=pydantic_data_converter,
                                    interceptors=tracing.interceptors())
    except RuntimeError as error:
        raise CatalogueError(
            f"cannot reach Temporal at {settings.temporal_address} ({error}); "
            "start the embedded stack with `slipway up`"
        ) from error


def _innermost_cause(error: WorkflowUpdateFailedError) -> BaseException | None:
    cause: BaseException | None = error.cause
    while cause is not None and getattr(cause, "cause", None) is not None:
        cause = cause.cause  # type: ignore[attr-defined]
    return cause


def refusal_kind(error: WorkflowUpdateFailedError) -> str:
    """The type of the innermost ApplicationError (``ValueError`` from a validator,
    ``ApprovalRefused`` from the approval desk's proof check)."""
    return str(getattr(_innermost_cause(error), "type", "") or "")


def update_refusal(error: WorkflowUpdateFailedError) -> str:
    """The validator's (or handler's) message: a ValueError arrives as an ApplicationError
    cause, possibly wrapped once more."""
    cause = _innermost_cause(error)
    return getattr(cause, "message", None) or str(cause or error)
