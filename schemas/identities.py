"""One namespace of people: code-host users map to Slipway users, and every comparison of two
names (four eyes above all) sees through the forms a name can take.

A tag pushed through GitLab is requested by ``gitlab:<user>`` unless ``SLIPWAY_IDENTITIES``
maps that account to a Slipway user (``{"gitlab:alice.w": "alice"}``). Whatever the form,
:func:`same_person` compares the part after any ``<host>:`` prefix, case-insensitively: when
in doubt, two names are one person and the four-eyes rule refuses.

Pure functions: the workflow's validators use them.
"""

from __future__ import annotations

from collections.abc import Mapping


def slipway_user(host: str, account: str, identities: Mapping[str, str]) -> str:
    """The Slipway user behind ``account`` on code host ``host``: the mapped name, else
    ``host:account``."""
    return identities.get(f"{host}:{account}") or f"{host}:{account}"


def bare_name(name: str) -> str:
    """``name`` without a ``<host>:`` prefix, case-folded: the form names are compared in."""
    return name.rsplit(":", 1)[-1].casefold()


def same_person(first: str, second: str, identities: Mapping[str, str] | None = None) -> bool:
    """Whether two names may denote one person: equal after mapping, or equal bare names."""
    if not first or not second:
        return False
    mapping = identities or {}
    first, second = mapping.get(first, first), mapping.get(second, second)
    return bare_name(first) == bare_name(second)
