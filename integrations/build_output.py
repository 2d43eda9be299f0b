"""What every builder shares: the build-failed error, the image lines a CI job prints
(``IMAGE=…``, ``DIGEST=…``), log tails, and progress reports that stop a remote build when
the activity is cancelled."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from integrations.protocols import Progress

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 20
# Called with what a remote build must not lose across a retry (queue id, pipeline id).
Remember = Callable[[dict[str, Any]], None]


class BuildFailedError(Exception):
    """The build itself failed (bad Dockerfile, failing step): retrying won't help."""


def parse_image_lines(text: str) -> dict[str, str]:
    """``KEY=value`` lines (``IMAGE``, ``DIGEST``) from a description or a job log."""
    found: dict[str, str] = {}
    for raw in text.splitlines():
        key, sep, value = raw.strip().partition("=")
        if sep and key in ("IMAGE", "DIGEST") and value.strip():
            found[key] = value.strip()  # the last occurrence wins, as in a dotenv file
    return found


def log_tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def report(progress: Progress | None, message: str, on_cancel: Callable[[], None]) -> None:
    """Report progress; if that raises (activity cancelled), clean up remotely, then re-raise."""
    if progress is None:
        return
    try:
        progress(message)
    except BaseException:
        try:
            on_cancel()
        except Exception:  # the cancellation matters more than a failed clean-up
            log.warning("could not stop the remote build after cancellation", exc_info=True)
        raise
