"""Every validation regex matches the whole value: a trailing newline never slips through
(``re.match`` with ``$`` accepts ``"name\\n"``; ``fullmatch`` does not)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from integrations.dns.rfc2136 import _check_label
from integrations.haproxy.common import _check_server
from integrations.haproxy.router import HaproxyRouter
from integrations.registry.client import is_digest, split_image_ref

DIGEST = "sha256:" + "ab" * 32


def _haproxy_key(value: str) -> object:
    HaproxyRouter(Path("/nonexistent"))._check_key(value)
    return None


CASES: list[tuple[str, Callable[[str], object], str]] = [
    ("haproxy environment key", _haproxy_key, "shop-prod-local"),
    ("haproxy server name", _check_server, "v2-0"),
    ("image reference", split_image_ref, "127.0.0.1:5000/shop:1.4.2"),
    ("dns label", lambda value: _check_label(value, "lane"), "try-1"),
]


@pytest.mark.parametrize(("what", "check", "good"), CASES, ids=[case[0] for case in CASES])
def test_a_trailing_newline_is_refused(what: str, check: Callable[[str], object],
                                       good: str) -> None:
    check(good)
    with pytest.raises(ValueError):
        check(good + "\n")


def test_a_digest_with_a_trailing_newline_is_no_digest() -> None:
    assert is_digest(DIGEST) and not is_digest(DIGEST + "\n")
