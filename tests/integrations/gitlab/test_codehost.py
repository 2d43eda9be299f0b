"""GitlabCodeHost against the HTTP fake of GitLab: the exact REST calls python-gitlab makes."""

from __future__ import annotations

import pytest

from integrations.gitlab.codehost import CodeHostError, GitlabCodeHost, Tag
from tests.support.gitlab_fake import FakeRepo, running_gitlab

PROJECT = "shop/cart"
BASE = f"/api/v4/projects/{PROJECT}"
SHA = "c" * 40
HOOK_URL = "https://slipway.test/hooks/gitlab"


def host(url: str) -> GitlabCodeHost:
    return GitlabCodeHost(url, "glpat-s3cret")


def test_ensure_branch_creates_only_when_missing() -> None:
    with running_gitlab(repos={PROJECT: FakeRepo(branches={"main": SHA, "lane-a": "d" * 40})}
                        ) as fake:
        code_host = host(fake.url)
        assert code_host.ensure_branch(PROJECT, "lane-b", "main") is True
        assert code_host.ensure_branch(PROJECT, "lane-b", "main") is False
        assert code_host.ensure_branch(PROJECT, "lane-a", "main") is False
    assert [(c.method, c.path) for c in fake.calls] == [
        ("GET", f"{BASE}/repository/branches/lane-b"),
        ("POST", f"{BASE}/repository/branches"),
        ("GET", f"{BASE}/repository/branches/lane-b"),
        ("GET", f"{BASE}/repository/branches/lane-a"),
    ]
    assert fake.calls[1].body == {"branch": "lane-b", "ref": "main"}
    assert all(c.token == "glpat-s3cret" for c in fake.calls)
    # The existing branch was never moved.
    assert fake.repos[PROJECT].branches == {"main": SHA, "lane-a": "d" * 40, "lane-b": SHA}


def test_branch_names_with_slashes_and_delete_twice() -> None:
    with running_gitlab(repos={PROJECT: FakeRepo()}) as fake:
        code_host = host(fake.url)
        assert code_host.ensure_branch(PROJECT, "lane/feature-x", SHA) is True
        assert code_host.delete_branch(PROJECT, "lane/feature-x") is True
        assert code_host.delete_branch(PROJECT, "lane/feature-x") is False
    assert [(c.method, c.path) for c in fake.calls][-2:] == [
        ("DELETE", f"{BASE}/repository/branches/lane/feature-x"),
        ("DELETE", f"{BASE}/repository/branches/lane/feature-x"),
    ]
    assert "lane/feature-x" not in fake.repos[PROJECT].branches


def test_branch_head_names_the_commit_or_none() -> None:
    with running_gitlab(repos={PROJECT: FakeRepo(branches={"feature/pay": SHA})}) as fake:
        code_host = host(fake.url)
        assert code_host.branch_head(PROJECT, "feature/pay") == SHA
        assert code_host.branch_head(PROJECT, "feature/none") is None
    assert [(c.method, c.path) for c in fake.calls] == [
        ("GET", f"{BASE}/repository/branches/feature/pay"),
        ("GET", f"{BASE}/repository/branches/feature/none")]


def test_ensure_branch_from_unknown_base_fails() -> None:
    with running_gitlab(repos={PROJECT: FakeRepo()}) as fake, \
            pytest.raises(CodeHostError, match="Invalid reference name") as error:
        host(fake.url).ensure_branch(PROJECT, "lane-b", "nope")
    assert "glpat" not in str(error.value)


def test_tags_list_and_create() -> None:
    with running_gitlab(repos={PROJECT: FakeRepo(tags={"v1.0.0": "a" * 40})}) as fake:
        code_host = host(fake.url)
        created = code_host.create_tag(PROJECT, "v1.1.0", "main", message="release 1.1")
        tags = code_host.tags(PROJECT)
        with pytest.raises(CodeHostError, match="already exists"):
            code_host.create_tag(PROJECT, "v1.1.0", "main")
    assert created == Tag("v1.1.0", SHA)
    assert tags == [Tag("v1.0.0", "a" * 40), Tag("v1.1.0", SHA)]
    assert [(c.method, c.path) for c in fake.calls] == [
        ("POST", f"{BASE}/repository/tags"),
        ("GET", f"{BASE}/repository/tags"),
        ("POST", f"{BASE}/repository/tags"),
    ]
    assert fake.calls[0].body == {"tag_name": "v1.1.0", "ref": "main", "message": "release 1.1"}


def test_project_hook_created_once_and_deleted() -> None:
    with running_gitlab(repos={PROJECT: FakeRepo()}) as fake:
        code_host = host(fake.url)
        hook_id = code_host.ensure_project_hook(PROJECT, HOOK_URL, "hook-s3cret")
        assert code_host.ensure_project_hook(PROJECT, HOOK_URL, "hook-s3cret") == hook_id
        assert fake.repos[PROJECT].hooks[hook_id]["token"] == "hook-s3cret"
        # Same URL, other switches: updated in place, same id.
        assert code_host.ensure_project_hook(PROJECT, HOOK_URL, "hook-s3cret",
                                             push=False) == hook_id
        assert fake.repos[PROJECT].hooks[hook_id]["push_events"] is False
        assert code_host.delete_project_hook(PROJECT, hook_id) is True
        assert code_host.delete_project_hook(PROJECT, hook_id) is False
    assert [(c.method, c.path) for c in fake.calls] == [
        ("GET", f"{BASE}/hooks"),
        ("POST", f"{BASE}/hooks"),
        ("GET", f"{BASE}/hooks"),
        ("GET", f"{BASE}/hooks"),
        ("PUT", f"{BASE}/hooks/{hook_id}"),
        ("DELETE", f"{BASE}/hooks/{hook_id}"),
        ("DELETE", f"{BASE}/hooks/{hook_id}"),
    ]
    assert fake.calls[1].body == {"url": HOOK_URL, "token": "hook-s3cret", "push_events": True,
                                  "tag_push_events": True, "enable_ssl_verification": True}
    assert fake.repos[PROJECT].hooks == {}
