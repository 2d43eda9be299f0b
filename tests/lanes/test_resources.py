"""Which GitLab project an app's source is: the lookup lane branches, hooks and pushes use."""

from __future__ import annotations

import pytest

from lanes.resources import gitlab_project, repository_path


@pytest.mark.parametrize(("source", "expected"), [
    ("https://gitlab.example.com/shop/cart.git", ("gitlab.example.com", "shop/cart")),
    ("http://127.0.0.1:41234/shop/cart.git", ("127.0.0.1", "shop/cart")),
    ("ssh://git@gitlab.example.com:2222/shop/cart.git", ("gitlab.example.com", "shop/cart")),
    ("git@gitlab.example.com:shop/cart.git", ("gitlab.example.com", "shop/cart")),
    ("https://gitlab.example.com/group/sub/cart/", ("gitlab.example.com", "group/sub/cart")),
    ("/srv/src/cart", ("", "")),
    ("file:///srv/src/cart", ("", "")),
    ("", ("", "")),
])
def test_repository_path_ignores_ports_and_suffixes(source: str,
                                                    expected: tuple[str, str]) -> None:
    assert repository_path(source) == expected


def test_gitlab_project_only_for_sources_on_the_gitlab_host() -> None:
    gitlab = "http://127.0.0.1:41234"
    assert gitlab_project("http://127.0.0.1:41234/shop/cart.git", gitlab) == "shop/cart"
    assert gitlab_project("git@github.com:shop/cart.git", gitlab) == ""
    assert gitlab_project("http://127.0.0.1:41234/shop/cart.git", "") == ""
