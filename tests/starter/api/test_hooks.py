"""Who a webhook's release is requested by: the pusher's Slipway identity."""

from __future__ import annotations

from schemas.identities import same_person, slipway_user
from starter.api.hooks import GitEvent, requests_for
from starter.api.settings import HookRule

RULE = HookRule(project="team/shop", app="shop", env="prod", tag_pattern="v*")
TAG = GitEvent("tag", "team/shop", "v1.2", "a" * 40, "alice.w")


def test_a_mapped_code_host_account_requests_as_its_slipway_user() -> None:
    [request] = requests_for(TAG, [RULE], {"gitlab:alice.w": "alice"})
    assert request.requested_by == "alice"


def test_an_unmapped_account_keeps_its_host_prefix() -> None:
    [request] = requests_for(TAG, [RULE])
    assert request.requested_by == "gitlab:alice.w"
    assert slipway_user("gitlab", "bob", {}) == "gitlab:bob"


def test_same_person_sees_through_prefixes_case_and_mappings() -> None:
    assert same_person("gitlab:ana", "ana")
    assert same_person("GitLab:Ana", "ANA")
    assert same_person("gitlab:alice.w", "alice", {"gitlab:alice.w": "alice"})
    assert not same_person("gitlab:alice.w", "alice")  # unmapped, different names
    assert not same_person("ana", "bob")
    assert not same_person("", "")
