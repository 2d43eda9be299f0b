"""HTTP paths a person gives (health checks), in a strict grammar.

A health path is written into HAProxy's configuration (``option httpchk GET <path>``), where a
space, a quote or ``#`` would change the configuration itself: so it is an absolute URL path
of unreserved and a few sub-delimiter characters, and ``%`` only as a ``%XX`` escape.
"""

from __future__ import annotations

import re

_HEALTH_PATH = re.compile(r"/(?:[A-Za-z0-9._~/?=&+:@!,;-]|%[0-9A-Fa-f]{2}){0,255}")


def check_health_path(path: str) -> str:
    """``path`` when it follows the grammar, else ValueError with one actionable line."""
    if not _HEALTH_PATH.fullmatch(path):
        raise ValueError(f"invalid health path {path!r}: an absolute path such as /healthz, of "
                         "letters, digits and -._~/?=&+:@!,; (%XX escapes allowed), no spaces, "
                         "quotes or '#'")
    return path
