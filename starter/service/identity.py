"""Who is running the command line: the actor recorded in audit events."""

from __future__ import annotations

import getpass
import os


def current_user() -> str:
    """``$SLIPWAY_USER`` when set (CI, shared accounts), else the operating-system user name."""
    explicit = os.environ.get("SLIPWAY_USER", "").strip()
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # Containers often run as a uid with no passwd entry; still record something traceable.
        return f"uid-{os.getuid()}"
