"""Who is acting: user names follow one rule wherever they enter (SLIPWAY_USER, --as,
owners and approvers, API tokens), and the actor recorded in audit events."""

from __future__ import annotations

import getpass
import os
import re

from catalogue.store import CatalogueError

# Letters, digits and . _ @ - ; no spaces, newlines or separators a list or a log could split on.
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def check_user(name: str, what: str = "user name") -> str:
    """``name`` when it follows the rule, else CatalogueError with one actionable line."""
    if not _USER_NAME.fullmatch(name):
        raise CatalogueError(f"invalid {what} {name!r}: use 1 to 64 letters, digits, '.', '_', "
                             "'@' or '-', starting with a letter or digit")
    return name


def current_user() -> str:
    """``$SLIPWAY_USER`` when set (CI, shared accounts), else the operating-system user name."""
    explicit = os.environ.get("SLIPWAY_USER", "")
    if explicit:
        return check_user(explicit, "SLIPWAY_USER")
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # Containers often run as a uid with no passwd entry; still record something traceable.
        return f"uid-{os.getuid()}"
