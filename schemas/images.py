"""Image references, checked against the distribution reference grammar before anything starts.

``[host[:port]/]path[:tag][@digest]``: lowercase path components separated by ``.``, ``_``,
``__`` or dashes; a tag of up to 128 word characters, dots and dashes; a digest
``algorithm:hex``. A reference like ``foo bar`` or ``$(id)`` would otherwise start a release
that only the engine refuses, a rollback later.
"""

from __future__ import annotations

import re

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?)"
_REFERENCE = re.compile(
    rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,})?")
MAX_LENGTH = 255


def check_image_ref(reference: str) -> str:
    """``reference`` when it follows the grammar, else ValueError with one actionable line."""
    if len(reference) > MAX_LENGTH or not _REFERENCE.fullmatch(reference):
        raise ValueError(f"invalid image reference {reference!r}: use "
                         "[registry[:port]/]name[:tag][@sha256:digest], e.g. "
                         "127.0.0.1:5000/shop:1.4.2 (lowercase name, no spaces)")
    return reference
