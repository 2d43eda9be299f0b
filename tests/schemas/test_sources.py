"""Build sources and refs that would run something on the worker are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.sources import SourceRefused, check_ref, check_source

GOOD_URLS = ["https://gitlab.example.com/team/shop.git", "ssh://git@gitlab.example.com:2222/t/s",
             "git@gitlab.example.com:team/shop.git"]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_accepted_git_urls(url: str, tmp_path: Path) -> None:
    assert check_source(url, [tmp_path]) == url


@pytest.mark.parametrize(("source", "reason"), [
    ("--upload-pack=touch /tmp/x #.git", "starts with '-'"),
    ("ext::sh -c touch% /tmp/x", "remote helper"),
    ("ext::sh", "remote helper"),
    ("file::/etc", "remote helper"),
    ("http://gitlab.example.com/t/s.git", "only https:// and ssh://"),
    ("git://gitlab.example.com/t/s.git", "only https:// and ssh://"),
    ("file:///etc", "only https:// and ssh://"),
    ("https://glpat-abc123@gitlab.example.com/g/r.git", "carries a user, password or token"),
    ("https://ci:s3cret@gitlab.example.com/g/r.git", "carries a user, password or token"),
    ("ssh://git:pw@gitlab.example.com/g/r.git", "carries a user, password or token"),
    ("git@gitlab.example.com:team/shop.git\n", "whitespace or control"),
    ("https://gitlab.example.com/t/s.git\n", "whitespace or control"),
    ("git@host:-oProxyCommand=x", "is not a git URL"),
])
def test_hostile_sources_are_refused(source: str, reason: str, tmp_path: Path) -> None:
    with pytest.raises(SourceRefused, match=reason):
        check_source(source, [tmp_path])


def test_local_sources_stay_under_the_roots(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "app").mkdir(parents=True)
    outside.mkdir()
    assert check_source(str(root / "app"), [root]) == str((root / "app").resolve())
    with pytest.raises(SourceRefused, match="outside the allowed source roots"):
        check_source(str(outside), [root])
    with pytest.raises(SourceRefused, match="outside the allowed source roots"):
        check_source("/root", [root])
    (root / "escape").symlink_to(outside)  # a symlink inside a root that leads out of it
    with pytest.raises(SourceRefused, match="outside the allowed source roots"):
        check_source(str(root / "escape"), [root])
    with pytest.raises(SourceRefused, match="whitespace or control"):
        check_source(f"{root / 'app'}\n", [root])


@pytest.mark.parametrize("ref", ["main", "v1.4.2", "feature/try-1", "a" * 40, "release/2026_12"])
def test_plain_refs_pass(ref: str) -> None:
    assert check_ref(ref) == ref


@pytest.mark.parametrize("ref", ["--output=/tmp/x", "-b", "main\n", "a b", "HEAD@{1}", "a..b",
                                 "x.lock", "feature/", "", "$(id)", "`id`", "a;b"])
def test_hostile_refs_are_refused(ref: str) -> None:
    with pytest.raises(SourceRefused):
        check_ref(ref)
