"""What a failing replica shows: its crash streak and health answers across wait_ready's
looks, and its last log lines with the values it was started with blanked (the message goes
into workflow history)."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from docker.errors import APIError, NotFound
from docker.models.containers import Container

# A failing replica's last log lines in the error, each cut to this many characters.
LOG_LINES = 5
LOG_LINE_CHARS = 200
# Variables of our own that are no secret (and too short to redact sensibly).
NOT_SECRET = frozenset({"SLIPWAY_VERSION"})
# Values shorter than this are not redacted from log lines (they would blank out every digit).
REDACT_MIN_CHARS = 3


@dataclass
class ReplicaWatch:
    """What wait_ready has seen of one replica: its crash streak and its health answers."""

    restarts: int = 0
    crash_since: float | None = None  # first sign of the current crash streak
    last_crash: float = 0.0
    answer: int | None = None  # the same non-200 status on every probe since answer_since
    answer_since: float = 0.0


def _printable(line: str, secrets: list[str]) -> str:
    """A log line without terminal escapes, control characters and ``secrets``, cut to
    :data:`LOG_LINE_CHARS`."""
    for secret in secrets:
        line = line.replace(secret, "***")
    line = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line)
    line = "".join(ch if ch.isprintable() else " " for ch in line).strip()
    return line if len(line) <= LOG_LINE_CHARS else line[:LOG_LINE_CHARS - 1] + "…"


def log_tail(container: Container) -> str:
    """``; last log lines: a | b`` of a failing replica: the last :data:`LOG_LINES`
    lines, each cut to :data:`LOG_LINE_CHARS`, the values of the variables it was
    started with blanked (the message goes into workflow history)."""
    try:
        raw = container.logs(tail=LOG_LINES).decode(errors="replace")
    except (APIError, NotFound):
        return ""
    secrets = env_values(container)
    lines = [line for line in (_printable(text, secrets) for text in raw.splitlines())
             if line][-LOG_LINES:]
    return "; last log lines: " + " | ".join(lines) if lines else "; no log output"


def env_values(container: Container) -> list[str]:
    """Values of the variables the container was started with (its image's own
    defaults excepted), longest first, so no log line quotes them."""
    given = container.attrs.get("Config", {}).get("Env") or []
    baked: list[str] = []
    with contextlib.suppress(APIError, NotFound):  # image gone: blank every value
        image = container.image
        baked = ((image.attrs.get("Config") or {}).get("Env") or []) if image else []
    values = {value for name, _, value in (entry.partition("=") for entry in given
                                           if entry not in baked)
              if name not in NOT_SECRET and len(value) >= REDACT_MIN_CHARS}
    return sorted(values, key=len, reverse=True)
